//! What a comparison scores besides each run's final model at the main guidance scale: the
//! learning curve (every snapshot the run kept) and the guidance sweep (the final model at
//! further scales). Both are filled in incrementally, so a rerun only scores what is missing.

use super::{RunResult, Study};
use crate::eval::{evaluate_run, evaluate_snapshot, EvalOptions};
use crate::train::RunDir;
use crate::Result;
use serde::{Deserialize, Serialize};

/// One snapshot's scores.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CurvePoint {
    pub step: u32,
    pub metrics: Vec<(String, f64)>,
    /// Per-label scores (absent in results of earlier versions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_label: Vec<crate::eval::LabelScore>,
}

/// The final model's scores at one guidance scale.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SweepPoint {
    pub guidance: f32,
    pub metrics: Vec<(String, f64)>,
    /// Per-label scores (absent in results of earlier versions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_label: Vec<crate::eval::LabelScore>,
}

impl Study<'_> {
    /// Scores the snapshots and sweep scales `r` lacks; whether anything was added. The
    /// invdiff variant keeps no snapshots of its own and is swept like the others.
    pub(super) fn complete(&self, r: &mut RunResult, run: &RunDir) -> Result<bool> {
        let mut added = false;
        for step in run.snapshot_steps() {
            if step >= r.steps || r.curve.iter().any(|p| p.step == step) {
                continue;
            }
            if self.progress {
                eprintln!(
                    "{} seed {}: scoring the snapshot of step {step}",
                    r.variant, r.seed
                );
            }
            let e = evaluate_snapshot(self.gpu, run.root(), step, &self.spec.eval)?;
            r.curve.push(CurvePoint {
                step,
                metrics: e.evaluation.metrics,
                per_label: e.evaluation.per_label,
            });
            added = true;
        }
        r.curve.sort_by_key(|p| p.step);
        if r.variant == "invdiff" {
            return Ok(added);
        }
        for &g in &self.spec.sweep {
            if g == self.spec.eval.guidance || r.sweep.iter().any(|p| p.guidance == g) {
                continue;
            }
            if self.progress {
                eprintln!("{} seed {}: scoring at guidance {g}", r.variant, r.seed);
            }
            let o = EvalOptions {
                guidance: g,
                ..self.spec.eval.clone()
            };
            let e = evaluate_run(self.gpu, run.root(), &o)?;
            r.sweep.push(SweepPoint {
                guidance: g,
                metrics: e.evaluation.metrics,
                per_label: e.evaluation.per_label,
            });
            added = true;
        }
        r.sweep.sort_by(|a, b| a.guidance.total_cmp(&b.guidance));
        Ok(added)
    }
}
