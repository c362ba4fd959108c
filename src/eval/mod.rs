//! Evaluation of a trained run on its data set's oracle (see docs/evaluation.md):
//! - `shapes`: the [`detector`] reads each slot back; success per label (class mode) or per
//!   concept and per prompt, with unseen ("inert") combinations apart (concepts mode);
//! - `toy2d`: per-class hit rate and the pull of tail samples toward the data's mean;
//! - `digits`: a [`classifier`] trained on the held-out balanced digits gives the accuracy of
//!   generated samples, their features the Fréchet distance; diversity is pixel-space.
//!
//! Per-label scores are grouped into frequency buckets: labels ranked by training images
//! (most first, ties by label id), rank r of n in bucket ⌊3r/n⌋ (head, mid, tail); a bucket's
//! score is the mean of its labels' scores (macro average).

pub mod classifier;
pub mod detector;
pub mod knn;
pub mod manifold;
mod oracles;
mod spread;
pub use oracles::{
    class_object, digits, digits_classifier, idx, shapes_classes, shapes_concepts, toy2d,
};
pub use spread::mean_pairwise;

use crate::data::class_labels;
use crate::data::{Dataset, CONCEPTS_PER_SLOT};
use crate::diffusion::generate::{generate, SampleSpec};
use crate::diffusion::Sampler;
use crate::gpu::Gpu;
use crate::train::{setup, DatasetKind, TrainConfig};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub use crate::data::{buckets, BUCKETS};

/// One label's (or concept's) score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelScore {
    pub name: String,
    pub frequency: usize,
    pub bucket: String,
    /// The main per-label score (success, hit rate or accuracy, in [0, 1]).
    pub score: f64,
    pub samples: usize,
}

/// What an evaluation measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Evaluation {
    pub dataset: String,
    /// The per-label score's meaning.
    pub score: String,
    pub samples: usize,
    /// Headline metrics in a fixed order, e.g. ("success/tail", 0.4).
    pub metrics: Vec<(String, f64)>,
    pub per_label: Vec<LabelScore>,
    /// Facts about the evaluator itself (e.g. the classifier's accuracy on real digits).
    pub notes: Vec<String>,
    /// The training step of the weights scored, and the steps the run was configured for
    /// (an unfinished run is scored at its latest checkpoint). None for samples scored
    /// without a run.
    #[serde(default)]
    pub trained: Option<Trained>,
}

/// Which weights of a run an evaluation scored.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trained {
    pub step: u32,
    pub of_steps: u32,
}

impl Trained {
    /// The step of `saved` of how many it was configured for; an unfinished run is named on
    /// stderr (`what` says who uses it), so that no command uses one without a word.
    pub fn of(saved: &crate::train::state::Saved, run: &std::path::Path, what: &str) -> Self {
        let t = Self {
            step: saved.state.step,
            of_steps: saved.config.steps,
        };
        if t.step < t.of_steps {
            eprintln!(
                "note: {} is unfinished ({}); {what} uses its latest checkpoint",
                run.display(),
                t.describe()
            );
        }
        t
    }

    /// "step 700 of 1400 (unfinished run: its latest checkpoint)" or "step 1400 of 1400".
    pub fn describe(&self) -> String {
        let unfinished = if self.step < self.of_steps {
            " (unfinished run: its latest checkpoint)"
        } else {
            ""
        };
        format!("step {} of {}{unfinished}", self.step, self.of_steps)
    }
}

impl Evaluation {
    pub fn metric(&self, name: &str) -> Option<f64> {
        metric_of(&self.metrics, name)
    }
}

/// The value of metric `name` in a (name, value) list.
pub fn metric_of(metrics: &[(String, f64)], name: &str) -> Option<f64> {
    metrics.iter().find(|m| m.0 == name).map(|m| m.1)
}

/// How to sample for an evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalOptions {
    /// Samples per label (class data) or per prompt (concepts); 0 = the data set's default
    /// (toy2d 100, shapes 16 per class or 1 per prompt of all 256, digits 50).
    pub per_label: u32,
    /// Sampler steps (DDIM η = 0, or Euler for flow).
    pub steps: u32,
    pub guidance: f32,
    pub seed: u32,
    /// Sample with the EMA weights (else the raw ones).
    pub ema: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            per_label: 0,
            steps: 50,
            guidance: 1.5,
            seed: 1000,
            ema: true,
        }
    }
}

impl EvalOptions {
    /// Refuses counts over their bounds and an absurd guidance, naming the option.
    pub fn validate(&self) -> Result<()> {
        use crate::bounds::{self, at_most};
        at_most("eval-per-label", self.per_label, bounds::MAX_SAMPLES)?;
        if self.steps == 0 {
            return Err(Error::Config("`eval-steps` must be at least 1".into()));
        }
        at_most("eval-steps", self.steps, bounds::MAX_SAMPLER_STEPS)?;
        bounds::guidance("eval-guidance", self.guidance)
    }
}

/// An evaluation with the samples it scored.
pub struct Evaluated {
    pub evaluation: Evaluation,
    /// Samples (n, C, H, W), clamped to [−1, 1].
    pub images: Vec<f32>,
    /// Their label rows (`slots` per sample).
    pub labels: Vec<u32>,
    pub data: Dataset,
}

/// Loads a run's checkpoint, samples and scores it on its data set's oracle.
pub fn evaluate_run(gpu: &Gpu, run: &Path, o: &EvalOptions) -> Result<Evaluated> {
    o.validate()?;
    let (saved, data) = load_run(run)?;
    let params = if o.ema {
        &saved.state.ema
    } else {
        &saved.state.params
    };
    let step = saved.state.step;
    evaluate_params(gpu, &saved, data, params, step, o)
}

/// Evaluates the EMA model a run kept at step `step` (`snapshots = true`) with the run's
/// config and data.
pub fn evaluate_snapshot(gpu: &Gpu, run: &Path, step: u32, o: &EvalOptions) -> Result<Evaluated> {
    o.validate()?;
    let (saved, data) = load_run(run)?;
    let dir = crate::train::RunDir::new(run);
    let path = dir.snapshot(step);
    if !path.exists() {
        let kept = dir.snapshot_steps();
        return Err(Error::Config(format!(
            "{} keeps no snapshot of step {step} (snapshots: {kept:?}); train with \
             --snapshots to keep one per checkpoint",
            run.display()
        )));
    }
    let params = crate::model::checkpoint::load(&path, &saved.model)?;
    evaluate_params(gpu, &saved, data, &params, step, o)
}

/// A run's checkpoint and its training data, once the data are known to be those it was
/// trained on.
pub(crate) fn load_run(run: &Path) -> Result<(crate::train::state::Saved, Dataset)> {
    let saved = crate::train::RunDir::new(run).load()?;
    let (data, _) = setup::load_data(&saved.config)?;
    if data.fingerprint() != saved.fingerprint {
        return Err(Error::Data(format!(
            "the data of {} no longer match its checkpoint (fingerprint {:016x} vs {:016x}): \
             the training data changed since it was trained; restore them, or train again",
            run.display(),
            data.fingerprint(),
            saved.fingerprint
        )));
    }
    Ok((saved, data))
}

/// Samples `params` of a run's model and scores them.
fn evaluate_params(
    gpu: &Gpu,
    saved: &crate::train::state::Saved,
    data: Dataset,
    params: &[f32],
    step: u32,
    o: &EvalOptions,
) -> Result<Evaluated> {
    let sampler = Sampler::deterministic(saved.config.process, o.steps);
    let spec = SampleSpec {
        model: &saved.model,
        params,
        process: saved.config.process,
        sampler,
        guidance: o.guidance,
        seed: o.seed,
        batch: 128,
        delta: None,
    };
    let sample = |labels: &[u32]| -> Result<Vec<f32>> {
        let mut x = generate(gpu, &spec, labels)?;
        x.iter_mut().for_each(|v| *v = v.clamp(-1.0, 1.0));
        Ok(x)
    };
    let labels = eval_labels(&saved.config, &data, o)?;
    let images = sample(&labels)?;
    let evaluation = Evaluation {
        trained: Some(Trained {
            step,
            of_steps: saved.config.steps,
        }),
        ..score(&saved.config, &data, &labels, &images)?
    };
    Ok(Evaluated {
        evaluation,
        images,
        labels,
        data,
    })
}

/// The label rows an evaluation samples: every label (or concept prompt) `o.per_label` times,
/// 0 meaning the data set's default.
pub fn eval_labels(config: &TrainConfig, data: &Dataset, o: &EvalOptions) -> Result<Vec<u32>> {
    let per = |default: u32| {
        if o.per_label == 0 {
            default
        } else {
            o.per_label
        }
    };
    Ok(match config.dataset {
        DatasetKind::Toy2d => class_labels(data, per(100)),
        DatasetKind::Shapes if data.slots == 1 => class_labels(data, per(16)),
        DatasetKind::Shapes => all_prompts(per(1)),
        DatasetKind::Digits | DatasetKind::Idx => class_labels(data, per(50)),
        DatasetKind::Folder => {
            return Err(Error::Config(
                "folder data sets have no oracle to evaluate against; evaluate toy2d, shapes \
                 or digits runs"
                    .into(),
            ))
        }
    })
}

/// Scores samples (n, C, H, W) with their label rows on the oracle of `config`'s data set
/// (`data`: the run's training split, for the frequency buckets).
pub fn score(
    config: &TrainConfig,
    data: &Dataset,
    labels: &[u32],
    images: &[f32],
) -> Result<Evaluation> {
    Ok(match config.dataset {
        DatasetKind::Toy2d => toy2d(data, config, labels, images),
        DatasetKind::Shapes => {
            let det = detector::Detector::for_config(data, config.jitter);
            if data.slots == 1 {
                shapes_classes(data, &det, labels, images)
            } else {
                shapes_concepts(data, &det, labels, images)
            }
        }
        DatasetKind::Digits => digits(data, &setup::digits_held_out(config)?, labels, images),
        DatasetKind::Idx => {
            let path = std::path::Path::new(&config.data_path);
            let test = crate::data::load_idx(path, crate::data::IdxSplit::Test)?;
            idx(data, &test, labels, images)?
        }
        DatasetKind::Folder => {
            return Err(Error::Config(
                "folder data sets have no oracle to evaluate against; use toy2d, shapes or \
                 digits runs"
                    .into(),
            ))
        }
    })
}

/// Every concepts-mode prompt (left shape, left colour, right shape, right colour), each
/// `per` times: 16 × 16 = 256 prompts.
pub fn all_prompts(per: u32) -> Vec<u32> {
    let k = CONCEPTS_PER_SLOT;
    let mut v = Vec::new();
    for s0 in 0..4 {
        for c0 in 0..4 {
            for s1 in 0..4 {
                for c1 in 0..4 {
                    for _ in 0..per {
                        v.extend([s0, 4 + c0, k + s1, k + 4 + c1]);
                    }
                }
            }
        }
    }
    v
}
