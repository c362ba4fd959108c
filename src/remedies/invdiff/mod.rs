//! InvDiff (Hou et al., KDD 2025; docs/design.md#invdiff): bias mitigation without bias labels.
//!
//! 1. Group inference: per-sample diffusion losses l_i of a trained (biased) model, then soft
//!    assignments W ∈ R^{N×G} on the simplex that maximise the spread (standard deviation)
//!    of the group-mean losses L_g = Σ_i W_ig l_i / Σ_i W_ig (Adam, lr 0.01, 500 epochs;
//!    after each step W is clamped at 0 and its rows renormalised).
//! 2. The trained model is frozen; a small δ-DiT, zero-initialised at its output (DiT's own
//!    initialisation zeroes the final layer), is trained on the prediction
//!    r·ε_δ + (1 − r)·ε_frozen, r = 0.8, with loss mean_g L_g + λ·Var_g L_g over the batch's
//!    non-empty soft groups (λ = 1; Var unbiased, as torch.var).
//! 3. Sampling mixes the two predictions the same way (see [`crate::diffusion::generate::Delta`]).
//!
//! The DiT forwards and the δ backward and optimiser run on the GPU; the group arithmetic
//! (B samples × G groups per step) runs on the host between them.

use crate::data::{Dataset, EpochOrder};
use crate::diffusion::generate::{generate, Delta, SampleSpec};
use crate::diffusion::DdpmSchedule;
use crate::diffusion::Process;
use crate::gpu::Gpu;
use crate::model::Optimizer;
use crate::model::{tokens, Activations, Dit, DitConfig, ParamLayout};
use crate::objectives::{draw_timestep, model_timesteps};
use crate::rng::{noise_range, philox4x32_10};
use crate::train::TrainConfig;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Philox stream of InvDiff's timesteps (the trainer uses 1–4).
const STREAM_T: u32 = 5;
/// Noise steps of the per-sample losses' draws, apart from the δ training's step numbers.
const DRAW_STEP: u32 = 0x8000_0000;

/// How the δ-DiT starts; either way its output is exactly 0 at the start.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeltaInit {
    /// A copy of the frozen model with its output layer (`final_layer.linear`) zeroed: the
    /// official code's default (`delta_type = 'pretrain'`, `delta_init0`).
    Copy,
    /// A fresh DiT of this depth (the rest of its shape the base's), DiT's initialisation
    /// (whose output layer is zero): the "small δ-network" of the paper's text.
    Scratch { depth: u32 },
}

/// InvDiff's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Options {
    pub groups: u32,
    pub group_epochs: u32,
    pub group_lr: f64,
    /// (t, ε) draws per training image for its loss l_i.
    pub draws: u32,
    /// Mixing weight r of the δ-model.
    pub r: f32,
    /// λ of the variance term.
    pub var_weight: f64,
    /// How the δ-DiT starts.
    pub delta_init: DeltaInit,
    pub steps: u32,
    pub batch: u32,
    /// Peak learning rate of the δ-model.
    pub lr: f32,
    /// Linear warm-up steps to `lr`, then a cosine decay to 0 at `steps` (when `cosine`).
    #[serde(default)]
    pub warmup: u32,
    #[serde(default)]
    pub cosine: bool,
    pub seed: u32,
}

impl Options {
    /// The published settings (δ a copy of the frozen model, learning rate 1e-4 with a
    /// linear warm-up over the first tenth of the steps and a cosine decay), with the base
    /// run's batch and seed.
    pub fn for_base(base: &TrainConfig) -> Self {
        Self {
            groups: 8,
            group_epochs: 500,
            group_lr: 0.01,
            draws: 4,
            r: 0.8,
            var_weight: 1.0,
            delta_init: DeltaInit::Copy,
            steps: 500,
            batch: base.batch,
            lr: 1e-4,
            warmup: 50,
            cosine: true,
            seed: base.seed,
        }
    }

    /// The δ learning rate of step `s` (from 0): warm-up, then constant or cosine.
    pub fn lr_at(&self, s: u32) -> f32 {
        let warm = if self.warmup == 0 {
            1.0
        } else {
            ((s + 1) as f64 / self.warmup as f64).min(1.0)
        };
        let decay = if self.cosine && s >= self.warmup && self.steps > self.warmup {
            let p = (s - self.warmup) as f64 / (self.steps - self.warmup) as f64;
            0.5 * (1.0 + (std::f64::consts::PI * p).cos())
        } else {
            1.0
        };
        (self.lr as f64 * warm * decay) as f32
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.groups < 2 {
            return bad(format!(
                "InvDiff needs at least 2 groups, got {}",
                self.groups
            ));
        }
        for (name, value) in [("draws", self.draws), ("batch", self.batch)] {
            if value == 0 {
                return bad(format!("`{name}` must be at least 1"));
            }
        }
        if self.delta_init == (DeltaInit::Scratch { depth: 0 }) {
            return bad("`delta_depth` must be at least 1 (leave it out to copy the model)".into());
        }
        // r = 0 would score the frozen model against itself.
        if !(self.r > 0.0 && self.r <= 1.0) {
            return bad(format!("`r` must be in (0, 1], got {}", self.r));
        }
        for (name, lr) in [("lr", self.lr as f64), ("group_lr", self.group_lr)] {
            if !(lr > 0.0 && lr <= crate::bounds::MAX_LR as f64) {
                return bad(format!(
                    "`{name}` must be in (0, {}], got {lr}",
                    crate::bounds::MAX_LR
                ));
            }
        }
        if !(self.var_weight.is_finite() && self.var_weight >= 0.0) {
            return bad(format!(
                "`var_weight` (λ of the variance term) must be a finite number ≥ 0, got {}",
                self.var_weight
            ));
        }
        use crate::bounds::{at_most, MAX_BATCH, MAX_DEPTH, MAX_LABELS, MAX_REPS, MAX_STEPS};
        at_most("groups", self.groups, MAX_LABELS)?;
        at_most("group_epochs", self.group_epochs, MAX_REPS)?;
        at_most("draws", self.draws, MAX_REPS)?;
        at_most("steps", self.steps, MAX_STEPS)?;
        at_most("batch", self.batch, MAX_BATCH)?;
        at_most("warmup", self.warmup, MAX_STEPS)?;
        if let DeltaInit::Scratch { depth } = self.delta_init {
            at_most("delta_depth", depth, MAX_DEPTH)?;
        }
        Ok(())
    }
}

/// Diffusion inputs for images `x0` (b, image) at per-sample times: the model's patches,
/// its time inputs, and the target (images layout).
fn noised(
    process: Process,
    schedule: &DdpmSchedule,
    x0: &[f32],
    t: &[f32],
    eps: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let image = x0.len() / t.len();
    let mut xt = vec![0.0f32; x0.len()];
    let mut target = vec![0.0f32; x0.len()];
    for (i, (&x, &e)) in x0.iter().zip(eps).enumerate() {
        let tb = t[i / image];
        let (a, s) = match process {
            Process::Ddpm => {
                let ab = schedule.alpha_bars[tb as usize];
                (ab.sqrt() as f32, (1.0 - ab).sqrt() as f32)
            }
            Process::Flow => (1.0 - tb, tb),
        };
        xt[i] = a * x + s * e;
        target[i] = match process {
            Process::Ddpm => e,
            Process::Flow => e - x,
        };
    }
    (xt, model_timesteps(process, t), target)
}

/// Sample b's timestep at (seed, step): DDPM 0..T or flow [0, 1).
fn timestep(process: Process, seed: u32, step: u32, b: u32, steps: u32) -> f32 {
    let key = crate::objectives::PhiloxStream {
        seed,
        step,
        stream: STREAM_T,
    };
    draw_timestep(process, steps, key, b)
}

/// Each training image's diffusion loss under a frozen model: the mean over `draws` (t, ε)
/// draws of the MSE against the target, conditioned on its labels.
pub fn per_sample_losses(
    gpu: &Gpu,
    model: &DitConfig,
    params: &[f32],
    process: Process,
    data: &Dataset,
    o: &Options,
) -> Result<Vec<f64>> {
    let schedule = DdpmSchedule::default_linear();
    let dev = &gpu.device;
    let dit = Dit::with_paths(dev, model.clone(), params, gpu.paths)?;
    let image = data.image_len();
    let n = data.len();
    let mut losses = vec![0.0; n];
    let b_max = o.batch as usize;
    let acts = Activations::new(dev, model, b_max as u32, 1)?;
    let patches = gpu.zeros("invdiff_patches", (4 * b_max * image) as u64);
    for d in 0..o.draws {
        let mut start = 0;
        while start < n {
            let b = b_max.min(n - start);
            // A partial last batch reuses the full-size buffers with repeated images: their
            // losses are computed and discarded.
            let idx: Vec<usize> = (0..b_max).map(|j| (start + j).min(n - 1)).collect();
            let x0: Vec<f32> = idx
                .iter()
                .flat_map(|&i| data.image(i).iter().copied())
                .collect();
            let t: Vec<f32> = idx
                .iter()
                .map(|&i| timestep(process, o.seed, DRAW_STEP + d, i as u32, schedule.steps()))
                .collect();
            let eps: Vec<f32> = idx
                .iter()
                .flat_map(|&i| noise_range(o.seed, DRAW_STEP + d, (i * image) as u64, image))
                .collect();
            let (xt, model_t, target) = noised(process, &schedule, &x0, &t, &eps);
            let labels: Vec<u32> = idx
                .iter()
                .flat_map(|&i| data.labels_of(i).iter().copied())
                .collect();
            acts.set_conditions(&gpu.queue, model, &model_t, &labels)?;
            let geometry = model.geometry(b_max as u32);
            gpu.queue.write_buffer(
                &patches,
                0,
                bytemuck::cast_slice(&tokens::patchify(&xt, &geometry)),
            );
            let mut enc = gpu.encoder();
            dit.record_forward(dev, &mut enc, &acts, &patches, None)?;
            gpu.submit(enc);
            let pred = tokens::unpatchify(&gpu.read(&acts.out, b_max * image)?, &geometry);
            for j in 0..b {
                let r = j * image..(j + 1) * image;
                let mse = pred[r.clone()]
                    .iter()
                    .zip(&target[r])
                    .map(|(&p, &y)| ((p - y) as f64).powi(2))
                    .sum::<f64>()
                    / image as f64;
                losses[start + j] += mse / o.draws as f64;
            }
            start += b;
        }
    }
    if let Some(i) = losses.iter().position(|l| !l.is_finite()) {
        return Err(Error::Diverged(format!(
            "the base model's loss on training image {i} is not finite"
        )));
    }
    Ok(losses)
}

mod delta;
mod groups;

pub use delta::{delta_start, sample_mixed, train_delta, Base, Trained};
pub use groups::{group_loss, group_means, group_spread, infer_groups};

/// What `imba invdiff` reports (report.json).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub base: String,
    /// The step of the base run's checkpoint, of how many it was configured for.
    #[serde(default)]
    pub trained: Option<crate::eval::Trained>,
    pub options: Options,
    /// Group inference: the spread (std) of the group-mean losses at the start and the end,
    /// each group's mass Σ_i W_ig and mean loss, and each frequency bucket's mass per group.
    pub spread_start: f64,
    pub spread_end: f64,
    pub group_mass: Vec<f64>,
    pub group_loss: Vec<f64>,
    pub bucket_groups: Vec<(String, Vec<f64>)>,
    /// Mean per-sample loss of the base model per bucket.
    pub bucket_loss: Vec<(String, f64)>,
    pub delta_params: usize,
    pub base_params: usize,
    /// Seconds: per-sample losses, group inference, δ training, evaluation.
    pub seconds: [f64; 4],
    /// The δ training loss at the first and the last step.
    pub loss_first: f64,
    pub loss_last: f64,
    /// The base model alone and mixed with the δ-model, same samples' seeds.
    pub base_evaluation: crate::eval::Evaluation,
    pub evaluation: crate::eval::Evaluation,
}

/// `imba invdiff`: all three stages on a trained run; writes report.json, groups.safetensors
/// (W and l), delta.safetensors (the δ-model's raw and EMA weights) and eval_samples.png.
pub fn run(
    gpu: &Gpu,
    base_run: &std::path::Path,
    o: &Options,
    eval: &crate::eval::EvalOptions,
    out: &std::path::Path,
) -> Result<Report> {
    o.validate()?;
    if o.steps == 0 {
        return Err(Error::Config(
            "`steps` must be at least 1 (0 would compare the model with itself)".into(),
        ));
    }
    let (saved, data) = crate::eval::load_run(base_run)?;
    let base_step = crate::eval::Trained::of(&saved, base_run, "InvDiff");
    if o.groups as usize > data.len() {
        return Err(Error::Config(format!(
            "InvDiff asks for {} groups of the {} training images of {}: at most one group per \
             image; give fewer `--groups`",
            o.groups,
            data.len(),
            base_run.display()
        )));
    }
    eval.validate()?;
    let (bc, bm) = (&saved.config, &saved.model);
    let base_params = &saved.state.ema;
    crate::train::output_folder::check(out, crate::train::OutputKind::InvDiff)?;
    let _lock = crate::train::FolderLock::acquire(out)?;
    let t0 = std::time::Instant::now();
    let losses = per_sample_losses(gpu, bm, base_params, bc.process, &data, o)?;
    let t1 = t0.elapsed().as_secs_f64();
    let g = o.groups as usize;
    let start = infer_groups(&losses, g, 0, o.group_lr, o.seed);
    let w = infer_groups(&losses, g, o.group_epochs, o.group_lr, o.seed);
    let t2 = t0.elapsed().as_secs_f64();
    let base = Base {
        config: bc,
        model: bm,
        params: base_params,
    };
    let trained = train_delta(gpu, &base, &data, &w, o)?;
    let t3 = t0.elapsed().as_secs_f64();
    let labels = crate::eval::eval_labels(bc, &data, eval)?;
    let clamp = |mut x: Vec<f32>| {
        x.iter_mut().for_each(|v| *v = v.clamp(-1.0, 1.0));
        x
    };
    // The frozen model alone is known to sample; a mix that overflows is the δ-model's doing.
    let mixed = sample_mixed(gpu, &base, &trained, o.r, eval, &labels).map_err(|e| match e {
        Error::Diverged(m) => Error::Diverged(format!(
            "{m} with the δ-model mixed in: δ trained at lr {} diverged; lower --lr",
            o.lr
        )),
        e => e,
    })?;
    let mixed = clamp(mixed);
    let plain = clamp(sample_mixed(gpu, &base, &trained, 0.0, eval, &labels)?);
    let evaluation = crate::eval::score(bc, &data, &labels, &mixed)?;
    let base_evaluation = crate::eval::score(bc, &data, &labels, &plain)?;
    let t4 = t0.elapsed().as_secs_f64();
    let (bucket_groups, bucket_loss) = by_bucket(&data, &losses, &w, g);
    let (group_loss, group_mass) = group_means(&losses, &w, g);
    let report = Report {
        base: base_run.display().to_string(),
        trained: Some(base_step),
        options: o.clone(),
        spread_start: group_spread(&losses, &start, g).0,
        spread_end: group_spread(&losses, &w, g).0,
        group_mass,
        group_loss,
        bucket_groups,
        bucket_loss,
        delta_params: trained.params.len(),
        base_params: base_params.len(),
        seconds: [t1, t2 - t1, t3 - t2, t4 - t3],
        loss_first: trained.losses.first().copied().unwrap_or(f64::NAN),
        loss_last: trained.losses.last().copied().unwrap_or(f64::NAN),
        base_evaluation,
        evaluation,
    };
    write_outputs(out, &data, &w, &losses, &trained, &mixed, &labels)?;
    crate::files::write_json(&out.join("report.json"), &report)?;
    Ok(report)
}

/// Values by bucket name.
type Named<T> = Vec<(String, T)>;

/// Who went where: the mass of each group per frequency bucket (by the first label), and
/// the mean loss per bucket.
fn by_bucket(data: &Dataset, losses: &[f64], w: &[f64], g: usize) -> (Named<Vec<f64>>, Named<f64>) {
    let bucket_of = crate::eval::buckets(&data.label_counts());
    let names = crate::eval::BUCKETS;
    let mut groups: Vec<(String, Vec<f64>)> = names
        .iter()
        .map(|n| (n.to_string(), vec![0.0; g]))
        .collect();
    let mut loss: Vec<(String, f64, usize)> =
        names.iter().map(|n| (n.to_string(), 0.0, 0)).collect();
    for i in 0..data.len() {
        let bk = bucket_of[data.labels_of(i)[0] as usize];
        for k in 0..g {
            groups[bk].1[k] += w[i * g + k];
        }
        loss[bk].1 += losses[i];
        loss[bk].2 += 1;
    }
    let loss = loss
        .into_iter()
        .map(|(n, s, c)| (n, if c > 0 { s / c as f64 } else { f64::NAN }))
        .collect();
    (groups, loss)
}

/// groups.safetensors (weights and losses), delta.safetensors (δ's raw and EMA weights),
/// log.jsonl and eval_samples.png.
fn write_outputs(
    out: &std::path::Path,
    data: &Dataset,
    w: &[f64],
    losses: &[f64],
    trained: &Trained,
    mixed: &[f32],
    labels: &[u32],
) -> Result<()> {
    let (g, bm) = (w.len() / data.len(), &trained.model);
    save_tensors(
        &out.join("groups.safetensors"),
        &[
            ("groups", vec![data.len(), g], to_f32(w)),
            ("losses", vec![data.len()], to_f32(losses)),
        ],
    )?;
    save_tensors(
        &out.join("delta.safetensors"),
        &[
            ("params", vec![trained.params.len()], trained.params.clone()),
            ("ema", vec![trained.ema.len()], trained.ema.clone()),
        ],
    )?;
    let log: String = trained
        .losses
        .iter()
        .enumerate()
        .map(|(s, l)| format!("{{\"step\":{},\"loss\":{l}}}\n", s + 1))
        .collect();
    crate::files::write_file(&out.join("log.jsonl"), log)?;
    if crate::report::images::drawable(bm.channels) {
        let cols = (labels.len() / bm.label_slots as usize).min(16) as u32;
        crate::report::images::save_grid(
            &out.join("eval_samples.png"),
            mixed,
            bm.channels,
            bm.height,
            bm.width,
            cols.max(1),
        )?;
    }
    Ok(())
}

fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn save_tensors(path: &std::path::Path, t: &[(&str, Vec<usize>, Vec<f32>)]) -> Result<()> {
    use safetensors::{tensor::TensorView, Dtype};
    let views = t
        .iter()
        .map(|(name, shape, data)| {
            Ok((
                name.to_string(),
                TensorView::new(Dtype::F32, shape.clone(), bytemuck::cast_slice(data))
                    .map_err(|e| Error::Shape(e.to_string()))?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes =
        safetensors::serialize(views, None).map_err(|e| Error::io(path, "cannot serialise", e))?;
    crate::files::write_file(path, bytes)
}
