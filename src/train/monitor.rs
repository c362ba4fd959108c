//! The D monitor: a check of the paper's claim that D grows as a concept's frequency falls.
//!
//! Every IMBA step reads back D per (sample, token). Each label a sample carries is credited
//! with the D of the tokens that show it: in `shapes` concepts mode, a slot's shape and colour
//! with the tokens whose patch lies in that slot's half of the image; otherwise every label with
//! all of its sample's tokens. One line per step goes to `d_monitor.jsonl` (sums and token
//! counts per label), so a resumed run keeps an exact record; the summary averages the second
//! half of the steps (after the model has left its initialisation) and relates mean D to the
//! label's training frequency by Spearman's ρ.

use super::RunDir;
use crate::data::Dataset;
use crate::model::DitConfig;
use crate::stats::spearman;
use crate::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One step's D sums and token counts per label.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DLine {
    pub step: u32,
    pub sum: Vec<f64>,
    pub tokens: Vec<u32>,
}

/// For each label slot of a sample, the tokens that show it.
pub fn slot_tokens(data: &Dataset, model: &DitConfig) -> Vec<Vec<u32>> {
    let n = model.tokens();
    let all: Vec<u32> = (0..n).collect();
    if data.name == "shapes" && data.slots == 4 {
        let gw = model.width / model.patch;
        let half = model.width / 2;
        (0..4)
            .map(|slot| {
                let object = slot / 2;
                all.iter()
                    .copied()
                    .filter(|&t| ((t % gw) * model.patch >= half) as u32 == object)
                    .collect()
            })
            .collect()
    } else {
        vec![all; data.slots as usize]
    }
}

/// Credits one step's D (B·N values, sample-major) to the labels of its batch.
pub fn attribute(
    step: u32,
    data: &Dataset,
    tokens: &[Vec<u32>],
    batch: &[usize],
    d: &[f32],
) -> DLine {
    let n = d.len() / batch.len().max(1);
    let mut line = DLine {
        step,
        sum: vec![0.0; data.num_labels() as usize],
        tokens: vec![0; data.num_labels() as usize],
    };
    for (b, &i) in batch.iter().enumerate() {
        for (slot, &l) in data.labels_of(i).iter().enumerate() {
            if l == crate::kernels::NO_LABEL {
                continue;
            }
            for &t in &tokens[slot] {
                line.sum[l as usize] += d[b * n + t as usize] as f64;
                line.tokens[l as usize] += 1;
            }
        }
    }
    line
}

/// Mean D per label over the lines after `from_step`, its relation to frequency.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DSummary {
    pub from_step: u32,
    pub label_names: Vec<String>,
    /// Training images per label.
    pub frequency: Vec<usize>,
    /// Mean D per label (NaN: never in a batch in the window).
    pub mean_d: Vec<f64>,
    /// Spearman's ρ between frequency and mean D (negative: rarer labels get more weight).
    pub spearman: f64,
}

/// Summarises the lines after `from_step`.
pub fn summarise(lines: &[DLine], from_step: u32, names: &[String], freq: &[usize]) -> DSummary {
    let k = names.len();
    let (mut s, mut c) = (vec![0.0; k], vec![0u64; k]);
    for l in lines.iter().filter(|l| l.step > from_step) {
        for j in 0..k.min(l.sum.len()) {
            s[j] += l.sum[j];
            c[j] += l.tokens[j] as u64;
        }
    }
    let mean_d: Vec<f64> = (0..k)
        .map(|j| {
            if c[j] > 0 {
                s[j] / c[j] as f64
            } else {
                f64::NAN
            }
        })
        .collect();
    let pairs: Vec<(f64, f64)> = freq
        .iter()
        .zip(&mean_d)
        .filter(|(_, d)| d.is_finite())
        .map(|(&f, &d)| (f as f64, d))
        .collect();
    let (x, y): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
    DSummary {
        from_step,
        label_names: names.to_vec(),
        frequency: freq.to_vec(),
        mean_d,
        spearman: spearman(&x, &y),
    }
}

/// Writes the run's D summary and its plot from the monitor's log.
pub fn finish(run: &RunDir, steps: u32, names: &[String], freq: &[usize]) -> Result<DSummary> {
    let lines: Vec<DLine> = super::jsonl::read_jsonl(&run.d_log());
    let summary = summarise(&lines, steps / 2, names, freq);
    crate::files::write_json(&run.d_summary(), &summary)?;
    plot(&run.d_plot(), &summary, "IMBA")?;
    Ok(summary)
}

/// (training frequency, mean D) per label, by rising frequency: the points of a D plot.
pub fn points(s: &DSummary) -> Vec<(f64, f64)> {
    let mut points: Vec<(f64, f64)> = s
        .frequency
        .iter()
        .zip(&s.mean_d)
        .map(|(&f, &d)| (f.max(1) as f64, d))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    points
}

/// Mean D against training frequency (log scale), one point per label.
pub fn plot(path: &Path, s: &DSummary, what: &str) -> Result<()> {
    let points = points(s);
    crate::report::plot::lines(
        path,
        &format!(
            "{what}: mean D per label vs training frequency (Spearman {:.2})",
            s.spearman
        ),
        "training images with the label",
        "mean D (second half of training)",
        true,
        &[crate::report::plot::Series {
            name: what.into(),
            points,
        }],
    )
}
