//! Long-tail profiles: how many images each label keeps, given the head count, the imbalance
//! ratio ρ = n_max / n_min and a profile shape.

use super::Dataset;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The shape of a long tail over labels 0..C−1 (label 0 is the head).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// n_c = n_max·ρ^(−c/(C−1)) (docs/design.md; Cao et al.'s long-tailed CIFAR).
    #[default]
    Exponential,
    /// n_c = n_max·(c+1)^(−α), α = ln ρ / ln C, so the last label keeps n_max/ρ.
    Zipf,
    /// The first half of the labels keep n_max, the rest n_max/ρ.
    Step,
}

/// The relative frequency (head = 1) of label c of `classes` under a profile.
pub fn profile_weight(profile: Profile, c: usize, classes: usize, ratio: f64) -> f64 {
    if classes <= 1 {
        return 1.0;
    }
    let last = (classes - 1) as f64;
    match profile {
        Profile::Exponential => ratio.powf(-(c as f64) / last),
        Profile::Zipf => (c as f64 + 1.0).powf(-ratio.ln() / (classes as f64).ln()),
        Profile::Step => {
            if c < classes.div_ceil(2) {
                1.0
            } else {
                1.0 / ratio
            }
        }
    }
}

/// A seeded permutation of 0..n (Philox stream 13): `perm[rank]` is the item given the
/// rank-th largest frequency.
pub fn frequency_order(seed: u32, salt: u32, n: usize, permute: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if permute {
        for k in (1..n).rev() {
            let j = ((super::uniform(seed, 13, salt, k as u32) * (k + 1) as f64) as usize).min(k);
            order.swap(k, j);
        }
    }
    order
}

/// Refuses an imbalance ratio that is not a finite number ≥ 1.
pub fn validate_ratio(ratio: f64) -> Result<()> {
    if !(ratio >= 1.0 && ratio.is_finite()) {
        return Err(Error::Config(format!(
            "imbalance ratio must be a finite number ≥ 1 (1 = balanced), got {ratio}"
        )));
    }
    Ok(())
}

/// Per-label counts: round(n_max·weight), at least 1.
pub fn profile_counts(
    profile: Profile,
    n_max: usize,
    classes: usize,
    ratio: f64,
) -> Result<Vec<usize>> {
    validate_ratio(ratio)?;
    if n_max == 0 || classes == 0 {
        return Err(Error::Config(
            "a split needs at least one label and one image per label".into(),
        ));
    }
    // A ratio whose rarest label would round to no image cannot be cut: it would be clamped
    // to one image while the split records the asked ratio.
    let rarest = (0..classes)
        .map(|c| n_max as f64 * profile_weight(profile, c, classes, ratio))
        .fold(f64::INFINITY, f64::min);
    if rarest.round() < 1.0 {
        return Err(Error::Config(format!(
            "imbalance {ratio} leaves the rarest label {rarest:.2} of the head's {n_max} images; \
             the largest ratio this head count reaches is {n_max} (one image), or raise \
             `head_count`"
        )));
    }
    Ok((0..classes)
        .map(|c| {
            ((n_max as f64 * profile_weight(profile, c, classes, ratio)).round() as usize).max(1)
        })
        .collect())
}

/// What a long-tailed cut kept: written as `split.json` beside a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Split {
    pub dataset: String,
    pub profile: Profile,
    pub imbalance: f64,
    pub seed: u32,
    /// Images per label (concept) after the cut.
    pub counts: Vec<usize>,
    pub label_names: Vec<String>,
    /// For real data: the indices kept, in the source's order of images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept: Option<Vec<usize>>,
}

impl Split {
    /// A table of the per-label counts, for the terminal.
    pub fn table(&self) -> String {
        let total: usize = self.counts.iter().sum();
        let mut s = format!(
            "{} split: profile {:?}, imbalance {}, {} label occurrences\n",
            self.dataset, self.profile, self.imbalance, total
        );
        let width = self.label_names.iter().map(|n| n.len()).max().unwrap_or(1);
        let max = self.counts.iter().copied().max().unwrap_or(1).max(1);
        for (name, &n) in self.label_names.iter().zip(&self.counts) {
            let bar = "#".repeat((n * 30).div_ceil(max));
            s += &format!("  {name:>width$} {n:>6} {bar}\n");
        }
        s
    }
}

/// Keeps, for each label, the first `counts[label]` images (of their first slot's label) in a
/// seeded shuffle; the order of the kept images is the source's.
pub fn cut(data: &Dataset, counts: &[usize], seed: u32) -> Result<(Dataset, Vec<usize>)> {
    let n = data.num_labels() as usize;
    if counts.len() != n {
        return Err(Error::Config(format!(
            "{} counts for {n} labels",
            counts.len()
        )));
    }
    let have = data.label_counts();
    for (c, (&want, &got)) in counts.iter().zip(&have).enumerate() {
        if want > got {
            return Err(Error::Data(format!(
                "label {} ({}) has {got} images but the split asks for {want}; lower \
                 `head_count` or the imbalance",
                c, data.label_names[c]
            )));
        }
    }
    let mut left = counts.to_vec();
    let mut keep: Vec<usize> = super::shuffled(data.len(), seed, 0x5eed)
        .into_iter()
        .filter(|&i| {
            let l = data.labels_of(i)[0] as usize;
            if left[l] > 0 {
                left[l] -= 1;
                true
            } else {
                false
            }
        })
        .collect();
    keep.sort_unstable();
    Ok((data.subset(&keep), keep))
}

/// Sets aside a balanced evaluation set: the first `per_label` images of each label in a
/// seeded shuffle (salt distinct from [`cut`]'s). Returns (the rest, their indices in `data`,
/// the held-out set). The held-out images never reach training; evaluators (the digits
/// classifier, the Fréchet reference) are built from them.
pub fn holdout(
    data: &Dataset,
    per_label: usize,
    seed: u32,
) -> Result<(Dataset, Vec<usize>, Dataset)> {
    let have = data.label_counts();
    if let Some((c, &got)) = have.iter().enumerate().find(|(_, &g)| g <= per_label) {
        return Err(Error::Data(format!(
            "label {c} ({}) has {got} images, too few to hold out {per_label} for evaluation and \
             still train on some",
            data.label_names[c]
        )));
    }
    let mut left = vec![per_label; have.len()];
    let (mut held, mut rest) = (Vec::new(), Vec::new());
    for i in super::shuffled(data.len(), seed, 0x401d) {
        let l = data.labels_of(i)[0] as usize;
        if left[l] > 0 {
            left[l] -= 1;
            held.push(i);
        } else {
            rest.push(i);
        }
    }
    held.sort_unstable();
    rest.sort_unstable();
    Ok((data.subset(&rest), rest.clone(), data.subset(&held)))
}
