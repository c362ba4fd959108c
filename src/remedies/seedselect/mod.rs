//! SeedSelect (Samuel et al., AAAI 2024; docs/design.md#seedselect): training-free sampling of a rare
//! concept by optimising the initial noise x_T of a frozen model so that its samples look like
//! a few reference images of the concept.
//!
//! The chain is deterministic (DDIM η = 0, or Euler for flow runs) with classifier-free
//! guidance. Each step is linear in (x, ε̂): x_next = a·x + b·ε̂ and the predicted clean image
//! x̂0 = c·x + d·ε̂, so the backward through the chain needs only the model's
//! vector-Jacobian product at each x_k, which is recomputed (one forward and one backward of
//! the DiT, then dtok·W_embed) instead of storing the activations of all steps.
//!
//! Loss per sample: 10·L_sem + L_app, with L_sem = Σ w_q (1 − cos(f(x̂0_q), f̄)) over the
//! last three steps (w = 0.05, 0.25, 0.7), f the hidden features of an MLP classifier the crate
//! trains on the run's training split (the original uses CLIP), f̄ the centroid of the
//! references' features; L_app = the MSE between the final sample and the mean reference.
//! AdamW on x_T (lr 0.1, divided by 10 after iteration 3, weight decay 0.01 as torch's default).

use crate::data::Dataset;
use crate::diffusion::{DdpmSchedule, SampleStep, Sampler};
use crate::diffusion::{Process, FLOW_TIME_SCALE};
use crate::eval::classifier::{Classifier, HIDDEN};
use crate::gpu::Gpu;
use crate::kernels::NO_LABEL;
use crate::model::{tokens, Activations, Dit, DitConfig};
use crate::rng::noise_range;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Weights of the semantic loss at the last three steps (the last step weighs most).
pub const SEM_WEIGHTS: [f64; 3] = [0.05, 0.25, 0.7];
/// Weight of the semantic loss against the appearance loss.
pub const SEM_SCALE: f64 = 10.0;

/// How to optimise.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Options {
    /// Seeds (samples) to optimise.
    pub samples: u32,
    /// Sampler steps (≥ 3: the semantic loss reads the last three).
    pub steps: u32,
    /// AdamW iterations.
    pub iters: u32,
    pub lr: f32,
    /// Iterations at `lr`; later ones use lr/10.
    pub lr_drop_after: u32,
    pub weight_decay: f32,
    pub guidance: f32,
    /// Noise seed: sample j starts from the same x_T as `imba sample` / `generate` with this
    /// seed, so iteration 0 is plain sampling.
    pub seed: u32,
    /// Samples optimised together (one model evaluation covers them).
    pub batch: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            samples: 16,
            steps: 20,
            iters: 30,
            lr: 0.1,
            lr_drop_after: 3,
            weight_decay: 0.01,
            guidance: 1.5,
            seed: 0,
            batch: 16,
        }
    }
}

impl Options {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        for (name, value) in [("samples", self.samples), ("batch", self.batch)] {
            if value == 0 {
                return bad(format!("`{name}` must be at least 1"));
            }
        }
        if self.steps < 3 {
            return bad(format!(
                "`steps` must be at least 3 for seedselect (the semantic loss reads the last \
                 three sampler steps), got {}",
                self.steps
            ));
        }
        if !(self.lr > 0.0 && self.lr <= crate::bounds::MAX_LR) {
            return bad(format!(
                "`lr` must be in (0, {}], got {}",
                crate::bounds::MAX_LR,
                self.lr
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "`weight_decay` must be ≥ 0, got {}",
                self.weight_decay
            ));
        }
        crate::bounds::guidance("guidance", self.guidance)?;
        use crate::bounds::{at_most, MAX_BATCH, MAX_REPS, MAX_SAMPLER_STEPS, MAX_SAMPLES};
        at_most("samples", self.samples, MAX_SAMPLES)?;
        at_most("batch", self.batch, MAX_BATCH)?;
        at_most("steps", self.steps, MAX_SAMPLER_STEPS)?;
        at_most("iters", self.iters, MAX_REPS)?;
        at_most("lr_drop_after", self.lr_drop_after, MAX_REPS)?;
        Ok(())
    }
}

mod chain;
mod loss;

pub use chain::{step_coef, Chain, StepCoef, Trajectory};
use loss::ENCODER_EPOCHS;
pub use loss::{batch_loss, optimise, train_encoder, Grads, Optimised, Target};

/// What `imba seedselect` reports (report.json).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub run: String,
    /// The step of the run's checkpoint, of how many it was configured for.
    #[serde(default)]
    pub trained: Option<crate::eval::Trained>,
    /// The label row, by name.
    pub label: String,
    /// Training images with exactly this label row, and how many served as references.
    pub available: usize,
    pub references: usize,
    /// The encoder and its accuracy on the training split (its own training data).
    pub encoder: String,
    pub encoder_seconds: f64,
    pub options: Options,
    pub sem_weight: f64,
    pub app_weight: f64,
    /// The oracle's success rate of the plain samples (same seeds, no optimisation) and of the
    /// optimised ones; for concept rows, the share with all concepts shown.
    pub plain_success: f64,
    pub selected_success: f64,
    /// The oracle's score name.
    pub score: String,
    /// Mean pairwise distance between the samples, plain and optimised: the appearance loss
    /// pulls every seed towards the mean reference, so success can come at diversity's cost.
    pub plain_diversity: f64,
    pub selected_diversity: f64,
    /// The near-copy check: mean over samples of the distance to the nearest reference,
    /// plain and optimised, beside the mean distance of each reference to its nearest other
    /// reference (the spread of the references themselves; NaN with one reference). Samples
    /// much nearer the references than the references are to each other are copies.
    #[serde(default)]
    pub plain_nearest_reference: f64,
    #[serde(default)]
    pub selected_nearest_reference: f64,
    #[serde(default)]
    pub reference_spacing: f64,
    /// Mean loss per sample before each iteration, then after the last.
    pub losses: Vec<f64>,
    pub seconds: f64,
    pub seconds_per_seed: f64,
    /// DiT forwards and backwards each seed goes through: per iteration, the chain's `steps`
    /// forwards and the backward's `steps` recomputed forwards and backwards; then the final
    /// chain. Each covers 2 rows per seed when guided (conditioned and ∅).
    pub forwards_per_seed: u32,
    pub backwards_per_seed: u32,
    pub rows_per_seed: u32,
}

/// What SeedSelect is asked for: the rare label and its references, the weights used, the
/// loss's weights.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    /// A label or concept list, by name or number (concepts joined by '+').
    pub label: &'a str,
    /// References: up to this many training images with exactly this label row.
    pub refs: u32,
    /// The EMA weights (else the raw ones).
    pub ema: bool,
    /// (semantic, appearance) loss weights; (10, 1) as published.
    pub weights: (f64, f64),
}

/// `imba seedselect`: optimises `o.samples` seeds of `run` for `req.label` against up to
/// `req.refs` training images of that label row; writes plain/ and selected/ samples and
/// report.json into `out`.
pub fn run(
    gpu: &Gpu,
    run: &std::path::Path,
    req: &Request,
    o: &Options,
    out: &std::path::Path,
) -> Result<Report> {
    let Request {
        label,
        refs,
        ema,
        weights,
    } = *req;
    o.validate()?;
    if refs == 0 {
        return Err(Error::Config("--refs must be at least 1".into()));
    }
    check_weights(weights.0, weights.1)?;
    let (saved, data) = crate::eval::load_run(run)?;
    let trained = crate::eval::Trained::of(&saved, run, "SeedSelect");
    let m = &saved.model;
    let row = crate::diffusion::generate::parse_label_row(label, &saved.label_names, m)?;
    let (matching, ref_images) = references(&data, &row, refs, run, label)?;
    // The output folder is made only once every input has been accepted.
    crate::train::output_folder::check(out, crate::train::OutputKind::SeedSelect)?;
    let _lock = crate::train::FolderLock::acquire(out)?;
    let used = ref_images.len() / data.image_len();
    let t0 = std::time::Instant::now();
    let (encoder, rows, classes) = train_encoder(&data, ENCODER_EPOCHS, saved.config.seed);
    let acc = encoder.accuracy(&data.images, &classes);
    let encoder_seconds = t0.elapsed().as_secs_f64();
    let (sem_weight, app_weight) = weights;
    let target = Target {
        sem_weight,
        app_weight,
        ..Target::new(encoder, &ref_images)
    };
    let params = if ema {
        &saved.state.ema
    } else {
        &saved.state.params
    };
    let r = optimise(gpu, m, params, saved.config.process, &row, &target, o)?;
    let n = o.samples as usize;
    let labels: Vec<u32> = (0..n).flat_map(|_| row.iter().copied()).collect();
    let clamp = |x: &[f32]| -> Vec<f32> { x.iter().map(|v| v.clamp(-1.0, 1.0)).collect() };
    let success = |x: &[f32]| -> Result<(f64, String)> {
        let e = crate::eval::score(&saved.config, &data, &labels, &clamp(x))?;
        let s = if m.label_slots == 1 {
            e.per_label[row[0] as usize].score
        } else {
            e.metric("prompt/all").unwrap_or(f64::NAN)
        };
        Ok((s, e.score))
    };
    let image = (m.channels * m.height * m.width) as usize;
    let diversity = |x: &[f32]| {
        let c = clamp(x);
        crate::eval::mean_pairwise(&c.chunks(image).collect::<Vec<_>>())
    };
    let (plain_success, score) = success(&r.plain)?;
    let (selected_success, _) = success(&r.selected)?;
    for (dir, x) in [("plain", &r.plain), ("selected", &r.selected)] {
        save(&saved, &out.join(dir), &clamp(x), &labels)?;
    }
    let guided = if o.guidance == 1.0 { 1 } else { 2 };
    let report = Report {
        run: run.display().to_string(),
        trained: Some(trained),
        label: label.to_string(),
        available: matching,
        references: used,
        encoder: format!(
            "MLP {}-{HIDDEN}-{} (ReLU features) trained on the run's training split, one class \
             per distinct label row; accuracy {:.1}% on that split",
            m.channels * m.height * m.width,
            rows.len().max(2),
            100.0 * acc
        ),
        encoder_seconds,
        options: o.clone(),
        sem_weight,
        app_weight,
        plain_success,
        selected_success,
        score,
        plain_diversity: diversity(&r.plain),
        selected_diversity: diversity(&r.selected),
        plain_nearest_reference: nearest_mean(&clamp(&r.plain), &ref_images, image, false),
        selected_nearest_reference: nearest_mean(&clamp(&r.selected), &ref_images, image, false),
        reference_spacing: nearest_mean(&ref_images, &ref_images, image, true),
        losses: r.losses,
        seconds: r.seconds,
        seconds_per_seed: r.seconds / n as f64,
        forwards_per_seed: 2 * o.steps * o.iters + o.steps,
        backwards_per_seed: o.steps * o.iters,
        rows_per_seed: guided,
    };
    crate::files::write_json(&out.join("report.json"), &report)?;
    Ok(report)
}

/// The two loss weights: finite, ≥ 0, not both 0 (checked before any work is done).
fn check_weights(sem_weight: f64, app_weight: f64) -> Result<()> {
    for (name, w) in [("sem_weight", sem_weight), ("app_weight", app_weight)] {
        if !(w >= 0.0 && w.is_finite()) {
            return Err(Error::Config(format!(
                "`{name}` must be a finite number ≥ 0, got {w}"
            )));
        }
    }
    if sem_weight + app_weight == 0.0 {
        return Err(Error::Config(
            "`sem_weight` and `app_weight` are both 0: give one of them a positive weight".into(),
        ));
    }
    Ok(())
}

/// Mean over the images of `x` of the Euclidean distance to the nearest image of `refs`
/// (`skip_same`: not to itself, when `x` is `refs`); NaN when there is nothing to compare.
pub fn nearest_mean(x: &[f32], refs: &[f32], image: usize, skip_same: bool) -> f64 {
    let d = |a: &[f32], b: &[f32]| -> f64 {
        a.iter()
            .zip(b)
            .map(|(p, q)| ((p - q) as f64).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let nearest: Vec<f64> = x
        .chunks(image)
        .enumerate()
        .filter_map(|(i, a)| {
            refs.chunks(image)
                .enumerate()
                .filter(|(j, _)| !(skip_same && *j == i))
                .map(|(_, b)| d(a, b))
                .min_by(f64::total_cmp)
        })
        .collect();
    crate::stats::mean_std(&nearest).0
}

/// The training images whose label row is `row`: how many there are, and the first `refs`
/// of them (flat images), the references.
fn references(
    data: &crate::data::Dataset,
    row: &[u32],
    refs: u32,
    run: &std::path::Path,
    label: &str,
) -> Result<(usize, Vec<f32>)> {
    let matching: Vec<usize> = (0..data.len())
        .filter(|&i| data.labels_of(i) == row)
        .collect();
    if matching.is_empty() {
        return Err(Error::Data(format!(
            "no training image of {} has the label row `{label}`; SeedSelect needs a few \
             reference images of the concept",
            run.display()
        )));
    }
    let used = &matching[..matching.len().min(refs as usize)];
    let images = used
        .iter()
        .flat_map(|&i| data.image(i).iter().copied())
        .collect();
    Ok((matching.len(), images))
}

/// A sample set of the run's model (a grid, one PNG each, the tensors; toy2d: a scatter).
fn save(
    saved: &crate::train::state::Saved,
    dir: &std::path::Path,
    x: &[f32],
    labels: &[u32],
) -> Result<()> {
    let c = &saved.config;
    let centres = if c.dataset == crate::train::DatasetKind::Toy2d {
        crate::data::toy2d_means(c.classes, crate::data::Toy2dSpec::default().radius)
    } else {
        Vec::new()
    };
    let n = labels.len() / saved.model.label_slots as usize;
    let cols = (n as f64).sqrt().ceil() as u32;
    let names = &saved.label_names;
    crate::report::save_samples(dir, &saved.model, x, labels, names, cols, &centres)?;
    Ok(())
}
