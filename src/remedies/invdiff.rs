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
use crate::kernels::optim::AdamW;
use crate::kernels::OptimKernels;
use crate::kernels::{AdamWArgs, EmaArgs, GradNormArgs};
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
    pub lr: f32,
    pub seed: u32,
}

impl Options {
    /// The published settings (δ a copy of the frozen model), with the base run's batch
    /// and learning rate.
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
            lr: base.lr,
            seed: base.seed,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.groups < 2 {
            return bad(format!(
                "InvDiff needs at least 2 groups, got {}",
                self.groups
            ));
        }
        if self.draws == 0
            || self.batch == 0
            || self.delta_init == (DeltaInit::Scratch { depth: 0 })
        {
            return bad("draws, batch and the δ depth must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.r) {
            return bad(format!("r must be in [0, 1], got {}", self.r));
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.group_lr > 0.0) {
            return bad("the learning rates must be positive".into());
        }
        if !(self.var_weight.is_finite() && self.var_weight >= 0.0) {
            return bad(format!(
                "the variance weight must be ≥ 0, got {}",
                self.var_weight
            ));
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
    draw_timestep(process, steps, (seed, step, STREAM_T), b)
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
    let dit = Dit::new(dev, model.clone(), params)?;
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
            gpu.submit_and_wait(enc)?;
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

/// The group-mean losses L_g = Σ_i W_ig l_i / Σ_i W_ig and the group masses Σ_i W_ig.
pub fn group_means(losses: &[f64], w: &[f64], g: usize) -> (Vec<f64>, Vec<f64>) {
    let mut num = vec![0.0; g];
    let mut mass = vec![0.0; g];
    for (i, &l) in losses.iter().enumerate() {
        for k in 0..g {
            num[k] += w[i * g + k] * l;
            mass[k] += w[i * g + k];
        }
    }
    let means = (0..g)
        .map(|k| if mass[k] > 0.0 { num[k] / mass[k] } else { 0.0 })
        .collect();
    (means, mass)
}

/// The objective of group inference: the (unbiased) standard deviation of the group-mean
/// losses, and its gradient with respect to W.
pub fn group_spread(losses: &[f64], w: &[f64], g: usize) -> (f64, Vec<f64>) {
    let (means, mass) = group_means(losses, w, g);
    let mean = means.iter().sum::<f64>() / g as f64;
    let var = means.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / (g - 1) as f64;
    let std = var.sqrt();
    let mut grad = vec![0.0; w.len()];
    if std == 0.0 {
        return (0.0, grad);
    }
    // ∂std/∂L_g = (L_g − L̄)/((G − 1)·std); ∂L_g/∂W_ig = (l_i − L_g)/mass_g.
    let dm: Vec<f64> = means
        .iter()
        .map(|m| (m - mean) / ((g - 1) as f64 * std))
        .collect();
    for (i, &l) in losses.iter().enumerate() {
        for k in 0..g {
            if mass[k] > 0.0 {
                grad[i * g + k] = dm[k] * (l - means[k]) / mass[k];
            }
        }
    }
    (std, grad)
}

/// Soft group assignments (N, G) maximising [`group_spread`]: Philox-uniform start, rows
/// normalised; Adam ascent; clamp at 0 and renormalise each row after every step.
pub fn infer_groups(losses: &[f64], g: usize, epochs: u32, lr: f64, seed: u32) -> Vec<f64> {
    let n = losses.len();
    let mut w: Vec<f64> = (0..n * g)
        .map(|k| {
            let u = philox4x32_10([k as u32, 6, 0, 0], [seed, 0])[0];
            1e-3 + (u >> 8) as f64 / (1u32 << 24) as f64
        })
        .collect();
    normalise_rows(&mut w, g);
    let (mut m, mut v) = (vec![0.0; w.len()], vec![0.0; w.len()]);
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
    for e in 1..=epochs as i32 {
        let (_, grad) = group_spread(losses, &w, g);
        for k in 0..w.len() {
            m[k] = b1 * m[k] + (1.0 - b1) * grad[k];
            v[k] = b2 * v[k] + (1.0 - b2) * grad[k] * grad[k];
            let mh = m[k] / (1.0 - b1.powi(e));
            let vh = v[k] / (1.0 - b2.powi(e));
            w[k] = (w[k] + lr * mh / (vh.sqrt() + eps)).max(0.0);
        }
        normalise_rows(&mut w, g);
    }
    w
}

fn normalise_rows(w: &mut [f64], g: usize) {
    for row in w.chunks_mut(g) {
        let s: f64 = row.iter().sum();
        if s > 0.0 {
            row.iter_mut().for_each(|v| *v /= s);
        } else {
            row.iter_mut().for_each(|v| *v = 1.0 / g as f64);
        }
    }
}

/// Groups lighter than this in a batch count as empty.
const EMPTY_GROUP: f64 = 1e-8;

/// The δ training loss of one batch: per-sample losses `l` (B) and their rows of W (B, G) →
/// (mean_g L_g + λ·Var_g L_g over the non-empty groups, ∂loss/∂l_i).
pub fn group_loss(l: &[f64], w: &[f64], g: usize, var_weight: f64) -> (f64, Vec<f64>) {
    let (means, mass) = group_means(l, w, g);
    let live: Vec<usize> = (0..g).filter(|&k| mass[k] > EMPTY_GROUP).collect();
    let k = live.len() as f64;
    let mean = live.iter().map(|&q| means[q]).sum::<f64>() / k;
    let var = if live.len() > 1 {
        live.iter().map(|&q| (means[q] - mean).powi(2)).sum::<f64>() / (k - 1.0)
    } else {
        0.0
    };
    let mut dl_dg = vec![0.0; g];
    for &q in &live {
        dl_dg[q] = 1.0 / k
            + if live.len() > 1 {
                var_weight * 2.0 * (means[q] - mean) / (k - 1.0)
            } else {
                0.0
            };
    }
    let grad = (0..l.len())
        .map(|i| {
            live.iter()
                .map(|&q| dl_dg[q] * w[i * g + q] / mass[q])
                .sum()
        })
        .collect();
    (mean + var_weight * var, grad)
}

/// A trained δ-model with its training log.
pub struct Trained {
    pub model: DitConfig,
    pub params: Vec<f32>,
    pub ema: Vec<f32>,
    /// (step, loss) every step.
    pub losses: Vec<f64>,
    pub seconds: f64,
}

/// The frozen (biased) model: its run's config, its shape and its weights.
#[derive(Clone, Copy)]
pub struct Base<'a> {
    pub config: &'a TrainConfig,
    pub model: &'a DitConfig,
    pub params: &'a [f32],
}

/// Trains the δ-model against the frozen base with the group loss.
pub fn train_delta(
    gpu: &Gpu,
    base: &Base,
    data: &Dataset,
    groups: &[f64],
    o: &Options,
) -> Result<Trained> {
    o.validate()?;
    let start = std::time::Instant::now();
    let (g, b) = (o.groups as usize, o.batch as usize);
    if groups.len() != data.len() * g {
        return Err(Error::Shape(format!(
            "{} group weights for {} images of {g} groups",
            groups.len(),
            data.len()
        )));
    }
    if b > data.len() {
        return Err(Error::Config(format!(
            "the batch {b} is larger than the data set ({} images)",
            data.len()
        )));
    }
    let dev = &gpu.device;
    let (dm, params) = delta_start(base.model, base.params, o)?;
    let frozen = Dit::new(dev, base.model.clone(), base.params)?;
    let delta = Dit::new(dev, dm.clone(), &params)?;
    let frozen_acts = Activations::new(dev, base.model, b as u32, 1)?;
    let acts = Activations::new(dev, &dm, b as u32, 1)?;
    let image = data.image_len();
    let patches = gpu.zeros("invdiff_patches", (4 * b * image) as u64);
    let dout = gpu.zeros("invdiff_dout", (4 * b * image) as u64);
    let opt = DeltaOptimiser::new(gpu, &params)?;
    let geometry = dm.geometry(b as u32);
    let mut order = EpochOrder::new(data.len(), o.seed, 0x4000_0000);
    let mut losses = Vec::with_capacity(o.steps as usize);
    for s in 0..o.steps {
        let idx = order.batch(s, b as u32);
        let (xt, model_t, target, labels) = draw_batch(base.config, &dm, data, &idx, (o.seed, s));
        frozen_acts.set_conditions(&gpu.queue, base.model, &model_t, &labels)?;
        acts.set_conditions(&gpu.queue, &dm, &model_t, &labels)?;
        let tokens_in = tokens::patchify(&xt, &geometry);
        gpu.queue
            .write_buffer(&patches, 0, bytemuck::cast_slice(&tokens_in));
        let mut enc = gpu.encoder();
        frozen.record_forward(dev, &mut enc, &frozen_acts, &patches, None)?;
        delta.record_forward(dev, &mut enc, &acts, &patches, None)?;
        gpu.submit_and_wait(enc)?;
        let eb = tokens::unpatchify(&gpu.read(&frozen_acts.out, b * image)?, &geometry);
        let ed = tokens::unpatchify(&gpu.read(&acts.out, b * image)?, &geometry);
        let w: Vec<f64> = idx
            .iter()
            .flat_map(|&i| groups[i * g..(i + 1) * g].iter().copied())
            .collect();
        let (loss, grad) = mixed_group_loss((&eb, &ed), &target, &w, o);
        let grad_tokens = tokens::output_tokens(&grad, &geometry);
        gpu.queue
            .write_buffer(&dout, 0, bytemuck::cast_slice(&grad_tokens));
        let mut enc = gpu.encoder();
        delta.record_backward(dev, &mut enc, &acts, &patches, &dout, None)?;
        opt.record(dev, &mut enc, &delta, (base.config, o), s)?;
        gpu.submit_and_wait(enc)?;
        if !loss.is_finite() {
            return Err(Error::Diverged(format!(
                "InvDiff step {} gave loss {loss}; lower the learning rate",
                s + 1
            )));
        }
        losses.push(loss);
    }
    Ok(Trained {
        params: gpu.read(&delta.params, params.len())?,
        ema: gpu.read(&opt.ema, params.len())?,
        model: dm,
        losses,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// One δ step's batch on the host: x_t, the model's timesteps, the target and the label
/// rows (dropped to ∅ as the frozen run's training did), from Philox (seed, step).
fn draw_batch(
    base_config: &TrainConfig,
    dm: &DitConfig,
    data: &Dataset,
    idx: &[usize],
    (seed, s): (u32, u32),
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<u32>) {
    let (b, image) = (idx.len(), data.image_len());
    let schedule = DdpmSchedule::default_linear();
    let process = base_config.process;
    let x0: Vec<f32> = idx
        .iter()
        .flat_map(|&i| data.image(i).iter().copied())
        .collect();
    let t: Vec<f32> = (0..b as u32)
        .map(|j| timestep(process, seed, s, j, schedule.steps()))
        .collect();
    let eps = noise_range(seed, s, 0, b * image);
    let (xt, model_t, target) = noised(process, &schedule, &x0, &t, &eps);
    let threshold = crate::kernels::noise::dropout_threshold(base_config.label_dropout);
    let slots = dm.label_slots as usize;
    let mut labels = Vec::with_capacity(b * slots);
    for (j, &i) in idx.iter().enumerate() {
        if crate::rng::dropped(seed, s, j as u32, threshold) {
            labels.push(dm.null_label());
            labels.extend(std::iter::repeat_n(crate::kernels::NO_LABEL, slots - 1));
        } else {
            labels.extend_from_slice(data.labels_of(i));
        }
    }
    (xt, model_t, target, labels)
}

/// The group loss of the mixed prediction r·ε_δ + (1 − r)·ε and its gradient with respect
/// to ε_δ (images layout): ∂loss/∂l_i · 2(pred − target)/image · r.
fn mixed_group_loss(
    (eb, ed): (&[f32], &[f32]),
    target: &[f32],
    w: &[f64],
    o: &Options,
) -> (f64, Vec<f32>) {
    let image = eb.len() / o.batch as usize;
    let r = o.r as f64;
    let diff: Vec<f64> = (0..eb.len())
        .map(|k| r * ed[k] as f64 + (1.0 - r) * eb[k] as f64 - target[k] as f64)
        .collect();
    let l: Vec<f64> = diff
        .chunks(image)
        .map(|c| c.iter().map(|d| d * d).sum::<f64>() / image as f64)
        .collect();
    let (loss, dl) = group_loss(&l, w, o.groups as usize, o.var_weight);
    let grad = diff
        .iter()
        .enumerate()
        .map(|(k, d)| (dl[k / image] * 2.0 * d / image as f64 * r) as f32)
        .collect();
    (loss, grad)
}

/// The δ-model's optimiser: gradient norm and clip, AdamW and EMA, with the frozen run's
/// hyper-parameters and the δ learning rate.
struct DeltaOptimiser {
    optim: OptimKernels,
    m: wgpu::Buffer,
    v: wgpu::Buffer,
    ema: wgpu::Buffer,
    norm: wgpu::Buffer,
}

impl DeltaOptimiser {
    fn new(gpu: &Gpu, params: &[f32]) -> Result<Self> {
        let bytes = 4 * params.len() as u64;
        Ok(Self {
            optim: OptimKernels::new(&gpu.device)?,
            m: gpu.zeros("invdiff_m", bytes),
            v: gpu.zeros("invdiff_v", bytes),
            ema: gpu.upload("invdiff_ema", params),
            norm: gpu.zeros("invdiff_norm", 16),
        })
    }

    fn record(
        &self,
        dev: &wgpu::Device,
        enc: &mut wgpu::CommandEncoder,
        delta: &Dit,
        (base_config, o): (&TrainConfig, &Options),
        s: u32,
    ) -> Result<()> {
        let n = delta.layout.total as u32;
        let grads = (&delta.grads).into();
        let norm = (&self.norm).into();
        let clip = GradNormArgs {
            n,
            grads,
            max_norm: base_config.clip,
            norm,
        };
        self.optim.record_grad_norm(dev, enc, &clip)?;
        let h = AdamW {
            lr: o.lr as f64,
            beta1: base_config.beta1 as f64,
            beta2: base_config.beta2 as f64,
            eps: 1e-8,
            weight_decay: base_config.weight_decay as f64,
        };
        let adam = AdamWArgs {
            n,
            h,
            step: s + 1,
            params: (&delta.params).into(),
            grads,
            m: (&self.m).into(),
            v: (&self.v).into(),
            norm: Some(norm),
        };
        self.optim.record_adamw(dev, enc, &adam)?;
        let decay = base_config.ema.min((1.0 + s as f32) / (10.0 + s as f32));
        let ema = EmaArgs {
            n,
            decay,
            params: (&delta.params).into(),
            ema: (&self.ema).into(),
        };
        self.optim.record_ema(dev, enc, &ema)
    }
}

/// The δ-model's config and starting weights (output exactly 0 either way).
pub fn delta_start(
    base_model: &DitConfig,
    base_params: &[f32],
    o: &Options,
) -> Result<(DitConfig, Vec<f32>)> {
    match o.delta_init {
        DeltaInit::Copy => {
            let layout = ParamLayout::new(base_model);
            if base_params.len() != layout.total {
                return Err(Error::Shape(format!(
                    "{} base parameters for a model of {}",
                    base_params.len(),
                    layout.total
                )));
            }
            let mut p = base_params.to_vec();
            for t in &layout.tensors {
                if t.name.starts_with("final_layer.linear") {
                    p[t.offset..t.offset + t.len()].fill(0.0);
                }
            }
            Ok((base_model.clone(), p))
        }
        DeltaInit::Scratch { depth } => {
            let mut dm = base_model.clone();
            dm.depth = depth;
            let p = ParamLayout::new(&dm).init(o.seed as u64);
            Ok((dm, p))
        }
    }
}

/// Samples with the base and the δ-model mixed with weight `r` (DDIM η = 0 or Euler, CFG).
pub fn sample_mixed(
    gpu: &Gpu,
    base: &Base,
    (delta, r): (&Trained, f32),
    o: &crate::eval::EvalOptions,
    labels: &[u32],
) -> Result<Vec<f32>> {
    let Base {
        config: base_config,
        model: base_model,
        params: base_params,
    } = *base;
    let sampler = match base_config.process {
        Process::Ddpm => crate::diffusion::Sampler::Ddim {
            steps: o.steps,
            eta: 0.0,
        },
        Process::Flow => crate::diffusion::Sampler::Euler { steps: o.steps },
    };
    generate(
        gpu,
        &SampleSpec {
            model: base_model,
            params: base_params,
            process: base_config.process,
            sampler,
            guidance: o.guidance,
            seed: o.seed,
            batch: 128,
            // r = 0 is the frozen model alone: no δ forward.
            delta: (r != 0.0).then_some(Delta {
                model: &delta.model,
                params: if o.ema { &delta.ema } else { &delta.params },
                r,
            }),
        },
        labels,
    )
}

/// What `imba invdiff` reports (report.json).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub base: String,
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
    use crate::train::setup;
    o.validate()?;
    let saved = crate::train::RunDir::new(base_run).load()?;
    let (data, _) = setup::load_data(&saved.config)?;
    if data.fingerprint() != saved.fingerprint {
        return Err(Error::Data(format!(
            "the data of {} no longer match its checkpoint",
            base_run.display()
        )));
    }
    let (bc, bm) = (&saved.config, &saved.model);
    let base_params = &saved.state.ema;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, "cannot create the folder", e))?;
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
    let mixed = clamp(sample_mixed(gpu, &base, (&trained, o.r), eval, &labels)?);
    let plain = clamp(sample_mixed(gpu, &base, (&trained, 0.0), eval, &labels)?);
    let evaluation = crate::eval::score(bc, &data, &labels, &mixed)?;
    let base_evaluation = crate::eval::score(bc, &data, &labels, &plain)?;
    let t4 = t0.elapsed().as_secs_f64();
    let (bucket_groups, bucket_loss) = by_bucket(&data, &losses, &w, g);
    let (group_loss, group_mass) = group_means(&losses, &w, g);
    let report = Report {
        base: base_run.display().to_string(),
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
    write_outputs(out, (&data, &w, &losses), &trained, (&mixed, &labels))?;
    crate::error::write_json(&out.join("report.json"), &report)?;
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
    (data, w, losses): (&Dataset, &[f64], &[f64]),
    trained: &Trained,
    (mixed, labels): (&[f32], &[u32]),
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
    crate::error::write_file(&out.join("log.jsonl"), log)?;
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
    crate::error::write_file(path, bytes)
}
