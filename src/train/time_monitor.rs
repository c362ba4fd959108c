//! The monitor by timestep: what D and the unweighted conditional error look like across
//! the noise levels, per frequency bucket of the labels.
//!
//! With ε-prediction the unconditional error behind IMBA's D depends far more on the
//! timestep than on the concept; this monitor shows how much. Every step appends one line to
//! `t_monitor.jsonl` with, per sample, its time fraction (t/T, or the flow time), its data
//! index, whether it kept its labels, its mean unweighted squared error of the conditional
//! prediction and (IMBA) its mean D. The summary averages the second half of training per
//! (timestep bucket, frequency bucket), and relates D to label frequency *within* each
//! timestep bucket, where the noise level no longer confounds it.

use super::RunDir;
use crate::data::{buckets, Dataset, BUCKETS};
use crate::stats::spearman;
use crate::Result;
use serde::{Deserialize, Serialize};

/// Timestep buckets of the summary (equal ranges of t/T or flow time).
pub const SUMMARY_BUCKETS: usize = 10;

/// One step's samples.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TLine {
    pub step: u32,
    /// Time fraction per sample.
    pub t: Vec<f32>,
    /// Data index per sample.
    pub index: Vec<u32>,
    /// Whether the sample kept its labels (its conditional error is the model's with them).
    pub cond: Vec<bool>,
    /// Mean unweighted squared error of the conditional prediction per sample.
    pub mse: Vec<f32>,
    /// Mean D per sample (IMBA; empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub d: Vec<f32>,
}

/// The mean of each sample's `per_token` values (B·N values, sample-major; empty stays
/// empty).
pub fn sample_means(per_token: &[f32], samples: usize) -> Vec<f32> {
    if per_token.is_empty() || samples == 0 {
        return Vec::new();
    }
    let n = per_token.len() / samples;
    per_token
        .chunks(n)
        .map(|c| (c.iter().map(|&x| x as f64).sum::<f64>() / n as f64) as f32)
        .collect()
}

/// The line of a step: per sample its time, data index, whether it kept its labels, its
/// mean unweighted conditional error, and its mean D (from per-token D; empty without D).
pub fn line(
    step: u32,
    t: &[f32],
    index: &[usize],
    cond: &[bool],
    mse: &[f32],
    d_per_token: &[f32],
) -> TLine {
    TLine {
        step,
        t: t.to_vec(),
        index: index.iter().map(|&i| i as u32).collect(),
        cond: cond.to_vec(),
        mse: mse.to_vec(),
        d: sample_means(d_per_token, index.len()),
    }
}

/// Per (timestep bucket, frequency bucket): means and counts over the summary window.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TSummary {
    pub from_step: u32,
    /// Timestep buckets: bucket k covers time fractions [k/K, (k+1)/K).
    pub buckets: usize,
    /// Frequency buckets (head, mid, tail by the sample's first label).
    pub frequency_buckets: Vec<String>,
    /// mean_mse\[k\]\[f\]: unweighted conditional MSE of samples that kept their labels.
    pub mean_mse: Vec<Vec<f64>>,
    /// mean_d\[k\]\[f\]: mean D (empty without D).
    pub mean_d: Vec<Vec<f64>>,
    pub count: Vec<Vec<u64>>,
    /// max over timestep buckets of the mean D over min (all frequencies): how much D moves
    /// with the noise level.
    pub d_range_over_t: f64,
    /// Spearman ρ(label frequency, mean D of the label) within each timestep bucket, and
    /// their mean: D against rarity with the noise level held fixed.
    pub spearman_within_t: Vec<f64>,
    pub spearman_within_t_mean: f64,
}

/// Summarises the lines after `from_step`.
pub fn summarise(lines: &[TLine], from_step: u32, data: &Dataset) -> TSummary {
    let freq = data.label_counts();
    let fb = buckets(&freq);
    let k = SUMMARY_BUCKETS;
    let labels = freq.len();
    let has_d = lines.iter().any(|l| !l.d.is_empty());
    let (mut mse, mut mse_n) = (vec![vec![0.0; 3]; k], vec![vec![0u64; 3]; k]);
    let (mut d, mut d_n) = (vec![vec![0.0; 3]; k], vec![vec![0u64; 3]; k]);
    let (mut d_label, mut d_label_n) = (vec![vec![0.0; labels]; k], vec![vec![0u64; labels]; k]);
    for l in lines.iter().filter(|l| l.step > from_step) {
        for (j, &i) in l.index.iter().enumerate() {
            let tb = ((l.t[j] as f64 * k as f64) as usize).min(k - 1);
            let label = data.labels_of(i as usize)[0] as usize;
            let f = fb[label];
            if l.cond[j] {
                mse[tb][f] += l.mse[j] as f64;
                mse_n[tb][f] += 1;
            }
            if has_d && j < l.d.len() {
                d[tb][f] += l.d[j] as f64;
                d_n[tb][f] += 1;
                d_label[tb][label] += l.d[j] as f64;
                d_label_n[tb][label] += 1;
            }
        }
    }
    let div = |s: &[Vec<f64>], n: &[Vec<u64>]| -> Vec<Vec<f64>> {
        s.iter()
            .zip(n)
            .map(|(a, b)| {
                a.iter()
                    .zip(b)
                    .map(|(x, &c)| if c > 0 { x / c as f64 } else { f64::NAN })
                    .collect()
            })
            .collect()
    };
    let mean_mse = div(&mse, &mse_n);
    let (mean_d, d_range_over_t, spearman_within_t) = if has_d {
        let mean_d = div(&d, &d_n);
        let per_t: Vec<f64> = (0..k)
            .map(|tb| {
                let (s, n): (f64, u64) = (d[tb].iter().sum(), d_n[tb].iter().sum());
                if n > 0 {
                    s / n as f64
                } else {
                    f64::NAN
                }
            })
            .filter(|x| x.is_finite())
            .collect();
        let range = per_t.iter().cloned().fold(f64::MIN, f64::max)
            / per_t.iter().cloned().fold(f64::MAX, f64::min);
        let rho: Vec<f64> = (0..k)
            .map(|tb| {
                let (x, y): (Vec<f64>, Vec<f64>) = (0..labels)
                    .filter(|&l| d_label_n[tb][l] > 0)
                    .map(|l| (freq[l] as f64, d_label[tb][l] / d_label_n[tb][l] as f64))
                    .unzip();
                spearman(&x, &y)
            })
            .collect();
        (mean_d, range, rho)
    } else {
        (Vec::new(), f64::NAN, Vec::new())
    };
    let finite: Vec<f64> = spearman_within_t
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    TSummary {
        from_step,
        buckets: k,
        frequency_buckets: BUCKETS.iter().map(|s| s.to_string()).collect(),
        mean_mse,
        mean_d,
        count: mse_n,
        d_range_over_t,
        spearman_within_t_mean: crate::stats::mean_std(&finite).0,
        spearman_within_t,
    }
}

/// Writes the run's t-monitor summary and its plots (MSE vs t; D vs t where there is D).
pub fn finish(run: &RunDir, steps: u32, data: &Dataset) -> Result<TSummary> {
    let lines: Vec<TLine> = super::jsonl::read_jsonl(&run.t_log());
    let s = summarise(&lines, steps / 2, data);
    crate::files::write_json(&run.t_summary(), &s)?;
    plot(
        &run.mse_t_plot(),
        &s.mean_mse,
        &s,
        "unweighted conditional MSE",
    )?;
    if !s.mean_d.is_empty() {
        plot(&run.d_t_plot(), &s.mean_d, &s, "mean D")?;
    }
    Ok(s)
}

/// One series per frequency bucket against the timestep buckets' centres.
pub fn plot(path: &std::path::Path, values: &[Vec<f64>], s: &TSummary, what: &str) -> Result<()> {
    let series: Vec<crate::report::plot::Series> = (0..3)
        .map(|f| crate::report::plot::Series {
            name: s.frequency_buckets[f].clone(),
            points: (0..s.buckets)
                .map(|tb| ((tb as f64 + 0.5) / s.buckets as f64, values[tb][f]))
                .filter(|p| p.1.is_finite())
                .collect(),
        })
        .collect();
    crate::report::plot::lines(
        path,
        &format!("{what} by timestep, per frequency bucket (second half of training)"),
        "t / T",
        what,
        false,
        &series,
    )
}
