//! The comparison's figures: a bar chart per metric family, the tail score's learning
//! curve, the loss curves and D against label frequency, each over the seeds.

use super::report::{self, stat};
use super::{Comparison, RunResult};
use crate::report::plot::{bars, lines, Series};
use crate::stats::mean_std;
use crate::train::{monitor, RunDir};
use crate::Result;
use std::path::Path;

/// The runs of variant `v`, every seed.
fn runs_of<'a>(c: &'a Comparison, v: &str) -> Vec<&'a RunResult> {
    c.runs.iter().filter(|r| r.variant == v).collect()
}

/// One bar chart per metric family (the part before '/'), mean ± std over seeds.
pub(super) fn metric_bars(root: &Path, c: &Comparison, variants: &[String]) -> Result<()> {
    let by = |v: &str| runs_of(c, v);
    let all = super::report::metric_names(c);
    let mut families: Vec<String> = Vec::new();
    for m in &all {
        let f = m.split('/').next().unwrap_or(m).to_string();
        if !families.contains(&f) {
            families.push(f);
        }
    }
    for f in &families {
        let names: Vec<String> = (all.iter())
            .filter(|m| m.split('/').next() == Some(f.as_str()))
            .cloned()
            .collect();
        let groups: Vec<String> = names
            .iter()
            .map(|m| m.split('/').nth(1).unwrap_or(m).to_string())
            .collect();
        let series: Vec<Series> = variants
            .iter()
            .map(|v| Series {
                name: v.clone(),
                points: names
                    .iter()
                    .map(|m| stat(&by(v), |r| r.evaluation.metric(m)))
                    .collect(),
            })
            .collect();
        bars(
            &root.join(format!("{f}.png")),
            &format!("{}: {f} (mean ± std over seeds)", c.dataset),
            f,
            &groups,
            &series,
        )?;
    }
    Ok(())
}

/// The tail score's learning curve, where snapshots were scored.
pub(super) fn tail_curve(root: &Path, c: &Comparison, variants: &[String]) -> Result<()> {
    let by = |v: &str| runs_of(c, v);
    let steps = report::curve_steps(c);
    if steps.len() >= 2 {
        let name = format!("{}/tail", report::family(c));
        let series: Vec<Series> = variants
            .iter()
            .map(|v| Series {
                name: v.clone(),
                points: steps
                    .iter()
                    .map(|&s| (s as f64, stat(&by(v), |r| report::score_at(r, s, &name)).0))
                    .filter(|p| p.1.is_finite())
                    .collect(),
            })
            .collect();
        lines(
            &root.join("curve.png"),
            &format!("{}: {name} by training step (mean over seeds)", c.dataset),
            "step",
            &name,
            false,
            &series,
        )?;
    }
    Ok(())
}

/// The unweighted conditional MSE by step, averaged over seeds and smoothed.
pub(super) fn loss_curves(root: &Path, c: &Comparison, variants: &[String]) -> Result<()> {
    let by = |v: &str| runs_of(c, v);
    let curves: Vec<Series> = variants
        .iter()
        .map(|v| {
            let logs: Vec<Vec<f32>> = by(v)
                .iter()
                .map(|r| {
                    RunDir::new(root.join(v).join(format!("seed{}", r.seed)))
                        .read_log()
                        .iter()
                        .map(|s| s.mse_c.unwrap_or(f32::NAN))
                        .collect()
                })
                .collect();
            let n = logs.iter().map(|l| l.len()).min().unwrap_or(0);
            let w = (n / 30).max(1);
            let points = (0..n / w)
                .map(|k| {
                    // NaN steps (no sample kept its labels) are left out of the mean.
                    let v: Vec<f64> = logs
                        .iter()
                        .flat_map(|l| l[k * w..(k + 1) * w].iter().map(|&x| x as f64))
                        .collect();
                    (((k + 1) * w) as f64, mean_std(&v).0)
                })
                .collect();
            Series {
                name: v.clone(),
                points,
            }
        })
        .collect();
    lines(
        &root.join("loss.png"),
        &format!(
            "{}: unweighted conditional MSE (mean over seeds)",
            c.dataset
        ),
        "step",
        "MSE of the conditional prediction",
        false,
        &curves,
    )
}

/// Mean D per label against the label's training images, for the IMBA variants.
pub(super) fn d_vs_frequency(root: &Path, c: &Comparison, variants: &[String]) -> Result<()> {
    let by = |v: &str| runs_of(c, v);
    let d: Vec<Series> = variants
        .iter()
        .filter_map(|v| {
            let sums: Vec<&monitor::DSummary> =
                by(v).iter().filter_map(|r| r.d_monitor.as_ref()).collect();
            // The seeds' mean D per label, as one summary.
            let mean = monitor::DSummary {
                mean_d: (0..sums.first()?.mean_d.len())
                    .map(|k| mean_std(&sums.iter().map(|s| s.mean_d[k]).collect::<Vec<_>>()).0)
                    .collect(),
                ..(*sums.first()?).clone()
            };
            Some(Series {
                name: v.clone(),
                points: monitor::points(&mean),
            })
        })
        .collect();
    if !d.is_empty() {
        lines(
            &root.join("d_vs_frequency.png"),
            &format!("{}: mean D per label vs training images", c.dataset),
            "training images with the label",
            "mean D",
            true,
            &d,
        )?;
    }
    Ok(())
}
