//! One training step on the GPU, as data flows (docs/design.md#a-training-step): the batch and its timesteps are
//! chosen on the host from Philox (seed, step), the noise kernel writes x_t as tokens, the
//! DiT runs one pass (baseline) or the dual pass (IMBA, dual baseline), the loss kernel
//! regenerates ε and writes the gradients, then backward, gradient norm and clip, AdamW and
//! EMA, all in one submission; only the loss scalars and the norm are read back.
//!
//! Every random choice is a function of (seed, step), so a run resumed from a checkpoint
//! (parameters, EMA, moments, step) continues with exactly the bits it would have had.

use super::config::CbdmPrior;
use super::{Objective, Process, TrainConfig};
use crate::data::{Dataset, EpochOrder};
use crate::diffusion::DdpmSchedule;
use crate::gpu::Gpu;
use crate::kernels::ShardSum;

use crate::kernels::{LossKernels, NoiseArgs, NoiseKernels, Schedule, Target, TargetKind};
use crate::model::{Activations, Dit, DitConfig, ParamLayout};
use crate::model::{Optimizer, OptimizerState};
use crate::objectives::{self, StepInputs};
use crate::parallel::{Collective, Shard, Single};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Philox stream of the per-sample timesteps (0 is the noise, 1 the label dropout).
const STREAM_TIMESTEP: u32 = 2;

/// What one step measured.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct StepStats {
    /// The step just done, counting from 1.
    pub step: u32,
    pub loss: f32,
    /// L_c (baseline: the loss; CBDM, CCUA: the diffusion MSE of the conditional pass).
    pub loss_c: f32,
    /// L_u (baseline: 0; CBDM, CCUA: the regulariser, 0 on CBDM's unconditional steps).
    pub loss_u: f32,
    /// Mean D over the batch's tokens (baseline, CBDM, CCUA: 1).
    pub mean_d: f32,
    /// The unweighted MSE of the conditional prediction, over the samples that kept their
    /// labels: the one loss every objective can be compared on (None where no sample kept
    /// its labels, as on CBDM's unconditional steps; absent in logs of earlier versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mse_c: Option<f32>,
    pub lr: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    /// Wall time of the step, ms.
    pub ms: f64,
    /// Of `ms`, the time spent exchanging with the other ranks (data-parallel runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_ms: Option<f64>,
}

/// The host-side state a checkpoint restores.
pub struct State {
    pub step: u32,
    pub params: Vec<f32>,
    pub ema: Vec<f32>,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    /// What the objective carries between steps (the t-bucket normalisation's running
    /// means); empty for stateless objectives.
    pub objective: Vec<f32>,
    /// The loss of the step that led to this state (None before the first step): what ties
    /// a checkpoint to its own run's step log.
    pub last_loss: Option<f32>,
}

/// A model, its optimiser state and its data, on one device.
pub struct Trainer<'g> {
    gpu: &'g Gpu,
    pub config: TrainConfig,
    pub model: DitConfig,
    pub data: Dataset,
    pub dit: Dit,
    acts: Activations,
    loss: LossKernels,
    objective: Box<dyn objectives::Objective>,
    optim: Optimizer,
    noise: NoiseKernels,
    stats: wgpu::Buffer,
    x0: wgpu::Buffer,
    t_noise: wgpu::Buffer,
    patches: wgpu::Buffer,
    table: wgpu::Buffer,
    schedule: DdpmSchedule,
    /// Steps done.
    pub step: u32,
    order: EpochOrder,
    /// [`Dataset::fingerprint`] of `data`, stored in checkpoints.
    pub fingerprint: u64,
    /// The last step's batch (indices into `data`) and, for IMBA, its D per (sample, token),
    /// read back with the loss: what the D monitor attributes to concepts.
    pub last_batch: Vec<usize>,
    pub last_d: Vec<f32>,
    /// The loss of the last step (checkpoints record it; see [`State::last_loss`]).
    last_loss: Option<f32>,
    /// The last step's mean unweighted squared error of the conditional prediction per
    /// sample, its time fraction per sample, and whether each sample kept its labels.
    pub last_mse: Vec<f32>,
    pub last_time: Vec<f32>,
    pub last_conditional: Vec<bool>,
    /// Per-token MSE of the conditional rows, for the monitors.
    token_mse: wgpu::Buffer,
    mse_workspace: crate::kernels::LossWorkspace,
    /// The ranks sharing each batch, and this process's part of it.
    comm: &'g dyn Collective,
    pub shard: Shard,
    /// Whether another rank asked the job to stop at the last step.
    pub peer_stop: bool,
    /// The exchanges' read-back buffer (data-parallel runs only).
    exchange: Option<wgpu::Buffer>,
}

/// The first values of a step's read-back, where the step's copies put them; the
/// conditional pass's per-token MSE and the monitored D follow.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct StepHeader {
    /// The objective's scalars: loss, conditional loss, unconditional loss, mean D (means
    /// over this rank's shard).
    scalars: [f32; 4],
    /// The optimiser's norm buffer: Σg², ‖g‖ and the clip scale.
    sum_sq: f32,
    grad_norm: f32,
    clip_scale: f32,
    /// Set on the host before a data-parallel gather: whether this rank was asked to stop.
    stop: f32,
}

/// Values of [`StepHeader`] at the start of the read-back.
const HEADER: usize = std::mem::size_of::<StepHeader>() / 4;

impl StepHeader {
    /// The header at the start of a read-back.
    fn of(read: &[f32]) -> Self {
        bytemuck::pod_read_unaligned(bytemuck::cast_slice(&read[..HEADER]))
    }
}

/// A step's read-back over the whole batch: the loss scalars, the gradient norm, the
/// per-token MSE and (IMBA) D.
struct Gathered {
    scalars: [f32; 4],
    grad_norm: f32,
    per_token: Vec<f32>,
    d: Vec<f32>,
    /// Whether any rank asked to stop.
    peer_stop: bool,
}

/// The exchange of a step over the ranks: device values read back, added up in rank order,
/// written back; the time it took adds to `ms`.
struct DeviceSum<'a> {
    gpu: &'a Gpu,
    comm: &'a dyn Collective,
    /// Host-readable, as large as the largest exchange (the gradient), kept across steps.
    staging: &'a wgpu::Buffer,
    ms: f64,
}

impl DeviceSum<'_> {
    /// Submits what `encoder` holds, replaces `values[..count]` by its sum over the ranks
    /// times `scale`, and continues in a fresh encoder.
    fn reduce(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        values: &wgpu::Buffer,
        count: usize,
        scale: f32,
    ) -> Result<()> {
        let staging = self.staging;
        let mut recorded = std::mem::replace(encoder, self.gpu.encoder());
        recorded.copy_buffer_to_buffer(values, 0, staging, 0, 4 * count as u64);
        self.gpu.queue.submit(Some(recorded.finish()));
        // The device's work is not the exchange's: wait for it before the clock starts.
        self.gpu.wait()?;
        let start = Instant::now();
        let mut v: Vec<f32> = self.gpu.read_staging(staging, count)?;
        self.comm.sum(&mut v)?;
        if scale != 1.0 {
            v.iter_mut().for_each(|x| *x *= scale);
        }
        self.gpu
            .queue
            .write_buffer(values, 0, bytemuck::cast_slice(&v));
        self.ms += start.elapsed().as_secs_f64() * 1e3;
        Ok(())
    }

    /// The step's read-back ([`StepHeader`], per-token MSE, D) of every rank: the scalars
    /// averaged in rank order (each rank's is a mean over as many samples), the per-token
    /// values concatenated in sample order; with this rank's stop request shared, so that
    /// every rank stops after the same step.
    fn gather(&mut self, mut read: Vec<f32>, tokens: usize) -> Result<Gathered> {
        let started = Instant::now();
        let mut header = StepHeader::of(&read);
        header.stop = f32::from(super::stop::requested().is_some());
        read[..HEADER].copy_from_slice(bytemuck::cast_slice(bytemuck::bytes_of(&header)));
        let all = self.comm.all_gather(&read)?;
        let parts: Vec<&[f32]> = all.chunks(read.len()).collect();
        let headers: Vec<StepHeader> = parts.iter().map(|p| StepHeader::of(p)).collect();
        let total = crate::parallel::sum_in_order(headers.iter().map(|h| &h.scalars[..]));
        let ranks = parts.len() as f32;
        let values = |range: std::ops::Range<usize>| {
            parts
                .iter()
                .flat_map(|p| &p[range.clone()])
                .copied()
                .collect()
        };
        let gathered = Gathered {
            scalars: std::array::from_fn(|i| total[i] / ranks),
            grad_norm: header.grad_norm,
            per_token: values(HEADER..HEADER + tokens),
            d: values(HEADER + tokens..read.len()),
            peer_stop: headers.iter().any(|h| h.stop != 0.0),
        };
        self.ms += started.elapsed().as_secs_f64() * 1e3;
        Ok(gathered)
    }
}

impl Gathered {
    /// One process's read-back, as it is.
    fn single(mut read: Vec<f32>, tokens: usize) -> Self {
        let header = StepHeader::of(&read);
        let d = read.split_off(HEADER + tokens);
        let per_token = read.split_off(HEADER);
        Gathered {
            scalars: header.scalars,
            grad_norm: header.grad_norm,
            per_token,
            d,
            peer_stop: false,
        }
    }
}

impl ShardSum for DeviceSum<'_> {
    fn sum(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        values: &wgpu::Buffer,
        count: usize,
    ) -> Result<()> {
        self.reduce(encoder, values, count, 1.0)
    }
}

impl<'g> Trainer<'g> {
    /// A fresh model (DiT initialisation from `config.seed`) or one restored from `state`.
    pub fn new(
        gpu: &'g Gpu,
        config: TrainConfig,
        model: DitConfig,
        data: Dataset,
        state: Option<State>,
    ) -> Result<Self> {
        static SINGLE: Single = Single;
        Self::new_parallel(gpu, &SINGLE, config, model, data, state)
    }

    /// [`Self::new`] as one rank of a data-parallel job: this process trains on its shard of
    /// every batch of `config.batch` samples; every rank must be given the same config, data
    /// and state.
    pub fn new_parallel(
        gpu: &'g Gpu,
        comm: &'g dyn Collective,
        config: TrainConfig,
        model: DitConfig,
        data: Dataset,
        state: Option<State>,
    ) -> Result<Self> {
        config.validate()?;
        let shard = Shard::new(config.batch, comm.rank() as u32, comm.size() as u32)?;
        if shard.ranks > 1 {
            check_parallel(&config, &model, shard)?;
        }
        if (config.batch as usize) > data.len() {
            return Err(Error::Config(format!(
                "`batch` {} is larger than the data set ({} images after the split); lower \
                 the batch or raise `head_count`",
                config.batch,
                data.len()
            )));
        }
        if data.channels != model.channels
            || data.height != model.height
            || data.width != model.width
            || data.slots != model.label_slots
            || data.num_labels() != model.num_labels
        {
            return Err(Error::Config(
                "the model's image shape or labels do not match the data set".into(),
            ));
        }
        let dev = &gpu.device;
        let layout = ParamLayout::new(&model);
        let limit = dev.limits().max_storage_buffer_binding_size;
        if layout.total as u64 * 4 > limit {
            return Err(Error::Limit(format!(
                "the model has {} parameters ({} bytes), over this device's {limit}-byte storage \
                 binding; use a smaller model",
                layout.total,
                layout.total * 4
            )));
        }
        check_memory(gpu, &model, &config, shard.len)?;
        let state = match state {
            Some(s) => s,
            None => {
                let params = layout.init(config.seed as u64);
                State {
                    step: 0,
                    ema: params.clone(),
                    m: vec![0.0; layout.total],
                    v: vec![0.0; layout.total],
                    params,
                    objective: Vec::new(),
                    last_loss: None,
                }
            }
        };
        for (name, v) in [("ema", &state.ema), ("m", &state.m), ("v", &state.v)] {
            if v.len() != layout.total {
                return Err(Error::Shape(format!(
                    "optimiser state `{name}` has {} values for a model of {}",
                    v.len(),
                    layout.total
                )));
            }
        }
        let dit = Dit::with_paths(dev, model.clone(), &state.params, gpu.paths)?;
        let b = shard.len;
        let acts = Activations::new(dev, &model, b, config.objective.repeats())?;
        let loss = LossKernels::new(dev)?;
        let e = b as u64 * model.tokens() as u64 * model.token_dim() as u64;
        let token_shape = crate::kernels::TokenShape::new(b, model.tokens(), model.token_dim());
        let tokens = token_shape.rows();
        let mse_workspace = loss.workspace(dev, token_shape)?;
        let mut objective = build_objective(dev, &loss, &config, b, &model, &data)?;
        restore_objective_state(gpu, objective.as_mut(), &state)?;
        let schedule = DdpmSchedule::default_linear();
        let table = gpu.upload("ddpm_table", &schedule.coefficients());
        Ok(Self {
            gpu,
            acts,
            loss,
            objective,
            optim: Optimizer::new(gpu, config.optimizer_settings(), optimizer_state(&state))?,
            noise: NoiseKernels::new(dev)?,
            stats: gpu.staging(
                "step_stats",
                4 * (HEADER as u64 + tokens + Self::monitored(&config, &model, b)),
            ),
            exchange: (shard.ranks > 1).then(|| {
                let largest = layout
                    .total
                    .max(2 * crate::kernels::MAX_TIME_BUCKETS as usize);
                gpu.staging("exchange", 4 * largest as u64)
            }),
            comm,
            shard,
            peer_stop: false,
            token_mse: gpu.zeros("token_mse", 4 * tokens),
            mse_workspace,
            last_mse: Vec::new(),
            last_time: Vec::new(),
            last_conditional: Vec::new(),
            x0: gpu.zeros("x0", 4 * b as u64 * data.image_len() as u64),
            t_noise: gpu.zeros("t_noise", 4 * b as u64),
            patches: gpu.zeros("patches", 4 * e),
            table,
            schedule,
            step: state.step,
            order: EpochOrder::new(data.len(), config.seed, 0x8000_0000),
            fingerprint: data.fingerprint(),
            last_batch: Vec::new(),
            last_d: Vec::new(),
            last_loss: state.last_loss,
            dit,
            config,
            model,
            data,
        })
    }

    /// How many D values a step reads back: B·N for IMBA (the D monitor; B the shard's
    /// samples) and for the host weight rules that learn from D, else none.
    fn monitored(config: &TrainConfig, model: &DitConfig, batch: u32) -> u64 {
        let by_d = config.objective == Objective::Reweighted
            && config.weight_rule != crate::objectives::WeightRule::InverseFrequency;
        if config.objective == Objective::Imba || by_d {
            batch as u64 * model.tokens() as u64
        } else {
            0
        }
    }

    /// The images of step `s`'s batch: positions s·B .. s·B+B of an endless sequence of
    /// epochs, each a Philox shuffle of the data set keyed by (seed, epoch).
    pub fn batch_indices(&mut self, s: u32) -> Vec<usize> {
        self.order.batch(s, self.config.batch)
    }

    /// Step `s`'s timesteps: DDPM integers in 0..T, or flow times in [0, 1).
    pub fn timesteps(&self, s: u32) -> Vec<f32> {
        let c = &self.config;
        let key = objectives::PhiloxStream {
            seed: c.seed,
            step: s,
            stream: STREAM_TIMESTEP,
        };
        objectives::draw_timesteps(c.process, self.schedule.steps(), key, c.batch)
    }

    /// The label rows of step `s`: B rows, then B more for the dual forwards.
    /// - the first half: the batch's labels, each dropped to ∅ with probability
    ///   `label_dropout` (Philox stream 1, counter b) where the objective drops labels
    ///   (baseline, CCUA), all ∅ on CBDM's whole-batch unconditional steps;
    /// - the second half: the objective's (∅ rows; CBDM's extra labels y').
    pub fn label_rows(&self, s: u32, idx: &[usize]) -> Vec<u32> {
        self.label_rows_given(s, idx, self.whole_batch_unconditional(s))
    }

    /// Whether step `s` trains the whole batch unconditionally (CBDM, probability
    /// `cbdm_uncond`; never for the other objectives).
    pub fn whole_batch_unconditional(&self, s: u32) -> bool {
        self.objective.whole_batch_unconditional(s)
    }

    /// [`Self::label_rows`] with the step's unconditional draw already made.
    fn label_rows_given(&self, s: u32, idx: &[usize], unconditional: bool) -> Vec<u32> {
        let null_row =
            objectives::null_row(self.model.null_label(), self.model.label_slots as usize);
        let threshold = crate::kernels::noise::dropout_threshold(self.config.label_dropout);
        let drops = self.objective.drops_labels();
        let seed = self.config.seed;
        let dropped = |b| unconditional || (drops && crate::rng::dropped(seed, s, b, threshold));
        let batch = idx.iter().map(|&i| self.data.labels_of(i));
        let mut rows = objectives::labels_or_null(batch, &null_row, dropped);
        rows.extend(self.objective.second_half(s, idx.len() as u32, &null_row));
        rows
    }

    /// Step `s`'s inputs: the batch, its timesteps and label rows.
    fn inputs(&mut self, s: u32) -> StepInputs {
        let indices = self.batch_indices(s);
        let timesteps = self.timesteps(s);
        let process = self.config.process;
        // Drawn once: it sets the label rows and whether the regulariser runs.
        let unconditional = self.whole_batch_unconditional(s);
        StepInputs {
            step: s,
            labels: self.label_rows_given(s, &indices, unconditional),
            time_fractions: objectives::time_fractions(process, self.schedule.steps(), &timesteps),
            indices,
            timesteps,
            unconditional,
        }
    }

    /// The learning rate of step `s` (from 0): linear warm-up, then constant.
    pub fn lr_at(&self, s: u32) -> f32 {
        let w = self.config.warmup;
        if w == 0 {
            self.config.lr
        } else {
            self.config.lr * ((s + 1) as f32 / w as f32).min(1.0)
        }
    }

    /// The EMA decay of step `s` (from 0): see [`Optimizer::ema_decay_at`].
    pub fn ema_decay_at(&self, s: u32) -> f32 {
        self.optim.ema_decay_at(s)
    }

    /// Runs one step. A non-finite loss or gradient norm is an error naming the step (the
    /// parameters are then spoilt: reload a checkpoint). In a data-parallel job every rank
    /// calls it together: the gradients are averaged over the ranks before the optimiser,
    /// and the step's scalars and per-sample values are gathered from every rank, so the
    /// returned stats and the `last_*` monitors describe the whole batch on every rank.
    pub fn step(&mut self) -> Result<StepStats> {
        let start = Instant::now();
        let s = self.step;
        let inputs = self.inputs(s);
        let shard = (self.shard.ranks > 1).then(|| self.shard_of(&inputs));
        let local = shard.as_ref().unwrap_or(&inputs);
        self.upload(local)?;
        let mut enc = self.gpu.encoder();
        // Data-parallel only: the exchanges with the other ranks.
        let (gpu, comm) = (self.gpu, self.comm);
        let mut across = self.exchange.as_ref().map(|staging| DeviceSum {
            gpu,
            comm,
            staging,
            ms: 0.0,
        });
        self.record_model(&mut enc, local, across.as_mut())?;
        if let Some(across) = across.as_mut() {
            // The mean of the ranks' gradients (each a mean over its shard) is the whole
            // batch's: clipping and AdamW then see the same values on every rank.
            let grads = (self.dit.layout.total, 1.0 / self.shard.ranks as f32);
            across.reduce(&mut enc, &self.dit.grads, grads.0, grads.1)?;
        }
        let lr = self.record_optimiser(&mut enc, s)?;
        // The loss scalars, the norm and D go straight into a mappable buffer: one
        // submission, one wait per step (one more per exchange in a data-parallel job).
        let stats = &self.stats;
        let (scalars, norm) = (
            std::mem::offset_of!(StepHeader, scalars) as u64,
            std::mem::offset_of!(StepHeader, sum_sq) as u64,
        );
        enc.copy_buffer_to_buffer(self.objective.scalars(), 0, stats, scalars, 16);
        enc.copy_buffer_to_buffer(&self.optim.norm, 0, stats, norm, 12);
        let monitored = Self::monitored(&self.config, &self.model, self.shard.len);
        let tokens = self.token_mse.size() / 4;
        let per_token = 4 * HEADER as u64;
        enc.copy_buffer_to_buffer(&self.token_mse, 0, stats, per_token, 4 * tokens);
        if let Some(d) = self.objective.monitored_weights() {
            enc.copy_buffer_to_buffer(d, 0, stats, per_token + 4 * tokens, 4 * monitored);
        }
        self.gpu.queue.submit(Some(enc.finish()));
        let count = HEADER + (tokens + monitored) as usize;
        let read: Vec<f32> = self.gpu.read_staging(&self.stats, count)?;
        let Gathered {
            scalars,
            grad_norm,
            per_token,
            d,
            peer_stop,
        } = match across.as_mut() {
            Some(across) => across.gather(read, tokens as usize)?,
            None => Gathered::single(read, tokens as usize),
        };
        let sync_ms = across.map(|a| a.ms);
        self.peer_stop = peer_stop;
        self.objective.observe(&d, &inputs)?;
        self.last_d = d;
        self.last_mse = super::time_monitor::sample_means(&per_token, self.config.batch as usize);
        self.step += 1;
        let [loss, loss_c, loss_u, mean_d] = self.objective.report(scalars, &inputs);
        self.last_loss = Some(loss);
        let null = self.model.null_label();
        let slots = self.model.label_slots as usize;
        self.last_conditional = (0..self.config.batch as usize)
            .map(|b| inputs.labels[b * slots] != null)
            .collect();
        let mse_c = conditional_mean(&self.last_mse, &self.last_conditional);
        self.last_time = inputs.time_fractions;
        self.last_batch = inputs.indices;
        let stats = StepStats {
            step: self.step,
            loss,
            loss_c,
            loss_u,
            mean_d,
            mse_c,
            lr,
            grad_norm,
            ms: start.elapsed().as_secs_f64() * 1e3,
            sync_ms,
        };
        if !stats.loss.is_finite() || !stats.grad_norm.is_finite() {
            return Err(Error::Diverged(format!(
                "step {} gave loss {} and gradient norm {}; {}",
                self.step,
                stats.loss,
                stats.grad_norm,
                self.config.divergence_advice()
            )));
        }
        Ok(stats)
    }

    /// This rank's part of a step's inputs: its samples, their timesteps and label rows.
    fn shard_of(&self, inputs: &StepInputs) -> StepInputs {
        let range = self.shard.range();
        let slots = self.model.label_slots as usize;
        let batch = self.config.batch as usize;
        let rows = |half: usize| {
            let first = (half * batch + range.start) * slots;
            &inputs.labels[first..first + range.len() * slots]
        };
        let halves = inputs.labels.len() / (batch * slots);
        StepInputs {
            step: inputs.step,
            indices: inputs.indices[range.clone()].to_vec(),
            timesteps: inputs.timesteps[range.clone()].to_vec(),
            time_fractions: inputs.time_fractions[range.clone()].to_vec(),
            labels: (0..halves).flat_map(|h| rows(h).to_vec()).collect(),
            unconditional: inputs.unconditional,
        }
    }

    /// The batch's images, timesteps and conditions, and the objective's host data.
    fn upload(&self, inputs: &StepInputs) -> Result<()> {
        let queue = &self.gpu.queue;
        let mut x0 = Vec::with_capacity(inputs.indices.len() * self.data.image_len());
        for &i in &inputs.indices {
            x0.extend_from_slice(self.data.image(i));
        }
        queue.write_buffer(&self.x0, 0, bytemuck::cast_slice(&x0));
        queue.write_buffer(&self.t_noise, 0, bytemuck::cast_slice(&inputs.timesteps));
        let model_t = objectives::model_timesteps(self.config.process, &inputs.timesteps);
        self.acts
            .set_conditions(queue, &self.model, &model_t, &inputs.labels)?;
        self.objective.prepare(queue, inputs);
        Ok(())
    }

    /// Noise into x_t tokens, the forward, the objective's loss and the backward, on this
    /// rank's shard (`inputs`): its noise and target continue the whole batch's Philox stream
    /// at its first sample.
    fn record_model(
        &self,
        enc: &mut wgpu::CommandEncoder,
        inputs: &StepInputs,
        across: Option<&mut DeviceSum>,
    ) -> Result<()> {
        let (c, dev) = (&self.config, &self.gpu.device);
        let geometry = self.model.geometry(self.shard.len);
        let first_sample = self.shard.first();
        let (schedule, kind) = match c.process {
            Process::Ddpm => (
                Schedule::Ddpm {
                    table: (&self.table).into(),
                    steps: self.schedule.steps(),
                },
                TargetKind::Epsilon,
            ),
            Process::Flow => (Schedule::Flow, TargetKind::Velocity),
        };
        let noise = NoiseArgs {
            geometry,
            seed: c.seed,
            step: inputs.step,
            schedule,
            x0: (&self.x0).into(),
            timesteps: (&self.t_noise).into(),
            out_tokens: (&self.patches).into(),
        };
        self.noise
            .record_noise_to_tokens_shard(dev, enc, &noise, first_sample)?;
        let target = Target::PhiloxShard {
            seed: c.seed,
            step: inputs.step,
            geometry,
            first_sample,
            kind,
            x0: Some((&self.x0).into()),
        };
        let o = &self.objective;
        self.dit
            .record_forward(dev, enc, &self.acts, &self.patches, o.tap())?;
        let (loss, acts) = (&self.loss, &self.acts);
        let batch = objectives::StepBatch {
            inputs,
            across: across.map(|a| a as &mut dyn crate::kernels::ShardSum),
        };
        o.record(dev, enc, loss, acts, target, batch)?;
        // The first B rows are the conditional pass (labels, or ∅ where dropped).
        let mse = crate::kernels::TokenMseArgs {
            shape: self.mse_workspace.shape(),
            pred: (&self.acts.out).into(),
            target,
            out: (&self.token_mse).into(),
            workspace: &self.mse_workspace,
        };
        self.loss.record_token_mse(dev, enc, &mse)?;
        let (acts, patches) = (&self.acts, &self.patches);
        self.dit
            .record_backward(dev, enc, acts, patches, o.dout(), o.inject())
    }

    /// Gradient norm and clip, AdamW and EMA for step `s`; returns its learning rate.
    fn record_optimiser(&self, enc: &mut wgpu::CommandEncoder, s: u32) -> Result<f32> {
        let lr = self.lr_at(s);
        let (dev, dit) = (&self.gpu.device, &self.dit);
        self.optim
            .record_step(dev, enc, &dit.params, &dit.grads, s, lr)?;
        Ok(lr)
    }

    /// Writes `state` (from [`Self::state`]) as a checkpoint of this run, atomically.
    pub fn save(&self, path: &std::path::Path, state: &State) -> Result<()> {
        super::state::save(
            path,
            &self.config,
            &self.model,
            self.fingerprint,
            &self.data.label_names,
            state,
        )
    }

    /// Parameters, EMA and moments read back, with the step.
    pub fn state(&self) -> Result<State> {
        let n = self.dit.layout.total;
        Ok(State {
            step: self.step,
            params: self.gpu.read(&self.dit.params, n)?,
            ema: self.gpu.read(&self.optim.ema, n)?,
            m: self.gpu.read(&self.optim.m, n)?,
            v: self.gpu.read(&self.optim.v, n)?,
            objective: match self.objective.carried_state() {
                Some((buffer, len)) => self.gpu.read(buffer, len)?,
                None => self.objective.host_state().unwrap_or_default(),
            },
            last_loss: self.last_loss,
        })
    }
}

/// The mean of the per-sample values flagged `keep` (None if none is): every sample has the
/// same number of tokens, so this is the mean over their tokens.
fn conditional_mean(per_sample: &[f32], keep: &[bool]) -> Option<f32> {
    let kept: Vec<f64> = per_sample
        .iter()
        .zip(keep)
        .filter(|(_, &k)| k)
        .map(|(&x, _)| x as f64)
        .collect();
    (!kept.is_empty()).then(|| (kept.iter().sum::<f64>() / kept.len() as f64) as f32)
}

/// Writes a checkpoint's objective state into the objective. A fresh run (step 0) starts
/// from zeros; a resumed one must bring exactly the state the objective carries.
fn restore_objective_state(
    gpu: &Gpu,
    objective: &mut dyn objectives::Objective,
    state: &State,
) -> Result<()> {
    if objective.host_state().is_some() {
        if state.step == 0 && state.objective.is_empty() {
            return Ok(());
        }
        return objective.restore_host_state(&state.objective);
    }
    match objective.carried_state() {
        Some((buffer, len)) if state.objective.len() == len => {
            gpu.queue
                .write_buffer(buffer, 0, bytemuck::cast_slice(&state.objective));
            Ok(())
        }
        Some(_) if state.step == 0 && state.objective.is_empty() => Ok(()),
        Some((_, len)) => Err(Error::Shape(format!(
            "the checkpoint holds {} values of objective state but this objective carries {len} \
             (the t-bucket normalisation's running means); resume with the config it was \
             written with",
            state.objective.len()
        ))),
        None if state.objective.is_empty() => Ok(()),
        None => Err(Error::Shape(format!(
            "the checkpoint holds {} values of objective state but this objective carries none",
            state.objective.len()
        ))),
    }
}

/// The configured objective for this model, batch and data.
fn build_objective(
    dev: &wgpu::Device,
    loss: &LossKernels,
    config: &TrainConfig,
    b: u32,
    model: &DitConfig,
    data: &Dataset,
) -> Result<Box<dyn objectives::Objective>> {
    Ok(match config.objective {
        Objective::Baseline => Box::new(objectives::Baseline::new(dev, loss, model, b)?),
        Objective::Imba | Objective::DualBaseline => {
            let spec = objectives::ImbaSpec {
                params: config.imba_params(),
                monitor: config.objective == Objective::Imba,
                time_buckets: config.time_buckets,
                time_decay: config.time_decay,
            };
            Box::new(objectives::Imba::new(dev, loss, model, b, spec)?)
        }
        Objective::Cbdm => {
            let prior_rows = match config.cbdm_prior {
                CbdmPrior::Uniform => data.distinct_label_rows(),
                CbdmPrior::Frequency => (0..data.len())
                    .map(|i| data.labels_of(i).to_vec())
                    .collect(),
            };
            let spec = objectives::CbdmSpec {
                batch: b,
                seed: config.seed,
                tau: config.cbdm_tau,
                uncond: config.cbdm_uncond,
                prior_rows,
            };
            Box::new(objectives::Cbdm::new(dev, loss, model, spec)?)
        }
        Objective::Ccua => {
            let spec = objectives::CcuaSpec {
                alpha: config.ccua_alpha,
                gamma: config.ccua_gamma,
                tau: config.ccua_tau,
            };
            Box::new(objectives::Ccua::new(dev, loss, model, b, spec)?)
        }
        Objective::Reweighted => {
            let spec = objectives::reweighted::ReweightedSpec {
                rule: config.weight_rule,
                counts: &data.label_counts(),
                params: config.imba_params(),
                buckets: config.time_buckets,
                decay: config.time_decay,
                seed: config.seed,
            };
            Box::new(objectives::Reweighted::new(dev, loss, model, b, &spec)?)
        }
    })
}

/// Refuses a model and batch whose training state would not fit: on a CPU adapter its memory
/// is the host's, checked before anything is allocated. (wgpu does not tell a GPU's memory
/// size; there an allocation that does not fit fails with the device's own error.)
fn check_memory(gpu: &Gpu, model: &DitConfig, config: &TrainConfig, batch: u32) -> Result<()> {
    if gpu.info.device_type != wgpu::DeviceType::Cpu {
        return Ok(());
    }
    let report = crate::model::MemoryReport::new(model, batch, config.objective.repeats());
    crate::bounds::host_memory(
        &format!(
            "training this model at batch {} (parameters, moments, activations; see `imba \
             info --model`)",
            batch
        ),
        report.total_bytes(),
    )
}

/// What a data-parallel job cannot split: losses that couple the samples of a batch beyond a
/// sum (CCUA's contrastive negatives, IMBA's batch-mean D), and shards that would not start on
/// a Philox quad.
fn check_parallel(config: &TrainConfig, model: &DitConfig, shard: Shard) -> Result<()> {
    let one_process = "train it in one process";
    let coupled = match config.objective {
        Objective::Ccua => Some((
            "CCUA's contrastive loss takes its negatives from the whole batch",
            one_process,
        )),
        Objective::Imba if config.normalize == crate::kernels::Normalize::BatchMean => Some((
            "IMBA with `normalize = batch-mean` divides D by the whole batch's mean",
            "train it in one process, or use `normalize = t-bucket` (summed over ranks)",
        )),
        Objective::Reweighted => Some((
            "the reweighted objective draws each step's weights on one host for the whole batch",
            one_process,
        )),
        _ => None,
    };
    if let Some((why, fix)) = coupled {
        return Err(Error::Config(format!(
            "{why}, which a data-parallel job does not split over ranks; {fix}"
        )));
    }
    let geometry = model.geometry(shard.len);
    crate::kernels::shard_quad_base(geometry, shard.first())
        .map(|_| ())
        .map_err(|e| Error::Config(format!("{e} (here: batch/ranks = {})", shard.len)))
}

/// The optimiser's part of a checkpoint's state.
fn optimizer_state(s: &State) -> OptimizerState<'_> {
    OptimizerState {
        m: &s.m,
        v: &s.v,
        ema: &s.ema,
    }
}
