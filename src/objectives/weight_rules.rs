//! Per-sample weights chosen on the host for the dual loss: the arms that separate what
//! IMBA's weight does for rare concepts from what it does for timesteps and single samples
//! (docs/design.md#reweighted-arms).
//!
//! Each rule turns a step's samples (labels, timestep buckets) into a weight per token, from
//! state it keeps over earlier steps' *unnormalised* IMBA weights D (read back after each
//! step). Using earlier steps keeps a step to one submission; the running means lag by one
//! step, which their decay (about a hundred batches) makes immaterial.
//!
//! - [`WeightRule::ClassMeanD`]: every sample of label y in timestep bucket k weighs
//!   m̄(y, k) / m̄(k), the running mean of D over that label's samples in that bucket divided by
//!   the running mean over all samples in the bucket: IMBA's own signal reduced to its
//!   concept part (no per-sample or per-token variation, no timestep trend).
//! - [`WeightRule::InverseFrequency`]: w_y = N / (L·n_y), explicit class balancing normalised
//!   so that the mean weight over the training data is 1.
//! - [`WeightRule::ShuffledD`]: a placebo with the timestep-normalised weight's distribution
//!   and none of its link to the sample: each sample takes the per-token D of a random earlier
//!   sample of the same timestep bucket, divided by that bucket's running mean.
//! - [`WeightRule::TimeMeanD`]: every sample of timestep bucket k weighs m̄(k), the bucket's
//!   running mean of the *unnormalised* D: published IMBA's timestep profile, at its scale,
//!   with every difference between samples, labels and tokens of one bucket removed (the
//!   complement of the timestep-normalised weight, which keeps only those differences).
//! - [`WeightRule::MeanD`]: every sample weighs m̄, the running mean of the unnormalised D over
//!   all samples: published IMBA's overall scale alone. Under λ's mix a constant weight below
//!   1 shifts the balance towards the unconditional term, so this arm tells that shift from
//!   the timestep profile [`WeightRule::TimeMeanD`] adds to it.
//!
//! Buckets and decay are those of the t-bucket normalisation (`time_buckets`, `time_decay`).
//! The state is a flat list of f32 that a checkpoint saves (see [`HostWeights::state`]).

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Which host rule weighs the samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "workflow", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum WeightRule {
    /// The running mean of D per (label, timestep bucket) over the bucket's running mean.
    #[default]
    ClassMeanD,
    /// N / (L·n_y): inverse label frequency, mean 1 over the data.
    InverseFrequency,
    /// The timestep-normalised D of a random earlier sample of the same bucket (a placebo).
    ShuffledD,
    /// The running mean of the unnormalised D in the sample's timestep bucket.
    TimeMeanD,
    /// The running mean of the unnormalised D over all samples.
    MeanD,
}

/// Earlier samples' D vectors each bucket keeps for [`WeightRule::ShuffledD`].
pub const POOL: usize = 32;

/// A step's samples as the rules see them.
pub struct Samples<'a> {
    /// Label rows, `slots` labels per sample.
    pub labels: &'a [u32],
    /// Labels per sample.
    pub slots: usize,
    /// Timestep bucket of each sample.
    pub buckets: &'a [u32],
}

impl Samples<'_> {
    fn count(&self) -> usize {
        self.buckets.len()
    }
    fn labels_of(&self, b: usize) -> &[u32] {
        &self.labels[b * self.slots..(b + 1) * self.slots]
    }
}

/// A rule with its running state.
#[derive(Clone, Debug)]
pub struct HostWeights {
    rule: WeightRule,
    labels: usize,
    buckets: usize,
    tokens: usize,
    decay: f64,
    /// InverseFrequency: w_y per label.
    inverse: Vec<f64>,
    /// (m, w) per bucket: the running mean of sample-mean D in each bucket, as in the t-bucket
    /// normalisation (m / w is the bias-corrected mean). Kept in f32, as a checkpoint stores
    /// it, so that a resume continues with the same bits.
    bucket: Vec<[f32; 2]>,
    /// ClassMeanD: (m, w) per (label, bucket), label-major.
    cell: Vec<[f32; 2]>,
    /// MeanD: (m, w) over all samples (only MeanD saves it, so the other rules' checkpoints
    /// keep their layout).
    all: [f32; 2],
    /// ShuffledD: per bucket, up to POOL D vectors (tokens each) and the next slot to fill.
    pool: Vec<Vec<Vec<f32>>>,
    next: Vec<usize>,
}

impl HostWeights {
    /// A rule for `labels` labels whose training counts are `counts`, `buckets` timestep
    /// buckets with running means of decay `decay`, and `tokens` tokens per sample.
    pub fn new(
        rule: WeightRule,
        counts: &[usize],
        buckets: u32,
        decay: f32,
        tokens: u32,
    ) -> Result<Self> {
        crate::kernels::loss::validate_time_buckets(buckets, decay)?;
        let labels = counts.len();
        let total: usize = counts.iter().sum();
        if let Some(y) = counts.iter().position(|&n| n == 0) {
            if rule == WeightRule::InverseFrequency {
                return Err(Error::Data(format!(
                    "inverse-frequency weights need every label in the training data; label {y} \
                     has no image"
                )));
            }
        }
        let inverse = counts
            .iter()
            .map(|&n| total as f64 / (labels as f64 * n.max(1) as f64))
            .collect();
        let (k, n) = (buckets as usize, tokens as usize);
        Ok(Self {
            rule,
            labels,
            buckets: k,
            tokens: n,
            decay: decay as f64,
            inverse,
            bucket: vec![[0.0; 2]; k],
            cell: vec![[0.0; 2]; labels * k],
            all: [0.0; 2],
            pool: vec![Vec::new(); k],
            next: vec![0; k],
        })
    }

    /// The rule these weights follow.
    pub fn rule(&self) -> WeightRule {
        self.rule
    }

    /// Whether the rule needs each step's D read back ([`Self::observe`]).
    pub fn needs_d(&self) -> bool {
        self.rule != WeightRule::InverseFrequency
    }

    fn bucket_of(&self, k: u32) -> usize {
        (k as usize).min(self.buckets - 1)
    }

    fn bucket_mean(&self, k: usize) -> Option<f64> {
        let [m, w] = self.bucket[k];
        (w > 0.0 && m > 0.0).then(|| m as f64 / w as f64)
    }

    /// The weight per token (B·N) of a step's samples; `draw(b)` is a uniform in [0, 1) for
    /// sample b (the shuffled rule's choice of an earlier sample).
    pub fn weights(&self, s: &Samples, draw: impl Fn(usize) -> f64) -> Vec<f32> {
        let n = self.tokens;
        let mut out = Vec::with_capacity(s.count() * n);
        for b in 0..s.count() {
            let k = self.bucket_of(s.buckets[b]);
            match self.rule {
                WeightRule::InverseFrequency | WeightRule::ClassMeanD => {
                    let labels = s.labels_of(b);
                    let w = labels.iter().map(|&y| self.label_weight(y, k)).sum::<f64>()
                        / labels.len() as f64;
                    out.extend(std::iter::repeat_n(w as f32, n));
                }
                WeightRule::TimeMeanD => {
                    let w = self.bucket_mean(k).unwrap_or(1.0);
                    out.extend(std::iter::repeat_n(w as f32, n));
                }
                WeightRule::MeanD => {
                    let [m, w] = self.all;
                    let w = if w > 0.0 && m > 0.0 { m / w } else { 1.0 };
                    out.extend(std::iter::repeat_n(w, n));
                }
                WeightRule::ShuffledD => {
                    let pool = &self.pool[k];
                    match (self.bucket_mean(k), pool.is_empty()) {
                        (Some(mean), false) => {
                            let j = ((draw(b) * pool.len() as f64) as usize).min(pool.len() - 1);
                            out.extend(pool[j].iter().map(|&d| (d as f64 / mean) as f32));
                        }
                        _ => out.extend(std::iter::repeat_n(1.0, n)),
                    }
                }
            }
        }
        out
    }

    /// The weight of label `y` (a label outside the data, such as ∅, weighs 1) in bucket `k`.
    fn label_weight(&self, y: u32, k: usize) -> f64 {
        let y = y as usize;
        if y >= self.labels {
            return 1.0;
        }
        match self.rule {
            WeightRule::InverseFrequency => self.inverse[y],
            _ => {
                let [m, w] = self.cell[y * self.buckets + k];
                match self.bucket_mean(k) {
                    Some(mean) if w > 0.0 => m as f64 / w as f64 / mean,
                    _ => 1.0,
                }
            }
        }
    }

    /// Takes in a step's unnormalised D (B·N, the samples of `s`): each bucket's and each
    /// (label, bucket)'s running mean of the sample-mean D (a cell's mean moves only in steps
    /// that have its samples), and the shuffled rule's pools.
    pub fn observe(&mut self, s: &Samples, d: &[f32]) -> Result<()> {
        let n = self.tokens;
        if d.len() != s.count() * n {
            return Err(Error::Shape(format!(
                "host weights: {} D values for {} samples of {n} tokens",
                d.len(),
                s.count()
            )));
        }
        let sample_mean =
            |b: usize| d[b * n..(b + 1) * n].iter().map(|&x| x as f64).sum::<f64>() / n as f64;
        let mut all_sum = (0.0, 0usize);
        let mut bucket_sum = vec![(0.0, 0usize); self.buckets];
        let mut cell_sum = vec![(0.0, 0usize); self.cell.len()];
        for b in 0..s.count() {
            let k = self.bucket_of(s.buckets[b]);
            let mean = sample_mean(b);
            all_sum.0 += mean;
            all_sum.1 += 1;
            bucket_sum[k].0 += mean;
            bucket_sum[k].1 += 1;
            for &y in s.labels_of(b) {
                if (y as usize) < self.labels {
                    let c = &mut cell_sum[y as usize * self.buckets + k];
                    c.0 += mean;
                    c.1 += 1;
                }
            }
            if self.rule == WeightRule::ShuffledD {
                let v = d[b * n..(b + 1) * n].to_vec();
                if self.pool[k].len() < POOL {
                    self.pool[k].push(v);
                } else {
                    self.pool[k][self.next[k]] = v;
                }
                self.next[k] = (self.next[k] + 1) % POOL;
            }
        }
        let beta = self.decay;
        let update = |state: &mut [f32; 2], (sum, count): (f64, usize)| {
            if count > 0 {
                state[0] = (beta * state[0] as f64 + (1.0 - beta) * sum / count as f64) as f32;
                state[1] = (beta * state[1] as f64 + (1.0 - beta)) as f32;
            }
        };
        for (state, &sum) in self.bucket.iter_mut().zip(&bucket_sum) {
            update(state, sum);
        }
        for (state, &sum) in self.cell.iter_mut().zip(&cell_sum) {
            update(state, sum);
        }
        if self.rule == WeightRule::MeanD {
            update(&mut self.all, all_sum);
        }
        Ok(())
    }

    /// The running state as f32: bucket (m, w), cell (m, w), then per bucket its pool's
    /// fill, next slot and POOL·N values (unfilled slots zero); MeanD then adds its (m, w).
    pub fn state(&self) -> Vec<f32> {
        let mut v: Vec<f32> = self
            .bucket
            .iter()
            .chain(&self.cell)
            .flatten()
            .copied()
            .collect();
        for k in 0..self.buckets {
            v.push(self.pool[k].len() as f32);
            v.push(self.next[k] as f32);
            for j in 0..POOL {
                match self.pool[k].get(j) {
                    Some(d) => v.extend_from_slice(d),
                    None => v.extend(std::iter::repeat_n(0.0, self.tokens)),
                }
            }
        }
        if self.rule == WeightRule::MeanD {
            v.extend(self.all);
        }
        v
    }

    /// Length of [`Self::state`].
    pub fn state_len(&self) -> usize {
        let all = if self.rule == WeightRule::MeanD { 2 } else { 0 };
        2 * (self.bucket.len() + self.cell.len()) + self.buckets * (2 + POOL * self.tokens) + all
    }

    /// Restores [`Self::state`]'s output.
    pub fn restore(&mut self, v: &[f32]) -> Result<()> {
        if v.len() != self.state_len() {
            return Err(Error::Shape(format!(
                "the checkpoint holds {} values of objective state (the host weights' running \
                 means and pools) but this rule, data and model carry {}; resume with the \
                 config it was written with",
                v.len(),
                self.state_len()
            )));
        }
        let means = 2 * (self.bucket.len() + self.cell.len());
        for (s, x) in self
            .bucket
            .iter_mut()
            .chain(self.cell.iter_mut())
            .zip(v[..means].chunks(2))
        {
            *s = [x[0], x[1]];
        }
        let rest = &v[means..];
        let stride = 2 + POOL * self.tokens;
        for k in 0..self.buckets {
            let part = &rest[k * stride..(k + 1) * stride];
            let (fill, next) = (part[0] as usize, part[1] as usize);
            if fill > POOL || next >= POOL {
                return Err(Error::Shape(format!(
                    "the checkpoint's host-weight pool of bucket {k} is damaged ({fill} filled, \
                     next {next} of {POOL})"
                )));
            }
            self.pool[k] = (0..fill)
                .map(|j| part[2 + j * self.tokens..2 + (j + 1) * self.tokens].to_vec())
                .collect();
            self.next[k] = next;
        }
        if self.rule == WeightRule::MeanD {
            let end = &v[v.len() - 2..];
            self.all = [end[0], end[1]];
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples<'a>(labels: &'a [u32], buckets: &'a [u32]) -> Samples<'a> {
        Samples {
            labels,
            slots: 1,
            buckets,
        }
    }

    #[test]
    fn inverse_frequency_has_mean_one_over_the_data() {
        let counts = [100, 30, 10, 1];
        let h = HostWeights::new(WeightRule::InverseFrequency, &counts, 4, 0.9, 2).unwrap();
        let total: usize = counts.iter().sum();
        let mean: f64 = counts
            .iter()
            .enumerate()
            .map(|(y, &n)| n as f64 * h.inverse[y])
            .sum::<f64>()
            / total as f64;
        assert!((mean - 1.0).abs() < 1e-12, "{mean}");
        // The rarest label weighs 100 times the most frequent one; ∅ (label 4) weighs 1.
        let w = h.weights(&samples(&[0, 3, 4], &[0, 1, 2]), |_| 0.0);
        assert_eq!(w.len(), 6);
        assert!((w[2] as f64 / w[0] as f64 - 100.0).abs() < 1e-4);
        assert_eq!(&w[4..], &[1.0, 1.0]);
    }

    #[test]
    fn class_mean_is_the_label_mean_over_the_bucket_mean() {
        let mut h = HostWeights::new(WeightRule::ClassMeanD, &[5, 5], 2, 0.5, 2).unwrap();
        // Before any D: weight 1.
        let s = samples(&[0, 1, 0], &[0, 0, 1]);
        assert_eq!(h.weights(&s, |_| 0.0), vec![1.0; 6]);
        // Bucket 0: label 0 has sample-mean D 3, label 1 has 1 (bucket mean 2); bucket 1:
        // label 0 alone with 5.
        h.observe(&s, &[2.0, 4.0, 1.0, 1.0, 5.0, 5.0]).unwrap();
        let w = h.weights(&s, |_| 0.0);
        let want = [1.5, 1.5, 0.5, 0.5, 1.0, 1.0];
        for (got, want) in w.iter().zip(want) {
            assert!((*got as f64 - want).abs() < 1e-6, "{w:?}");
        }
        // Label 1 never seen in bucket 1: weight 1 there.
        assert_eq!(h.weights(&samples(&[1], &[1]), |_| 0.0), vec![1.0, 1.0]);
    }

    #[test]
    fn time_mean_is_the_bucket_mean_of_unnormalised_d() {
        let mut h = HostWeights::new(WeightRule::TimeMeanD, &[5, 5], 3, 0.5, 2).unwrap();
        let s = samples(&[0, 1, 0], &[0, 0, 1]);
        assert_eq!(h.weights(&s, |_| 0.0), vec![1.0; 6], "no D seen yet");
        // Bucket 0 sees sample means 3 and 1 (mean 2), bucket 1 sees 5; bias-corrected, one
        // step's means are the running means whatever the decay.
        h.observe(&s, &[2.0, 4.0, 1.0, 1.0, 5.0, 5.0]).unwrap();
        let w = h.weights(&samples(&[1, 0, 1], &[0, 1, 2]), |_| 0.0);
        assert_eq!(
            w,
            vec![2.0, 2.0, 5.0, 5.0, 1.0, 1.0],
            "label-blind; bucket 2 unseen"
        );
        // A second step in bucket 0 with mean 6: (0.5·0.5·2 + 0.5·6) / (0.5·0.5 + 0.5) = 4.667.
        h.observe(&samples(&[1], &[0]), &[6.0, 6.0]).unwrap();
        let w = h.weights(&samples(&[0], &[0]), |_| 0.0);
        assert!((w[0] as f64 - 14.0 / 3.0).abs() < 1e-5, "{w:?}");
    }

    #[test]
    fn mean_is_the_running_mean_of_unnormalised_d_over_all_samples() {
        let mut h = HostWeights::new(WeightRule::MeanD, &[5, 5], 3, 0.5, 2).unwrap();
        let s = samples(&[0, 1, 0], &[0, 0, 1]);
        assert_eq!(h.weights(&s, |_| 0.0), vec![1.0; 6], "no D seen yet");
        // Sample means 3, 1 and 5: one step's mean, 3, whatever the bucket or label.
        h.observe(&s, &[2.0, 4.0, 1.0, 1.0, 5.0, 5.0]).unwrap();
        assert_eq!(h.weights(&samples(&[1, 0], &[2, 0]), |_| 0.0), vec![3.0; 4]);
        // Then a step of mean 6: (0.5·0.5·3 + 0.5·6) / (0.5·0.5 + 0.5) = 5.
        h.observe(&samples(&[1], &[2]), &[6.0, 6.0]).unwrap();
        let w = h.weights(&samples(&[0], &[1]), |_| 0.0);
        assert!((w[0] - 5.0).abs() < 1e-6, "{w:?}");
    }

    #[test]
    fn shuffled_draws_an_earlier_vector_of_the_same_bucket() {
        let mut h = HostWeights::new(WeightRule::ShuffledD, &[5, 5], 2, 0.0, 2).unwrap();
        let s = samples(&[0, 1], &[0, 1]);
        h.observe(&s, &[1.0, 3.0, 10.0, 30.0]).unwrap();
        // Decay 0: the bucket means are this step's (2 and 20); each sample gets the only
        // vector of its bucket, whatever its label.
        let w = h.weights(&samples(&[1, 0], &[0, 1]), |_| 0.99);
        assert_eq!(w, vec![0.5, 1.5, 0.5, 1.5]);
    }

    #[test]
    fn state_round_trips_exactly() {
        for rule in [
            WeightRule::ClassMeanD,
            WeightRule::ShuffledD,
            WeightRule::TimeMeanD,
            WeightRule::MeanD,
        ] {
            let mut h = HostWeights::new(rule, &[3, 2, 1], 3, 0.99, 2).unwrap();
            for step in 0..40u32 {
                let labels = [step % 3, (step + 1) % 3];
                let buckets = [step % 3, (step * 7) % 3];
                let d = [0.1 * step as f32, 0.3, 1.0 / (1 + step) as f32, 0.7];
                h.observe(&samples(&labels, &buckets), &d).unwrap();
            }
            let mut g = HostWeights::new(rule, &[3, 2, 1], 3, 0.99, 2).unwrap();
            g.restore(&h.state()).unwrap();
            let s = samples(&[0, 1, 2], &[0, 1, 2]);
            let draw = |b: usize| 0.37 * b as f64;
            assert_eq!(g.weights(&s, draw), h.weights(&s, draw), "{rule:?}");
            assert_eq!(g.state(), h.state());
            assert!(g.restore(&h.state()[1..]).is_err());
        }
    }
}
