//! The optimiser of a flat parameter buffer: the gradient's global norm and clip, AdamW and
//! the EMA of the weights, recorded as one step. The trainer, InvDiff's δ-model and the
//! training-step benchmark all step through it.

use crate::gpu::Gpu;
use crate::kernels::optim::AdamW;
use crate::kernels::StepValues;
use crate::kernels::{AdamWArgs, EmaArgs, GradNormArgs, OptimKernels};
use crate::Result;

/// Which step [`Optimizer::record_step`] records.
#[derive(Clone, Copy, Debug)]
pub struct StepAt<'a> {
    /// The step, from 0.
    pub s: u32,
    /// Its learning rate.
    pub lr: f32,
    /// A uniform holding [`Optimizer::step_values`] of this step (written by the caller
    /// before submitting), or `None`: each launch then makes its own.
    pub step_values: Option<&'a wgpu::Buffer>,
}

/// AdamW's and the EMA's settings (the learning rate comes per step).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimizerSettings {
    /// AdamW's first-moment decay.
    pub beta1: f32,
    /// AdamW's second-moment decay.
    pub beta2: f32,
    /// Decoupled weight decay.
    pub weight_decay: f32,
    /// Largest global gradient norm; larger gradients are scaled down to it.
    pub clip: f32,
    /// The EMA's decay once warmed up (see [`Optimizer::ema_decay_at`]).
    pub ema: f32,
}

/// The optimiser's state on the GPU: AdamW's moments, the EMA of the weights and the step's
/// gradient norm, for `n` parameters.
pub struct Optimizer {
    kernels: OptimKernels,
    settings: OptimizerSettings,
    n: u32,
    /// AdamW's first moment.
    pub m: wgpu::Buffer,
    /// AdamW's second moment.
    pub v: wgpu::Buffer,
    /// The EMA of the weights.
    pub ema: wgpu::Buffer,
    /// After a step: [Σg², ‖g‖, clip scale] (see [`OptimKernels::record_grad_norm`]).
    pub norm: wgpu::Buffer,
}

/// The state an optimiser starts from: the moments and the EMA (each `n` values).
pub struct OptimizerState<'a> {
    /// AdamW's first moment.
    pub m: &'a [f32],
    /// AdamW's second moment.
    pub v: &'a [f32],
    /// The EMA of the weights.
    pub ema: &'a [f32],
}

impl Optimizer {
    /// An optimiser resuming from `state` (fresh: zero moments, the EMA at the initial
    /// weights).
    pub fn new(gpu: &Gpu, settings: OptimizerSettings, state: OptimizerState) -> Result<Self> {
        let n = state.ema.len();
        if state.m.len() != n || state.v.len() != n {
            return Err(crate::Error::Shape(format!(
                "optimiser state of {} moments, {} second moments and {n} EMA values: all must \
                 hold one value per parameter",
                state.m.len(),
                state.v.len()
            )));
        }
        Ok(Self {
            kernels: OptimKernels::new(&gpu.device)?,
            settings,
            n: n as u32,
            m: gpu.upload("adam_m", state.m),
            v: gpu.upload("adam_v", state.v),
            ema: gpu.upload("ema", state.ema),
            norm: gpu.zeros("grad_norm", 16),
        })
    }

    /// A fresh optimiser for weights starting at `params`: zero moments, the EMA at `params`.
    pub fn fresh(gpu: &Gpu, settings: OptimizerSettings, params: &[f32]) -> Result<Self> {
        let zeros = vec![0.0; params.len()];
        let state = OptimizerState {
            m: &zeros,
            v: &zeros,
            ema: params,
        };
        Self::new(gpu, settings, state)
    }

    /// The EMA decay of step `s` (from 0): min(ema, (1 + s)/(10 + s)), the usual warm-up
    /// (as TensorFlow's `ExponentialMovingAverage` with `num_updates`), so that the average
    /// forgets the random initialisation in a short run. Without it, a decay of 0.999 after
    /// 1500 steps still holds 22% of the initial weights.
    pub fn ema_decay_at(&self, s: u32) -> f32 {
        self.settings.ema.min((1.0 + s as f32) / (10.0 + s as f32))
    }

    /// AdamW's hyper-parameters at learning rate `lr`.
    fn adamw(&self, lr: f32) -> AdamW {
        let c = &self.settings;
        AdamW {
            lr: lr as f64,
            beta1: c.beta1 as f64,
            beta2: c.beta2 as f64,
            eps: 1e-8,
            weight_decay: c.weight_decay as f64,
        }
    }

    /// The per-step values of step `s` (from 0) at learning rate `lr`: AdamW's learning rate
    /// and bias corrections and the EMA's decay, as [`Self::record_step`] uses them (the
    /// Philox step is the caller's).
    pub fn step_values(&self, s: u32, lr: f32) -> StepValues {
        StepValues::default()
            .with_adamw(&self.adamw(lr), s + 1)
            .with_ema_decay(self.ema_decay_at(s))
    }

    /// Records a step (see [`StepAt`]): the gradient's norm and clip scale, AdamW on `params`
    /// with the clipped `grads`, then the EMA of the updated weights.
    pub fn record_step(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        params: &wgpu::Buffer,
        grads: &wgpu::Buffer,
        at: StepAt,
    ) -> Result<()> {
        let StepAt { s, lr, step_values } = at;
        let n = self.n;
        let norm = (&self.norm).into();
        let clip = GradNormArgs {
            n,
            grads: grads.into(),
            max_norm: self.settings.clip,
            norm,
        };
        self.kernels.record_grad_norm(device, encoder, &clip)?;
        let adam = AdamWArgs {
            n,
            h: self.adamw(lr),
            step: s + 1,
            params: params.into(),
            grads: grads.into(),
            m: (&self.m).into(),
            v: (&self.v).into(),
            norm: Some(norm),
            step_values,
        };
        self.kernels.record_adamw(device, encoder, &adam)?;
        let ema = EmaArgs {
            n,
            decay: self.ema_decay_at(s),
            params: params.into(),
            ema: (&self.ema).into(),
            step_values,
        };
        self.kernels.record_ema(device, encoder, &ema)
    }
}
