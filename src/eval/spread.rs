//! How varied the samples of each label are and how well they cover its real images, by
//! bucket: diversity (mean pairwise distance against the real images'), k-NN precision and
//! recall, and for jittered shapes the exact coverage of the training placements.

use super::{class_object, detector, manifold};
use crate::data::{buckets, Dataset, BUCKETS};
use crate::stats;

/// Mean pairwise Euclidean distance between the rows of `x` (image_len values each).
pub fn mean_pairwise(x: &[&[f32]]) -> f64 {
    let (mut s, mut n) = (0.0, 0usize);
    for i in 0..x.len() {
        for j in i + 1..x.len() {
            s += manifold::distance(x[i], x[j]);
            n += 1;
        }
    }
    if n == 0 {
        f64::NAN
    } else {
        s / n as f64
    }
}

/// Per bucket, the mean over its labels of the samples' diversity: mean pairwise distance of
/// a label's samples over that of its real images (`real`, by label).
pub(super) fn diversity_by_bucket(
    data: &Dataset,
    samples: &[Vec<&[f32]>],
    real: &[Vec<&[f32]>],
) -> Vec<(String, f64)> {
    let diversity: Vec<f64> = (0..samples.len())
        .map(|l| mean_pairwise(&samples[l]) / mean_pairwise(&real[l]))
        .collect();
    mean_by_bucket(data, "diversity", &diversity)
}

/// Per bucket, the mean over its labels of the samples' k-NN precision and recall against the
/// label's real rows (`samples` and `real` by label: pixels or an oracle's features). Every
/// label's real set is cut to the size of the smallest (its first rows) that has more than
/// k: a ball's radius shrinks as its set grows denser, so real sets of unequal size (a long
/// tail's training images) would make precision a measure of the label's frequency.
pub(super) fn precision_recall_by_bucket(
    data: &Dataset,
    samples: &[Vec<&[f32]>],
    real: &[Vec<&[f32]>],
) -> Vec<(String, f64)> {
    let usable = real.iter().map(Vec::len).filter(|&n| n > manifold::K);
    let size = usable.min().unwrap_or(0);
    let pr: Vec<manifold::PrecisionRecall> = (0..samples.len())
        .map(|l| {
            let r = &real[l][..real[l].len().min(size)];
            manifold::precision_recall(r, &samples[l], manifold::K)
        })
        .collect();
    let precision: Vec<f64> = pr.iter().map(|p| p.precision).collect();
    let recall: Vec<f64> = pr.iter().map(|p| p.recall).collect();
    let mut m = mean_by_bucket(data, "precision", &precision);
    m.extend(mean_by_bucket(data, "recall", &recall));
    m
}

/// `name/bucket`: the mean of `per_label` over each bucket's labels where it is finite (a
/// label with too few real images or samples has nothing to compare). A bucket with no such
/// label has no entry: the metric is absent there, not NaN.
fn mean_by_bucket(data: &Dataset, name: &str, per_label: &[f64]) -> Vec<(String, f64)> {
    let b = buckets(&data.label_counts());
    BUCKETS
        .iter()
        .enumerate()
        .filter_map(|(bi, bucket)| {
            let v: Vec<f64> = (0..per_label.len())
                .filter(|&l| b[l] == bi && per_label[l].is_finite())
                .map(|l| per_label[l])
                .collect();
            (!v.is_empty()).then(|| (format!("{name}/{bucket}"), stats::mean_std(&v).0))
        })
        .collect()
}

/// The rows of `flat` (one per entry of `labels`), grouped by label.
pub(super) fn rows_by_label<'a>(flat: &'a [f32], labels: &[u32], k: usize) -> Vec<Vec<&'a [f32]>> {
    let mut by: Vec<Vec<&[f32]>> = vec![Vec::new(); k];
    let width = flat.len() / labels.len().max(1);
    for (row, &l) in flat.chunks(width.max(1)).zip(labels) {
        by[l as usize].push(row);
    }
    by
}

/// Per bucket, the mean over labels of the share of the label's training images whose
/// placement (box size and position, as the jittered detector reads it) some correctly read
/// sample of the label reproduces: recall measured exactly on what a jittered class varies
/// besides its colour's shade. Empty for the fixed-render detector (one placement per class).
pub(super) fn placement_coverage_by_bucket(
    data: &Dataset,
    det: &detector::Detector,
    labels: &[u32],
    x: &[f32],
) -> Vec<(String, f64)> {
    let k = data.num_labels() as usize;
    let placed = |img: &[f32], class: usize| match det.read_placed(img)?[0] {
        Ok((o, at)) if o == class_object(class) => Some(at),
        _ => None,
    };
    if !det.places() {
        return Vec::new();
    }
    let mut drawn = vec![std::collections::BTreeSet::new(); k];
    for (img, &l) in x.chunks(data.image_len()).zip(labels) {
        drawn[l as usize].extend(placed(img, l as usize));
    }
    let (mut hit, mut read) = (vec![0usize; k], vec![0usize; k]);
    for i in 0..data.len() {
        let l = data.labels_of(i)[0] as usize;
        if let Some(at) = placed(data.image(i), l) {
            read[l] += 1;
            hit[l] += drawn[l].contains(&at) as usize;
        }
    }
    let share: Vec<f64> = (0..k)
        .map(|l| match read[l] {
            0 => f64::NAN,
            n => hit[l] as f64 / n as f64,
        })
        .collect();
    mean_by_bucket(data, "coverage", &share)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(v: &[f32]) -> Vec<&[f32]> {
        v.chunks(1).collect()
    }

    /// Two labels whose real sets hold the same four points, one with twelve more packed
    /// among them: cut to the smaller set's size they score the same samples alike; whole,
    /// the denser set's smaller balls would read the same samples as less precise.
    #[test]
    fn real_sets_are_cut_to_one_size() {
        let shared = [0.0f32, 1.0, 2.0, 3.0];
        let packed: Vec<f32> = (1..=12).map(|i| i as f32 * 0.25).collect();
        let first: Vec<f32> = shared.iter().chain(&packed).copied().collect();
        let data = Dataset {
            name: "points".into(),
            channels: 1,
            height: 1,
            width: 1,
            images: first.iter().chain(&shared).copied().collect(),
            labels: [vec![0; 16], vec![1; 4]].concat(),
            slots: 1,
            label_names: vec!["dense".into(), "sparse".into()],
        };
        let real = vec![rows(&first), rows(&shared)];
        let drawn = [4.5f32, 5.0, -1.5, -2.0, 5.5];
        let samples = vec![rows(&drawn), rows(&drawn)];
        let m = precision_recall_by_bucket(&data, &samples, &real);
        let get = |name: &str| m.iter().find(|(n, _)| n == name).unwrap().1;
        // Label 0 (16 images) is the head, label 1 (4) the mid bucket.
        assert_eq!(get("precision/head"), get("precision/mid"));
        assert_eq!(get("recall/head"), get("recall/mid"));
        let whole = manifold::precision_recall(&real[0], &samples[0], manifold::K);
        let cut = manifold::precision_recall(&real[1], &samples[1], manifold::K);
        assert!(whole.precision < cut.precision, "{whole:?} {cut:?}");
        // No label in the tail: no tail entry, rather than a NaN.
        assert!(
            m.iter()
                .all(|(n, v)| !n.ends_with("/tail") && v.is_finite()),
            "{m:?}"
        );
        // Two samples of the sparse label are too few for k = 3: its bucket has no entry.
        let few = vec![rows(&drawn), rows(&drawn[..2])];
        let m = precision_recall_by_bucket(&data, &few, &real);
        let names: Vec<&str> = m.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["precision/head", "recall/head"], "{m:?}");
    }
}
