//! The raw results of a comparison, one JSON line per scored point of every run (the final
//! model at each guidance scale, each snapshot at the main one): what a script recomputes
//! every table and interval from (`raw.jsonl` beside compare.md).

use super::{Comparison, RunResult};
use crate::eval::LabelScore;
use crate::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One scored point of one run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RawRecord {
    pub dataset: String,
    /// ddpm (ε-prediction) or flow (velocity).
    pub process: String,
    pub variant: String,
    pub seed: u32,
    pub data_seed: u32,
    /// The run's training budget and the step of the weights scored.
    pub steps: u32,
    pub step: u32,
    pub guidance: f32,
    pub rows_per_step: u32,
    pub metrics: Vec<(String, f64)>,
    pub per_label: Vec<LabelScore>,
}

/// Every scored point of `c`'s runs, by run, then guidance, then step.
pub fn records(c: &Comparison) -> Vec<RawRecord> {
    let mut out = Vec::new();
    for r in &c.runs {
        let point =
            |step, guidance, metrics: &Vec<(String, f64)>, per_label: &Vec<LabelScore>| RawRecord {
                dataset: c.dataset.clone(),
                process: c.process.clone(),
                variant: r.variant.clone(),
                seed: r.seed,
                data_seed: if c.data_per_seed { r.seed } else { c.data_seed },
                steps: r.steps,
                step,
                guidance,
                rows_per_step: r.rows_per_step,
                metrics: metrics.clone(),
                per_label: per_label.clone(),
            };
        let main = main_guidance(r);
        let e = &r.evaluation;
        out.push(point(r.steps, main, &e.metrics, &e.per_label));
        for p in &r.sweep {
            out.push(point(r.steps, p.guidance, &p.metrics, &p.per_label));
        }
        for p in &r.curve {
            out.push(point(p.step, main, &p.metrics, &p.per_label));
        }
    }
    out
}

/// The guidance scale of a run's main evaluation.
fn main_guidance(r: &RunResult) -> f32 {
    r.eval_options
        .as_ref()
        .map_or(crate::eval::EvalOptions::default().guidance, |o| o.guidance)
}

/// Writes [`records`] as JSON lines to `path`, atomically.
pub fn write(path: &Path, c: &Comparison) -> Result<()> {
    let mut text = String::new();
    for r in records(c) {
        text += &serde_json::to_string(&r).expect("a record serialises");
        text.push('\n');
    }
    crate::files::write_file(path, text)
}
