//! The oracles: each data set's reading of generated samples, per label and per frequency
//! bucket (shapes: the detector; toy2d: the nearest mean; digits and IDX sets: a classifier
//! or nearest neighbours trained on held-out real images).

use super::spread::{self, diversity_by_bucket, precision_recall_by_bucket, rows_by_label};
use super::{buckets, classifier, detector, knn, Evaluation, LabelScore, BUCKETS};
use crate::data::{is_inert, toy2d_means, Dataset, Toy2dSpec, CONCEPTS_PER_SLOT};
use crate::stats;
use crate::train::TrainConfig;
use crate::{Error, Result};

fn bucket_metrics(prefix: &str, per_label: &[LabelScore]) -> Vec<(String, f64)> {
    let mut m: Vec<(String, f64)> = BUCKETS
        .iter()
        .map(|b| {
            let v: Vec<f64> = per_label
                .iter()
                .filter(|l| l.bucket == *b)
                .map(|l| l.score)
                .collect();
            (format!("{prefix}/{b}"), stats::mean_std(&v).0)
        })
        .collect();
    let all: Vec<f64> = per_label.iter().map(|l| l.score).collect();
    m.push((format!("{prefix}/all"), stats::mean_std(&all).0));
    // How fast the score rises with the label's frequency: > 0 when frequent labels do
    // better; a remedy for the tail should flatten it.
    let log_freq: Vec<f64> = per_label
        .iter()
        .map(|l| (l.frequency.max(1) as f64).ln())
        .collect();
    m.push((format!("{prefix}/slope"), stats::slope(&log_freq, &all)));
    m
}

fn scores(data: &Dataset, hits: &[usize], totals: &[usize]) -> Vec<LabelScore> {
    let freq = data.label_counts();
    let b = buckets(&freq);
    (0..freq.len())
        .map(|k| LabelScore {
            name: data.label_names[k].clone(),
            frequency: freq[k],
            bucket: BUCKETS[b[k]].into(),
            score: if totals[k] > 0 {
                hits[k] as f64 / totals[k] as f64
            } else {
                f64::NAN
            },
            samples: totals[k],
        })
        .collect()
}

/// toy2d: a class-k sample is a hit when μ_k is its nearest mean and it lies within 2σ of
/// it. Pull (tail classes): ⟨x − μ_k, m − μ_k⟩ / |m − μ_k|² averaged over the samples, with m
/// the training data's mean — 0 on the own mean, 1 at the mean of the (head-dominated) data.
pub fn toy2d(data: &Dataset, c: &TrainConfig, labels: &[u32], x: &[f32]) -> Evaluation {
    let spec = Toy2dSpec::default();
    let means = toy2d_means(c.classes, spec.radius);
    let k = means.len();
    let mut m = [0.0f64; 2];
    for i in 0..data.len() {
        let p = data.image(i);
        m[0] += p[0] as f64 / data.len() as f64;
        m[1] += p[1] as f64 / data.len() as f64;
    }
    let (mut hits, mut totals) = (vec![0; k], vec![0; k]);
    let mut pull = vec![0.0f64; k];
    for (j, &l) in labels.iter().enumerate() {
        let (px, py) = (x[2 * j] as f64, x[2 * j + 1] as f64);
        let d2 = |mu: &[f64; 2]| (px - mu[0]).powi(2) + (py - mu[1]).powi(2);
        let nearest = (0..k)
            .min_by(|&a, &b| d2(&means[a]).total_cmp(&d2(&means[b])))
            .unwrap_or(0);
        let l = l as usize;
        totals[l] += 1;
        if nearest == l && d2(&means[l]).sqrt() <= 2.0 * spec.sigma {
            hits[l] += 1;
        }
        let (ux, uy) = (m[0] - means[l][0], m[1] - means[l][1]);
        pull[l] += ((px - means[l][0]) * ux + (py - means[l][1]) * uy) / (ux * ux + uy * uy);
    }
    let per_label = scores(data, &hits, &totals);
    let mut metrics = bucket_metrics("hit", &per_label);
    let tail: Vec<f64> = (0..k)
        .filter(|&l| per_label[l].bucket == "tail" && totals[l] > 0)
        .map(|l| pull[l] / totals[l] as f64)
        .collect();
    metrics.push(("pull/tail".into(), stats::mean_std(&tail).0));
    Evaluation {
        trained: None,
        dataset: "toy2d".into(),
        score: "hit rate (nearest to its own mean and within 2σ)".into(),
        samples: labels.len(),
        metrics,
        per_label,
        notes: vec![format!(
            "data mean m = ({:.3}, {:.3}); σ = {}",
            m[0], m[1], spec.sigma
        )],
    }
}

/// shapes, class mode: success = the detector reads the class's shape and colour; per-class
/// diversity (mean pairwise distance of the class's samples over that of its training images,
/// 1 = the training images' spread), by bucket.
pub fn shapes_classes(
    data: &Dataset,
    det: &detector::Detector,
    labels: &[u32],
    x: &[f32],
) -> Evaluation {
    let k = data.num_labels() as usize;
    let (mut hits, mut totals) = (vec![0; k], vec![0; k]);
    let mut by_class: Vec<Vec<&[f32]>> = vec![Vec::new(); k];
    for (j, img) in x.chunks(data.image_len()).enumerate() {
        let l = labels[j] as usize;
        totals[l] += 1;
        by_class[l].push(img);
        if det.read(img)[0] == Ok(class_object(l)) {
            hits[l] += 1;
        }
    }
    let per_label = scores(data, &hits, &totals);
    let mut real: Vec<Vec<&[f32]>> = vec![Vec::new(); k];
    for i in 0..data.len() {
        real[data.labels_of(i)[0] as usize].push(data.image(i));
    }
    let mut metrics = bucket_metrics("success", &per_label);
    metrics.extend(diversity_by_bucket(data, &by_class, &real));
    metrics.extend(precision_recall_by_bucket(data, &by_class, &real));
    metrics.extend(spread::placement_coverage_by_bucket(data, det, labels, x));
    Evaluation {
        trained: None,
        dataset: "shapes".into(),
        score: "success (the detector reads the class's shape and colour)".into(),
        samples: x.len() / data.image_len(),
        metrics,
        per_label,
        notes: Vec::new(),
    }
}

/// The object a shapes class shows: shape and colour from the class index.
pub fn class_object(class: usize) -> detector::Object {
    detector::Object {
        shape: class / crate::data::COLOURS.len(),
        colour: class % crate::data::COLOURS.len(),
    }
}

/// Prompts that succeeded out of those drawn.
#[derive(Clone, Copy, Default)]
struct Tally {
    hits: usize,
    total: usize,
}

impl Tally {
    /// hits / total; NaN when nothing was drawn.
    fn rate(self) -> f64 {
        if self.total > 0 {
            self.hits as f64 / self.total as f64
        } else {
            f64::NAN
        }
    }
}

/// shapes, concepts mode: per concept, the share of prompts naming it whose slot shows it;
/// per prompt, success when all four concepts show; prompts apart whose slot pairs were all
/// seen in training and those with an inert pair.
pub fn shapes_concepts(
    data: &Dataset,
    det: &detector::Detector,
    labels: &[u32],
    x: &[f32],
) -> Evaluation {
    let k = data.num_labels() as usize;
    let kk = CONCEPTS_PER_SLOT;
    let (mut hits, mut totals) = (vec![0; k], vec![0; k]);
    let (mut seen, mut inert) = (Tally::default(), Tally::default());
    for (j, img) in x.chunks(data.image_len()).enumerate() {
        let p = &labels[4 * j..4 * j + 4];
        let read = det.read(img);
        let mut all = true;
        let mut any_inert = false;
        for slot in 0..2 {
            let (shape, colour) = (
                (p[2 * slot] % kk) as usize,
                (p[2 * slot + 1] % kk - 4) as usize,
            );
            any_inert |= is_inert(slot, shape, colour);
            let got = read[slot].ok();
            let shape_ok = got.is_some_and(|o| o.shape == shape);
            let colour_ok = got.is_some_and(|o| o.colour == colour);
            for (l, ok) in [(p[2 * slot], shape_ok), (p[2 * slot + 1], colour_ok)] {
                totals[l as usize] += 1;
                hits[l as usize] += ok as usize;
            }
            all &= shape_ok && colour_ok;
        }
        let t = if any_inert { &mut inert } else { &mut seen };
        t.hits += all as usize;
        t.total += 1;
    }
    let per_label = scores(data, &hits, &totals);
    let mut metrics = bucket_metrics("concept", &per_label);
    let all = Tally {
        hits: seen.hits + inert.hits,
        total: seen.total + inert.total,
    };
    metrics.push(("prompt/all".into(), all.rate()));
    metrics.push(("prompt/seen".into(), seen.rate()));
    metrics.push(("prompt/inert".into(), inert.rate()));
    Evaluation {
        trained: None,
        dataset: "shapes-concepts".into(),
        score: "concept shown in its slot (detector)".into(),
        samples: x.len() / data.image_len(),
        metrics,
        per_label,
        notes: vec![format!(
            "{} prompts with both slot pairs seen in training, {} with an inert pair",
            seen.total, inert.total
        )],
    }
}

/// Test images per class that check the k-NN oracle on real data (the rest are its
/// references), and at most this many real images per class for the diversity reference.
const IDX_CHECK: usize = 100;
const IDX_DIVERSITY_REAL: usize = 200;

/// idx (MNIST-format data): per-class accuracy of the samples under a k-NN oracle over the
/// test split (never trained on), per-class diversity against the class's real test images,
/// and the oracle's own accuracy on held-back real test images.
pub fn idx(data: &Dataset, test: &Dataset, labels: &[u32], x: &[f32]) -> Result<Evaluation> {
    let k = data.num_labels() as usize;
    if test.num_labels() as usize != k || test.image_len() != data.image_len() {
        return Err(Error::Data(format!(
            "the test split ({} labels of {} values) does not match the training split ({k} \
             labels of {} values)",
            test.num_labels(),
            test.image_len(),
            data.image_len()
        )));
    }
    let mut seen = vec![0usize; k];
    let (mut refs, mut ref_labels, mut check, mut check_labels) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut real: Vec<Vec<&[f32]>> = vec![Vec::new(); k];
    for i in 0..test.len() {
        let l = test.labels_of(i)[0];
        let img = test.image(i);
        if seen[l as usize] < IDX_CHECK {
            check.extend_from_slice(img);
            check_labels.push(l);
        } else {
            refs.extend_from_slice(img);
            ref_labels.push(l);
        }
        if real[l as usize].len() < IDX_DIVERSITY_REAL {
            real[l as usize].push(img);
        }
        seen[l as usize] += 1;
    }
    let oracle = knn::Knn::new(refs, ref_labels, k);
    let real_hits = oracle
        .predict_all(&check)
        .iter()
        .zip(&check_labels)
        .filter(|(p, l)| p == l)
        .count();
    let il = data.image_len();
    let predicted = oracle.predict_all(x);
    let (mut hits, mut totals) = (vec![0; k], vec![0; k]);
    let mut by_class: Vec<Vec<&[f32]>> = vec![Vec::new(); k];
    for (j, img) in x.chunks(il).enumerate() {
        let l = labels[j] as usize;
        totals[l] += 1;
        hits[l] += (predicted[j] as usize == l) as usize;
        by_class[l].push(img);
    }
    let per_label = scores(data, &hits, &totals);
    let mut metrics = bucket_metrics("acc", &per_label);
    metrics.extend(diversity_by_bucket(data, &by_class, &real));
    metrics.extend(precision_recall_by_bucket(data, &by_class, &real));
    Ok(Evaluation {
        trained: None,
        dataset: "idx".into(),
        score: format!(
            "accuracy of a {}-nearest-neighbour oracle over the test split",
            knn::K
        ),
        samples: labels.len(),
        metrics,
        per_label,
        notes: vec![format!(
            "oracle: {}-NN over {} test images, accuracy {:.1}% on {} other real test images",
            knn::K,
            test.len() - check_labels.len(),
            100.0 * real_hits as f64 / check_labels.len().max(1) as f64,
            check_labels.len()
        )],
    })
}

/// Classifier epochs for the digits evaluator.
const CLASSIFIER_EPOCHS: u32 = 300;
/// Held-out digits per class that train the classifier; the rest of the held-out set tests it.
const CLASSIFIER_TRAIN: usize = 40;

/// The digits evaluator from the held-out set: (classifier, real test accuracy).
pub fn digits_classifier(held: &Dataset) -> (classifier::Classifier, f64) {
    let mut seen = vec![0usize; held.num_labels() as usize];
    let (mut tr, mut trl, mut te, mut tel) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..held.len() {
        let l = held.labels_of(i)[0];
        if seen[l as usize] < CLASSIFIER_TRAIN {
            tr.extend_from_slice(held.image(i));
            trl.push(l);
        } else {
            te.extend_from_slice(held.image(i));
            tel.push(l);
        }
        seen[l as usize] += 1;
    }
    let c =
        classifier::Classifier::train(&tr, &trl, held.num_labels() as usize, CLASSIFIER_EPOCHS, 0);
    let acc = c.accuracy(&te, &tel);
    (c, acc)
}

/// digits: per-class accuracy under the held-out classifier, per-class diversity (mean
/// pairwise distance of the class's samples over that of its held-out real digits) and the
/// Fréchet distance of all samples to all held-out digits in the classifier's features.
pub fn digits(data: &Dataset, held: &Dataset, labels: &[u32], x: &[f32]) -> Evaluation {
    let (clf, real_acc) = digits_classifier(held);
    let k = data.num_labels() as usize;
    let il = data.image_len();
    let (mut hits, mut totals) = (vec![0; k], vec![0; k]);
    let mut by_class: Vec<Vec<&[f32]>> = vec![Vec::new(); k];
    for (j, img) in x.chunks(il).enumerate() {
        let l = labels[j] as usize;
        totals[l] += 1;
        hits[l] += (clf.predict(img) == l) as usize;
        by_class[l].push(img);
    }
    let per_label = scores(data, &hits, &totals);
    let mut metrics = bucket_metrics("acc", &per_label);
    let mut real: Vec<Vec<&[f32]>> = vec![Vec::new(); k];
    for i in 0..held.len() {
        real[held.labels_of(i)[0] as usize].push(held.image(i));
    }
    metrics.extend(diversity_by_bucket(data, &by_class, &real));
    let (fx, fh) = (clf.feature_rows(x), clf.feature_rows(&held.images));
    let held_labels: Vec<u32> = (0..held.len()).map(|i| held.labels_of(i)[0]).collect();
    metrics.extend(precision_recall_by_bucket(
        data,
        &rows_by_label(&fx, labels, k),
        &rows_by_label(&fh, &held_labels, k),
    ));
    let fd = stats::frechet(&fx, &fh, classifier::HIDDEN);
    metrics.push(("frechet".into(), fd));
    Evaluation {
        trained: None,
        dataset: "digits".into(),
        score: "accuracy of the held-out classifier on the samples".into(),
        samples: labels.len(),
        metrics,
        per_label,
        notes: vec![format!(
            "classifier: MLP 64-{}-10 trained on {} held-out digits per class, accuracy {:.1}% \
             on the other {} held-out real digits",
            classifier::HIDDEN,
            CLASSIFIER_TRAIN,
            100.0 * real_acc,
            held.len() - CLASSIFIER_TRAIN * k
        )],
    }
}
