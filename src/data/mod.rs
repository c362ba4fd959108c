//! Data sets (docs/design.md) and long-tailed splits.
//!
//! Every data set is held in memory as images (n, C, H, W) in [−1, 1] and `slots` labels per
//! image (`NO_LABEL` in unused slots). Generated sets (`toy2d`,
//! `shapes`) are drawn from a seed with the per-label counts of a long-tail profile; real sets
//! (`digits`, `folder`) are cut to one by keeping the first n_c images of each label in a
//! seeded shuffle.

mod digits;
mod folder;
pub mod idx;
mod shapes;
pub mod split;
mod toy2d;

pub use digits::{load_digits, DIGITS_CSV};
pub use folder::load_folder;
pub use idx::{load_idx, IdxSplit};
pub use shapes::{
    inside, is_inert, jitter_sizes, render_jittered, render_shapes, shapes, template, Jitter,
    ShapesSpec, COLOURS, CONCEPTS_PER_SLOT, SHAPES,
};
pub use split::{cut, frequency_order, holdout, profile_counts, profile_weight, Profile, Split};
pub use toy2d::{toy2d, toy2d_means, Toy2dSpec};

use crate::kernels::NO_LABEL;
use crate::{Error, Result};

/// An in-memory data set.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Short name ("toy2d", "shapes", "digits", "folder").
    pub name: String,
    pub channels: u32,
    pub height: u32,
    pub width: u32,
    /// Images (n, C, H, W), f32 in [−1, 1].
    pub images: Vec<f32>,
    /// `slots` labels per image.
    pub labels: Vec<u32>,
    pub slots: u32,
    /// The name of each label (concept), index = label id.
    pub label_names: Vec<String>,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len() / self.slots.max(1) as usize
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Values per image C·H·W.
    pub fn image_len(&self) -> usize {
        (self.channels * self.height * self.width) as usize
    }
    pub fn num_labels(&self) -> u32 {
        self.label_names.len() as u32
    }
    /// Image i's values.
    pub fn image(&self, i: usize) -> &[f32] {
        let l = self.image_len();
        &self.images[i * l..(i + 1) * l]
    }
    /// Image i's labels (`slots` entries).
    pub fn labels_of(&self, i: usize) -> &[u32] {
        let s = self.slots as usize;
        &self.labels[i * s..(i + 1) * s]
    }

    /// The distinct label rows of the set, sorted.
    pub fn distinct_label_rows(&self) -> Vec<Vec<u32>> {
        let mut rows = self.image_label_rows();
        rows.sort();
        rows.dedup();
        rows
    }

    /// How many images carry each label.
    pub fn label_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.label_names.len()];
        for &l in &self.labels {
            if l != NO_LABEL {
                counts[l as usize] += 1;
            }
        }
        counts
    }

    /// Every image's label row, in order.
    pub fn image_label_rows(&self) -> Vec<Vec<u32>> {
        (0..self.len())
            .map(|i| self.labels_of(i).to_vec())
            .collect()
    }

    /// Checks sizes, label ranges and finiteness, naming the first bad image.
    pub fn validate(&self) -> Result<()> {
        if self.is_empty() {
            return Err(Error::Data(format!(
                "data set `{}` has no images",
                self.name
            )));
        }
        if self.images.len() != self.len() * self.image_len() {
            return Err(Error::Data(format!(
                "data set `{}`: {} values for {} images of {}×{}×{}",
                self.name,
                self.images.len(),
                self.len(),
                self.channels,
                self.height,
                self.width
            )));
        }
        let n = self.num_labels();
        if let Some(i) = self.labels.iter().position(|&l| l != NO_LABEL && l >= n) {
            return Err(Error::Data(format!(
                "data set `{}`: image {} has label {} but there are only {n} labels (0..{})",
                self.name,
                i / self.slots as usize,
                self.labels[i],
                n.saturating_sub(1)
            )));
        }
        if let Some(i) = self.images.iter().position(|v| !v.is_finite()) {
            return Err(Error::Data(format!(
                "data set `{}`: image {} holds a non-finite value ({}); clean the data",
                self.name,
                i / self.image_len(),
                self.images[i]
            )));
        }
        Ok(())
    }

    /// A 64-bit FNV-1a fingerprint of the images and labels, stored in checkpoints so a resume
    /// on different data is refused.
    pub fn fingerprint(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |w: u32| {
            for b in w.to_le_bytes() {
                h ^= b as u64;
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        for &v in &self.images {
            eat(v.to_bits());
        }
        for &l in &self.labels {
            eat(l);
        }
        for d in [self.channels, self.height, self.width, self.slots] {
            eat(d);
        }
        h
    }

    /// The subset of images `keep` (in that order).
    pub fn subset(&self, keep: &[usize]) -> Dataset {
        let mut images = Vec::with_capacity(keep.len() * self.image_len());
        let mut labels = Vec::with_capacity(keep.len() * self.slots as usize);
        for &i in keep {
            images.extend_from_slice(self.image(i));
            labels.extend_from_slice(self.labels_of(i));
        }
        Dataset {
            images,
            labels,
            ..self.clone()
        }
    }
}

/// A Fisher–Yates shuffle of 0..n driven by Philox (key (seed, salt), stream 4), so that the
/// same seed gives the same order on every machine.
pub fn shuffled(n: usize, seed: u32, salt: u32) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let w = crate::rng::philox4x32_10([i as u32, 4, 0, 0], [seed, salt])[0];
        let j = ((w as u64 * (i as u64 + 1)) >> 32) as usize;
        idx.swap(i, j);
    }
    idx
}

/// An endless sequence of epochs over n items, each a [`shuffled`] order keyed by
/// (seed, salt ^ epoch); the current epoch's order is kept.
#[derive(Clone, Debug)]
pub struct EpochOrder {
    n: usize,
    seed: u32,
    salt: u32,
    current: Option<(u32, Vec<usize>)>,
}

impl EpochOrder {
    pub fn new(n: usize, seed: u32, salt: u32) -> Self {
        Self {
            n,
            seed,
            salt,
            current: None,
        }
    }

    /// The items of step `s` with batch `b`: positions s·b .. s·b + b of the sequence.
    pub fn batch(&mut self, s: u32, b: u32) -> Vec<usize> {
        let n = self.n as u64;
        (0..b as u64)
            .map(|j| {
                let p = s as u64 * b as u64 + j;
                let epoch = (p / n) as u32;
                if self.current.as_ref().map(|(e, _)| *e) != Some(epoch) {
                    let order = shuffled(self.n, self.seed, self.salt ^ epoch);
                    self.current = Some((epoch, order));
                }
                self.current.as_ref().expect("set above").1[(p % n) as usize]
            })
            .collect()
    }
}

/// A uniform f64 in [0, 1) from Philox (key (seed, salt), counter (i, stream)).
pub fn uniform(seed: u32, salt: u32, stream: u32, i: u32) -> f64 {
    crate::rng::uniform(seed, salt, stream, i)
}

/// `per` copies of every label, label by label.
pub fn class_labels(data: &Dataset, per: u32) -> Vec<u32> {
    (0..data.num_labels())
        .flat_map(|l| std::iter::repeat_n(l, per as usize))
        .collect()
}

/// Frequency bucket names, in order (labels ranked by training images, terciles).
pub const BUCKETS: [&str; 3] = ["head", "mid", "tail"];

/// The bucket (0 head, 1 mid, 2 tail) of each label from its training frequency.
pub fn buckets(freq: &[usize]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..freq.len()).collect();
    order.sort_by_key(|&k| (std::cmp::Reverse(freq[k]), k));
    let mut b = vec![0; freq.len()];
    for (r, &k) in order.iter().enumerate() {
        b[k] = 3 * r / freq.len();
    }
    b
}

impl crate::objectives::registry::LabelSource for Dataset {
    fn label_counts(&self) -> Vec<usize> {
        Dataset::label_counts(self)
    }
    fn image_label_rows(&self) -> Vec<Vec<u32>> {
        Dataset::image_label_rows(self)
    }
    fn distinct_label_rows(&self) -> Vec<Vec<u32>> {
        Dataset::distinct_label_rows(self)
    }
}
