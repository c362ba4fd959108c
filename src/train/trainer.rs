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
use crate::diffusion::FLOW_TIME_SCALE;
use crate::gpu::Gpu;
use crate::kernels::optim::AdamW;
use crate::kernels::{
    LossKernels, LossWorkspace, MseLossArgs, NoiseArgs, NoiseKernels, OptimKernels, Region,
    Schedule, Target, TargetKind, NO_LABEL,
};
use crate::model::{Activations, Dit, DitConfig, DualLoss, PairLoss, ParamLayout};
use crate::rng::philox4x32_10;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Philox stream of the per-sample timesteps (0 is the noise, 1 the label dropout).
const STREAM_TIMESTEP: u32 = 2;
/// Philox stream of CBDM's extra labels y' (counter b) and of its whole-batch
/// unconditional draw (counter B, one per step).
const STREAM_CBDM: u32 = 3;

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
    pub lr: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    /// Wall time of the step, ms.
    pub ms: f64,
}

enum LossBuffers {
    Single {
        workspace: LossWorkspace,
        grad: wgpu::Buffer,
        scalars: wgpu::Buffer,
    },
    Dual(DualLoss),
    // Boxed: it holds the contrastive kernels and buffers, several times the others' size.
    Pair(Box<PairLoss>),
}

/// The host-side state a checkpoint restores.
pub struct State {
    pub step: u32,
    pub params: Vec<f32>,
    pub ema: Vec<f32>,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
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
    loss_bufs: LossBuffers,
    optim: OptimKernels,
    noise: NoiseKernels,
    m: wgpu::Buffer,
    v: wgpu::Buffer,
    pub ema: wgpu::Buffer,
    norm: wgpu::Buffer,
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
    /// CBDM with the uniform prior: the distinct label rows of the data set, y' is drawn
    /// from these.
    prior_rows: Vec<Vec<u32>>,
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
        config.validate()?;
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
        let dit = Dit::new(dev, model.clone(), &state.params)?;
        let b = config.batch;
        let acts = Activations::new(dev, &model, b, config.objective.repeats())?;
        let loss = LossKernels::new(dev)?;
        let e = b as u64 * model.tokens() as u64 * model.token_dim() as u64;
        let loss_bufs = match config.objective {
            Objective::Baseline => LossBuffers::Single {
                workspace: loss.workspace(
                    dev,
                    crate::kernels::TokenShape::new(b, model.tokens(), model.token_dim()),
                )?,
                grad: gpu.zeros("grad_out", 4 * e),
                scalars: gpu.zeros("loss_scalars", 16),
            },
            Objective::Imba | Objective::DualBaseline => {
                LossBuffers::Dual(DualLoss::new(dev, &loss, &model, b)?)
            }
            Objective::Cbdm | Objective::Ccua => {
                let kind = config.pair_kind(model.depth).expect("a pair objective");
                LossBuffers::Pair(Box::new(PairLoss::new(dev, &loss, &model, b, kind)?))
            }
        };
        let prior_rows =
            if config.objective == Objective::Cbdm && config.cbdm_prior == CbdmPrior::Uniform {
                data.distinct_label_rows()
            } else {
                Vec::new()
            };
        let schedule = DdpmSchedule::default_linear();
        let table = gpu.upload("ddpm_table", &schedule.coefficients());
        Ok(Self {
            gpu,
            acts,
            loss,
            loss_bufs,
            optim: OptimKernels::new(dev)?,
            noise: NoiseKernels::new(dev)?,
            m: gpu.upload("adam_m", &state.m),
            v: gpu.upload("adam_v", &state.v),
            ema: gpu.upload("ema", &state.ema),
            norm: gpu.zeros("grad_norm", 16),
            stats: gpu.staging("step_stats", 32 + 4 * Self::monitored(&config, &model)),
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
            prior_rows,
            dit,
            config,
            model,
            data,
        })
    }

    /// How many D values a step reads back: B·N for IMBA (the D monitor), else none.
    fn monitored(config: &TrainConfig, model: &DitConfig) -> u64 {
        if config.objective == Objective::Imba {
            config.batch as u64 * model.tokens() as u64
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
        (0..self.config.batch)
            .map(|b| {
                let w = philox4x32_10([b, STREAM_TIMESTEP, 0, 0], [self.config.seed, s])[0];
                match self.config.process {
                    Process::Ddpm => ((w as u64 * self.schedule.steps() as u64) >> 32) as f32,
                    Process::Flow => (w >> 8) as f32 / (1u32 << 24) as f32,
                }
            })
            .collect()
    }

    /// The label rows of step `s`: B rows, then B more for the dual forwards.
    /// - baseline, and CCUA's first half: the batch's labels, each dropped to ∅ with
    ///   probability `label_dropout` (Philox stream 1, counter b);
    /// - IMBA, dual baseline, CCUA: then B rows of ∅;
    /// - CBDM: the labels (all ∅ on a whole-batch unconditional step), then the extra
    ///   labels y' (see [`Self::cbdm_unconditional`] and [`Self::cbdm_prior_row`]).
    pub fn label_rows(&self, s: u32, idx: &[usize]) -> Vec<u32> {
        self.label_rows_given(s, idx, self.whole_batch_unconditional(s))
    }

    /// CBDM's whole-batch unconditional draw of step `s` (false for the other objectives).
    fn whole_batch_unconditional(&self, s: u32) -> bool {
        self.config.objective == Objective::Cbdm && self.cbdm_unconditional(s)
    }

    /// [`Self::label_rows`] with the step's unconditional draw already made.
    fn label_rows_given(&self, s: u32, idx: &[usize], unconditional: bool) -> Vec<u32> {
        let slots = self.model.label_slots as usize;
        let null_row = |v: &mut Vec<u32>| {
            v.push(self.model.null_label());
            v.extend(std::iter::repeat_n(NO_LABEL, slots - 1));
        };
        let objective = self.config.objective;
        let threshold = crate::kernels::noise::dropout_threshold(self.config.label_dropout);
        let mut rows = Vec::with_capacity(idx.len() * slots * 2);
        for (b, &i) in idx.iter().enumerate() {
            let dropped = matches!(objective, Objective::Baseline | Objective::Ccua)
                && crate::rng::dropped(self.config.seed, s, b as u32, threshold);
            if dropped || unconditional {
                null_row(&mut rows);
            } else {
                rows.extend_from_slice(self.data.labels_of(i));
            }
        }
        match objective {
            Objective::Baseline => {}
            Objective::Cbdm => {
                for b in 0..idx.len() {
                    rows.extend(self.cbdm_prior_row(s, b as u32));
                }
            }
            _ => idx.iter().for_each(|_| null_row(&mut rows)),
        }
        rows
    }

    /// CBDM: whether step `s` trains the whole batch unconditionally, without the
    /// regulariser (probability `cbdm_uncond`).
    pub fn cbdm_unconditional(&self, s: u32) -> bool {
        let w = philox4x32_10(
            [self.config.batch, STREAM_CBDM, 0, 0],
            [self.config.seed, s],
        )[0];
        // The 24-bit word against the 24-bit threshold, as the label dropout does.
        (w >> 8) < crate::kernels::noise::dropout_threshold(self.config.cbdm_uncond)
    }

    /// CBDM: sample b's extra label row y' at step `s`: the labels of a uniformly drawn
    /// training image (frequency prior) or a uniformly drawn distinct label row.
    fn cbdm_prior_row(&self, s: u32, b: u32) -> Vec<u32> {
        let w = philox4x32_10([b, STREAM_CBDM, 0, 0], [self.config.seed, s])[0] as u64;
        let pick = |n: usize| ((w * n as u64) >> 32) as usize;
        match self.config.cbdm_prior {
            CbdmPrior::Frequency => self.data.labels_of(pick(self.data.len())).to_vec(),
            CbdmPrior::Uniform => self.prior_rows[pick(self.prior_rows.len())].clone(),
        }
    }

    /// Each sample's weight t/T of CBDM's and CCUA's regularisers (flow: t).
    fn regulariser_weights(&self, t: &[f32]) -> Vec<f32> {
        match self.config.process {
            Process::Ddpm => t
                .iter()
                .map(|&v| v / self.schedule.steps() as f32)
                .collect(),
            Process::Flow => t.to_vec(),
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

    /// The EMA decay of step `s` (from 0): min(ema, (1 + s)/(10 + s)), the usual warm-up
    /// (as TensorFlow's `ExponentialMovingAverage` with `num_updates`), so that the average
    /// forgets the random initialisation in a short run. Without it, a decay of 0.999 after
    /// 1500 steps still holds 22% of the initial weights, and the default run's EMA samples
    /// were pure noise.
    pub fn ema_decay_at(&self, s: u32) -> f32 {
        self.config.ema.min((1.0 + s as f32) / (10.0 + s as f32))
    }

    /// Runs one step. A non-finite loss or gradient norm is an error naming the step (the
    /// parameters are then spoilt: reload a checkpoint).
    pub fn step(&mut self) -> Result<StepStats> {
        let start = Instant::now();
        let s = self.step;
        let idx = self.batch_indices(s);
        let c = &self.config;
        let dev = &self.gpu.device;
        let queue = &self.gpu.queue;
        let mut x0 = Vec::with_capacity(idx.len() * self.data.image_len());
        for &i in &idx {
            x0.extend_from_slice(self.data.image(i));
        }
        let t = self.timesteps(s);
        let model_t: Vec<f32> = match c.process {
            Process::Ddpm => t.clone(),
            Process::Flow => t.iter().map(|v| v * FLOW_TIME_SCALE).collect(),
        };
        // Drawn once: it sets the label rows and whether the regulariser runs.
        let unconditional = self.whole_batch_unconditional(s);
        let labels = self.label_rows_given(s, &idx, unconditional);
        queue.write_buffer(&self.x0, 0, bytemuck::cast_slice(&x0));
        queue.write_buffer(&self.t_noise, 0, bytemuck::cast_slice(&t));
        self.acts
            .set_conditions(queue, &self.model, &model_t, &labels)?;

        let geometry = self.model.geometry(c.batch);
        let (schedule, kind) = match c.process {
            Process::Ddpm => (
                Schedule::Ddpm {
                    table: &self.table,
                    steps: self.schedule.steps(),
                },
                TargetKind::Epsilon,
            ),
            Process::Flow => (Schedule::Flow, TargetKind::Velocity),
        };
        let target = Target::Philox {
            seed: c.seed,
            step: s,
            geometry,
            kind,
            x0: Some(&self.x0),
        };
        let mut enc = self.gpu.encoder();
        self.noise.record_noise_to_tokens(
            dev,
            &mut enc,
            &NoiseArgs {
                geometry,
                seed: c.seed,
                step: s,
                schedule,
                x0: &self.x0,
                timesteps: &self.t_noise,
                out_tokens: &self.patches,
            },
        )?;
        let pair = match &self.loss_bufs {
            LossBuffers::Pair(p) => Some(p),
            _ => None,
        };
        let regularise = !unconditional;
        if let Some(p) = pair {
            queue.write_buffer(
                &p.weight,
                0,
                bytemuck::cast_slice(&self.regulariser_weights(&t)),
            );
        }
        self.dit.record_forward(
            dev,
            &mut enc,
            &self.acts,
            &self.patches,
            pair.and_then(|p| p.tap()),
        )?;
        let (dout, scalars) = match &self.loss_bufs {
            LossBuffers::Single {
                workspace,
                grad,
                scalars,
            } => {
                self.loss.record_mse(
                    dev,
                    &mut enc,
                    &MseLossArgs {
                        shape: geometry.token_shape(),
                        pred: &self.acts.out,
                        target,
                        grad,
                        scalars,
                        workspace,
                    },
                )?;
                (grad, scalars)
            }
            LossBuffers::Dual(dual) => {
                dual.record(
                    dev,
                    &mut enc,
                    &self.loss,
                    &self.acts,
                    target,
                    &c.imba_params(),
                )?;
                (&dual.dout, &dual.scalars)
            }
            LossBuffers::Pair(p) => {
                p.record(dev, &mut enc, &self.loss, &self.acts, target, regularise)?;
                (&p.dout, &p.scalars)
            }
        };
        self.dit.record_backward(
            dev,
            &mut enc,
            &self.acts,
            &self.patches,
            dout,
            pair.and_then(|p| p.inject()),
        )?;
        let n = self.dit.layout.total as u32;
        self.optim
            .record_grad_norm(dev, &mut enc, n, &self.dit.grads, c.clip, &self.norm)?;
        let lr = self.lr_at(s);
        let h = AdamW {
            lr: lr as f64,
            beta1: c.beta1 as f64,
            beta2: c.beta2 as f64,
            eps: 1e-8,
            weight_decay: c.weight_decay as f64,
        };
        self.optim.record_adamw(
            dev,
            &mut enc,
            n,
            h,
            s + 1,
            &self.dit.params,
            &self.dit.grads,
            &self.m,
            &self.v,
            Some(Region::from(&self.norm)),
        )?;
        let decay = self.ema_decay_at(s);
        self.optim
            .record_ema(dev, &mut enc, n, decay, &self.dit.params, &self.ema)?;
        // The loss scalars and the norm go straight into a mappable buffer: one submission,
        // one wait per step.
        enc.copy_buffer_to_buffer(scalars, 0, &self.stats, 0, 16);
        enc.copy_buffer_to_buffer(&self.norm, 0, &self.stats, 16, 16);
        let monitored = Self::monitored(c, &self.model);
        if let (LossBuffers::Dual(dual), true) = (&self.loss_bufs, monitored > 0) {
            enc.copy_buffer_to_buffer(&dual.weights, 0, &self.stats, 32, 4 * monitored);
        }
        self.gpu.queue.submit(Some(enc.finish()));
        let mut v: Vec<f32> = self.gpu.read_staging(&self.stats, 8 + monitored as usize)?;
        self.last_d = v.split_off(8);
        self.last_batch = idx;
        self.step += 1;
        // [L, L_c, L_u, mean D]; the pair losses report [L_diff, R, U] (see PairKind::total).
        let (loss, loss_c, loss_u, mean_d) = match pair {
            Some(p) => {
                let parts = [v[0], v[1], v[2]];
                let reg = if regularise {
                    p.kind.regulariser(parts)
                } else {
                    0.0
                };
                (v[0] + reg, v[0], reg, 1.0)
            }
            None => (v[0], v[1], v[2], v[3]),
        };
        let stats = StepStats {
            step: self.step,
            loss,
            loss_c,
            loss_u,
            mean_d,
            lr,
            grad_norm: v[5],
            ms: start.elapsed().as_secs_f64() * 1e3,
        };
        if !stats.loss.is_finite() || !stats.grad_norm.is_finite() {
            return Err(Error::Diverged(format!(
                "step {} gave loss {} and gradient norm {}; lower `lr` or keep `clip` on",
                self.step, stats.loss, stats.grad_norm
            )));
        }
        Ok(stats)
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
            ema: self.gpu.read(&self.ema, n)?,
            m: self.gpu.read(&self.m, n)?,
            v: self.gpu.read(&self.v, n)?,
        })
    }
}
