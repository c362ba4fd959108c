//! One training step on the GPU, as data flows (docs/design.md#a-training-step): the batch and its timesteps are
//! chosen on the host from Philox (seed, step), the noise kernel writes x_t as tokens, the
//! DiT runs one pass (baseline) or the dual pass (IMBA, dual baseline), the loss kernel
//! regenerates ε and writes the gradients, then backward, gradient norm and clip, AdamW and
//! EMA, all in one submission; only the loss scalars and the norm are read back.
//!
//! Every random choice is a function of (seed, step), so a run resumed from a checkpoint
//! (parameters, EMA, moments, step) continues with exactly the bits it would have had.

mod batches;
mod build;
mod noisy;
mod readback;

pub use readback::LastStep;

use super::TrainConfig;
use crate::data::Dataset;
use crate::gpu::Gpu;
use crate::kernels::StepValues;
use crate::kernels::{LossKernels, TokenShape};
use crate::model::{Activations, Dit, DitConfig, LossPass, Optimizer, ParamLayout, StepAt};
use crate::objectives::{self, StepInputs};
use crate::parallel::{Collective, Shard, Single};
use crate::{Error, Result};
use batches::BatchSource;
use noisy::{NoiseDraw, NoisyBatch};
use readback::{DeviceSum, Gathered, Ranks, ReadBack};
use serde::{Deserialize, Serialize};
use web_time::Instant;

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

/// What recording one step costs the host (see [`Trainer::record_only`]).
#[derive(Clone, Copy, Debug)]
pub struct RecordCost {
    /// Wall time on the host, ms.
    pub ms: f64,
    /// Compute dispatches recorded.
    pub dispatches: u64,
    /// GPU objects (uniform buffers and bind groups) the launches created.
    pub objects: u64,
}

/// A model, its optimiser state and its data, on one device.
pub struct Trainer<'g> {
    gpu: &'g Gpu,
    pub config: TrainConfig,
    pub model: DitConfig,
    pub data: Dataset,
    /// [`Dataset::fingerprint`] of `data`, stored in checkpoints.
    pub fingerprint: u64,
    /// Steps done.
    pub step: u32,
    /// The model, its activations and its optimiser.
    pub dit: Dit,
    acts: Activations,
    optim: Optimizer,
    /// The objective and the loss kernels it launches.
    objective: Box<dyn objectives::Objective>,
    loss: LossKernels,
    /// What each step draws on the host, and the batch on the device.
    batches: BatchSource,
    noisy: NoisyBatch,
    /// What each step reads back, and what the last step measured (for the monitors).
    readback: ReadBack,
    pub last: LastStep,
    /// The loss of the last step (checkpoints record it; see [`State::last_loss`]).
    last_loss: Option<f32>,
    /// The ranks sharing each batch, and this process's part of it.
    ranks: Ranks<'g>,
    pub shard: Shard,
    /// Whether another rank asked the job to stop at the last step.
    pub peer_stop: bool,
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
        build::check_setup(gpu, &config, &model, &data, shard)?;
        let dev = &gpu.device;
        let layout = ParamLayout::new(&model);
        let state = build::start_state(&layout, config.seed, state)?;
        let dit = Dit::with_paths(dev, model.clone(), &state.params, gpu.paths)?;
        let b = shard.len;
        let acts = Activations::new(dev, &model, b, config.objective.repeats())?;
        let loss = LossKernels::new(dev)?;
        let token_shape = TokenShape::new(b, model.tokens(), model.token_dim());
        let mut objective = build::build_objective(dev, &loss, &config, b, &model, &data)?;
        build::restore_objective_state(gpu, objective.as_mut(), &state)?;
        // D (B·N, B the shard's samples) read back for the D monitor or a weight rule.
        let monitored = objective
            .monitored_weights()
            .map_or(0, |_| b as u64 * model.tokens() as u64);
        let noisy = NoisyBatch::new(gpu, b, data.image_len(), token_shape.elements())?;
        let exchange = (shard.ranks > 1).then(|| {
            let largest = layout
                .total
                .max(2 * crate::kernels::MAX_TIME_BUCKETS as usize);
            gpu.staging("exchange", 4 * largest as u64)
        });
        Ok(Self {
            gpu,
            fingerprint: data.fingerprint(),
            step: state.step,
            dit,
            acts,
            optim: Optimizer::new(
                gpu,
                config.optimizer_settings(),
                build::optimizer_state(&state),
            )?,
            readback: ReadBack::new(gpu, &loss, token_shape, monitored)?,
            objective,
            loss,
            batches: BatchSource::new(&config, &model, &data, noisy.ddpm_steps()),
            noisy,
            last: LastStep::default(),
            last_loss: state.last_loss,
            ranks: Ranks { comm, exchange },
            shard,
            peer_stop: false,
            config,
            model,
            data,
        })
    }

    /// The objective the trainer steps.
    pub fn objective(&self) -> &dyn crate::objectives::Objective {
        self.objective.as_ref()
    }

    /// The images of step `s`'s batch: positions s·B .. s·B+B of an endless sequence of
    /// epochs, each a Philox shuffle of the data set keyed by (seed, epoch).
    pub fn batch_indices(&mut self, s: u32) -> Vec<usize> {
        self.batches.indices(s)
    }

    /// Step `s`'s timesteps: DDPM integers in 0..T, or flow times in [0, 1).
    pub fn timesteps(&self, s: u32) -> Vec<f32> {
        self.batches.timesteps(s)
    }

    /// The label rows of step `s`: B rows, then B more for the dual forwards.
    /// - the first half: the batch's labels, each dropped to ∅ with probability
    ///   `label_dropout` (Philox stream 1, counter b) where the objective drops labels
    ///   (baseline, CCUA), all ∅ on CBDM's whole-batch unconditional steps;
    /// - the second half: the objective's (∅ rows; CBDM's extra labels y').
    pub fn label_rows(&self, s: u32, idx: &[usize]) -> Vec<u32> {
        let unconditional = self.whole_batch_unconditional(s);
        let o = self.objective.as_ref();
        self.batches
            .label_rows(s, idx, &self.data, o, unconditional)
    }

    /// Whether step `s` trains the whole batch unconditionally (CBDM, probability
    /// `cbdm_uncond`; never for the other objectives).
    pub fn whole_batch_unconditional(&self, s: u32) -> bool {
        self.objective.whole_batch_unconditional(s)
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

    /// Runs one step: draw → forward → loss → backward → update, one submission and one
    /// read-back. A non-finite loss or gradient norm is an error naming the step (the
    /// parameters are then spoilt: reload a checkpoint). In a data-parallel job every rank
    /// calls it together: the gradients are averaged over the ranks before the update, and
    /// the step's scalars and per-sample values are gathered from every rank, so the
    /// returned stats and [`Self::last`] describe the whole batch on every rank.
    pub fn step(&mut self) -> Result<StepStats> {
        pollster::block_on(self.step_async())
    }

    /// [`Self::step`] without blocking on the read-back: what a browser page awaits. One
    /// process only in a browser (a data-parallel job blocks on its exchanges).
    pub async fn step_async(&mut self) -> Result<StepStats> {
        let start = Instant::now();
        let s = self.step;
        let inputs = self.batches.inputs(s, &self.data, self.objective.as_ref());
        let shard = (self.shard.ranks > 1).then(|| self.shard_of(&inputs));
        let local = shard.as_ref().unwrap_or(&inputs);
        self.upload(local)?;
        let mut enc = self.gpu.encoder();
        let mut across = self.ranks.step(self.gpu);
        let lr = self.record(&mut enc, local, across.as_mut())?;
        let read = self
            .readback
            .submit_and_read(self.gpu, enc, self.objective.as_ref(), &self.optim)
            .await?;
        let tokens = self.readback.tokens();
        let gathered = match across.as_mut() {
            Some(across) => across.gather(read, tokens)?,
            None => Gathered::single(read, tokens),
        };
        let sync_ms = across.map(|a| a.ms);
        self.finish_step(inputs, gathered, lr, sync_ms, start)
    }

    /// What recording step `s` (from 0) costs the host, without submitting it or waiting for
    /// the device: the draw, the uploads, every launch's checks and bind groups, and the
    /// finished command buffer, which is then dropped. Parameters, state and the step count
    /// do not change (the uploads are overwritten by the next step's). A step not recorded
    /// before creates what a steady training step creates (its Philox and AdamW parameters
    /// are new). One process only.
    pub fn record_only(&mut self, s: u32) -> Result<RecordCost> {
        if self.shard.ranks > 1 {
            return Err(Error::Config(
                "recording without submitting runs in one process, not a data-parallel job".into(),
            ));
        }
        let (dispatches, objects) = (
            crate::kernels::dispatches_recorded(),
            crate::kernels::launch_objects_created(),
        );
        let start = Instant::now();
        let inputs = self.batches.inputs(s, &self.data, self.objective.as_ref());
        self.upload(&inputs)?;
        let mut enc = self.gpu.encoder();
        self.record(&mut enc, &inputs, None)?;
        drop(enc.finish());
        Ok(RecordCost {
            ms: start.elapsed().as_secs_f64() * 1e3,
            dispatches: crate::kernels::dispatches_recorded() - dispatches,
            objects: crate::kernels::launch_objects_created() - objects,
        })
    }

    /// Takes in a step's gathered read-back: the objective's host state, the monitors, the
    /// stats; a non-finite loss or norm is an error.
    fn finish_step(
        &mut self,
        inputs: StepInputs,
        gathered: Gathered,
        lr: f32,
        sync_ms: Option<f64>,
        start: Instant,
    ) -> Result<StepStats> {
        self.peer_stop = gathered.peer_stop;
        self.objective.observe(&gathered.d, &inputs)?;
        self.step += 1;
        let [loss, loss_c, loss_u, mean_d] = self.objective.report(gathered.scalars, &inputs);
        self.last_loss = Some(loss);
        let grad_norm = gathered.grad_norm;
        let (null, slots) = (self.model.null_label(), self.model.label_slots as usize);
        self.last = LastStep::of(inputs, gathered, null, slots);
        let stats = StepStats {
            step: self.step,
            loss,
            loss_c,
            loss_u,
            mean_d,
            mse_c: self.last.conditional_mse(),
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
        batches::shard_of(inputs, &self.shard, self.model.label_slots as usize)
    }

    /// The batch's images, timesteps and conditions, and the objective's host data.
    fn upload(&self, inputs: &StepInputs) -> Result<()> {
        let queue = &self.gpu.queue;
        self.noisy.upload(queue, &self.data, inputs);
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
        let dev = &self.gpu.device;
        let draw = NoiseDraw {
            seed: self.config.seed,
            process: self.config.process,
            step: inputs.step,
            geometry: self.model.geometry(self.shard.len),
            first_sample: self.shard.first(),
        };
        let target = self.noisy.record_noise(dev, enc, &draw)?;
        let (o, acts, loss) = (&self.objective, &self.acts, &self.loss);
        let pass = LossPass {
            tap: o.tap(),
            dout: o.dout(),
            inject: o.inject(),
        };
        let batch = objectives::StepBatch {
            inputs,
            across: across.map(|a| a as &mut dyn crate::kernels::ShardSum),
        };
        let tokens = &self.noisy.tokens;
        self.dit
            .record_with_loss(dev, enc, acts, tokens, pass, |enc| {
                o.record(dev, enc, loss, acts, target, batch)?;
                self.readback
                    .record_token_mse(dev, enc, loss, &acts.out, target)
            })
    }

    /// Everything a step records for `inputs` (this rank's): the forward, loss and backward;
    /// in a data-parallel job the mean of the ranks' gradients (each a mean over its shard is
    /// the whole batch's, so clipping and AdamW see the same values on every rank); the
    /// update. Returns the step's learning rate.
    fn record(
        &self,
        enc: &mut wgpu::CommandEncoder,
        inputs: &StepInputs,
        mut across: Option<&mut DeviceSum>,
    ) -> Result<f32> {
        // The step's values, written once: every launch of the step binds this buffer.
        let (s, lr) = (inputs.step, self.lr_at(inputs.step));
        let values = StepValues {
            step: inputs.step,
            ..self.optim.step_values(s, lr)
        };
        values.write(&self.gpu.queue, &self.noisy.step_values);
        self.record_model(enc, inputs, across.as_deref_mut())?;
        if let Some(across) = across {
            let (n, scale) = (self.dit.layout.total, 1.0 / self.shard.ranks as f32);
            across.reduce(enc, &self.dit.grads, n, scale)?;
        }
        self.record_optimiser(enc, s, lr)?;
        Ok(lr)
    }

    /// Gradient norm and clip, AdamW and EMA for step `s` at learning rate `lr`.
    fn record_optimiser(&self, enc: &mut wgpu::CommandEncoder, s: u32, lr: f32) -> Result<()> {
        let (dev, dit) = (&self.gpu.device, &self.dit);
        let at = StepAt {
            s,
            lr,
            step_values: Some(&self.noisy.step_values),
        };
        self.optim
            .record_step(dev, enc, &dit.params, &dit.grads, at)
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

    /// Writes the EMA weights of `state` as this run's exported model, with its process,
    /// label names and step in the metadata.
    pub fn export(&self, path: &std::path::Path, state: &State) -> Result<()> {
        let info = super::export::ExportInfo {
            process: self.config.process,
            label_names: &self.data.label_names,
            step: state.step,
            of_steps: self.config.steps,
        };
        super::export::save(path, &self.model, info, &state.ema)
    }

    /// Parameters, EMA and moments read back, with the step.
    pub fn state(&self) -> Result<State> {
        pollster::block_on(self.state_async())
    }

    /// The device the run trains on.
    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// The EMA weights read back (what sampling during a run uses), without blocking.
    pub async fn ema_async(&self) -> Result<Vec<f32>> {
        let n = self.dit.layout.total;
        self.gpu.read_async(&self.optim.ema, n).await
    }

    /// [`Self::state`] without blocking on the read-backs.
    pub async fn state_async(&self) -> Result<State> {
        let (gpu, n) = (self.gpu, self.dit.layout.total);
        Ok(State {
            step: self.step,
            params: gpu.read_async(&self.dit.params, n).await?,
            ema: self.ema_async().await?,
            m: gpu.read_async(&self.optim.m, n).await?,
            v: gpu.read_async(&self.optim.v, n).await?,
            objective: match self.objective.carried_state() {
                Some((buffer, len)) => gpu.read_async(buffer, len).await?,
                None => self.objective.host_state().unwrap_or_default(),
            },
            last_loss: self.last_loss,
        })
    }
}
