//! IMBA: the fused concept-balancing loss on the dual forward (labels, then ∅). γ = 0 is the
//! dual baseline (D ≡ 1, the same compute); `Granularity::Sample` the sample-wise ablation.

use super::registry::{no_check, splits, BuildArgs, Registration, Settings, Unsplittable};
use super::{DualLoss, Objective, StepBatch, StepInputs};
use crate::kernels::{time_bucket, ImbaParams, LossKernels, Normalize, Target, TimeBuckets};
use crate::model::dit::buffer;
use crate::model::{Activations, DitConfig};
use crate::Result;

/// IMBA: the weight D on the dual forward, its monitor read back every step.
pub const REGISTRATION: Registration = Registration {
    name: "imba",
    about: "IMBA: the dual forward (labels and ∅) with the weight D",
    repeats: 2,
    reads: |s, key| match key {
        "gamma" | "lambda" | "d_form" | "normalize" | "granularity" => true,
        "time_buckets" | "time_decay" => s.imba.normalize == Normalize::TBucket,
        _ => false,
    },
    check: no_check,
    logs_d: true,
    unsplittable: |s| {
        (s.imba.normalize == Normalize::BatchMean).then_some(Unsplittable {
            why: "IMBA with `normalize = batch-mean` divides D by the whole batch's mean",
            fix: "train it in one process, or use `normalize = t-bucket` (summed over ranks)",
        })
    },
    build: |a: &BuildArgs| build(a, a.settings.imba, true),
};

/// The dual baseline: IMBA's compute and λ mix with D ≡ 1 (γ = 0, no normalisation).
pub const DUAL_BASELINE: Registration = Registration {
    name: "dual-baseline",
    about: "the dual forward with γ = 0 (D ≡ 1): IMBA's compute without its weighting",
    repeats: 2,
    reads: |_, key| key == "lambda",
    check: no_check,
    logs_d: false,
    unsplittable: splits,
    build: |a: &BuildArgs| build(a, dual_baseline_params(a.settings), false),
};

/// D ≡ 1 needs no normalisation: the control runs the published pass.
fn dual_baseline_params(s: &Settings) -> ImbaParams {
    ImbaParams {
        gamma: 0.0,
        normalize: Normalize::None,
        ..s.imba
    }
}

fn build(a: &BuildArgs, params: ImbaParams, monitor: bool) -> Result<Box<dyn super::Objective>> {
    let spec = ImbaSpec {
        params,
        monitor,
        time_buckets: a.settings.time_buckets,
        time_decay: a.settings.time_decay,
    };
    Ok(Box::new(Imba::new(
        a.device, a.loss, a.model, a.batch, spec,
    )?))
}

/// IMBA (or the dual baseline) for one model and batch.
pub struct Imba {
    dual: DualLoss,
    params: ImbaParams,
    /// Whether the step reads D back for the D monitor (IMBA; not the dual baseline).
    monitor: bool,
    /// The t-bucket normalisation's buffers, when `params.normalize` asks for it.
    time: Option<TimeState>,
}

/// The t-bucket normalisation's per-step bucket indices and its running state.
struct TimeState {
    buckets: u32,
    decay: f32,
    sample_bucket: wgpu::Buffer,
    state: wgpu::Buffer,
}

/// How IMBA is set up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ImbaSpec {
    /// The loss's parameters (γ = 0: the dual baseline).
    pub params: ImbaParams,
    /// Read D back every step for the monitor.
    pub monitor: bool,
    /// Timestep buckets of the t-bucket normalisation (when `params` asks for it).
    pub time_buckets: u32,
    /// Decay of each bucket's running mean of D.
    pub time_decay: f32,
}

impl Imba {
    /// IMBA for model `c` on batches of `batch` samples.
    pub fn new(
        device: &wgpu::Device,
        loss: &LossKernels,
        c: &DitConfig,
        batch: u32,
        spec: ImbaSpec,
    ) -> Result<Self> {
        let ImbaSpec {
            params,
            monitor,
            time_buckets: buckets,
            time_decay: decay,
        } = spec;
        params.validate()?;
        let time = if params.normalize == Normalize::TBucket {
            crate::kernels::loss::validate_time_buckets(buckets, decay)?;
            Some(TimeState {
                buckets,
                decay,
                sample_bucket: buffer(device, "time_bucket_of_sample", batch as u64),
                state: buffer(device, "time_bucket_state", 2 * buckets as u64),
            })
        } else {
            None
        };
        Ok(Self {
            dual: DualLoss::new(device, loss, c, batch)?,
            params,
            monitor,
            time,
        })
    }
}

impl Objective for Imba {
    fn repeats(&self) -> u32 {
        2
    }

    fn record(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        loss: &LossKernels,
        acts: &Activations,
        target: Target,
        batch: StepBatch,
    ) -> Result<()> {
        let time = self.time.as_ref().map(|t| TimeBuckets {
            buckets: t.buckets,
            decay: t.decay,
            sample_bucket: (&t.sample_bucket).into(),
            state: (&t.state).into(),
        });
        let how = super::ComputedWeights {
            target,
            params: &self.params,
            time: time.as_ref(),
            across: batch.across,
        };
        self.dual.record(device, encoder, loss, acts, how)
    }

    /// The bucket of each sample's time fraction.
    fn prepare(&self, queue: &wgpu::Queue, inputs: &StepInputs) {
        if let Some(t) = &self.time {
            let b: Vec<u32> = inputs
                .time_fractions
                .iter()
                .map(|&f| time_bucket(f, t.buckets))
                .collect();
            queue.write_buffer(&t.sample_bucket, 0, bytemuck::cast_slice(&b));
        }
    }

    fn carried_state(&self) -> Option<(&wgpu::Buffer, usize)> {
        self.time
            .as_ref()
            .map(|t| (&t.state, 2 * t.buckets as usize))
    }

    fn dout(&self) -> &wgpu::Buffer {
        &self.dual.dout
    }

    fn scalars(&self) -> &wgpu::Buffer {
        &self.dual.scalars
    }

    fn monitored_weights(&self) -> Option<&wgpu::Buffer> {
        self.monitor.then_some(&self.dual.weights)
    }

    /// The loss kernel writes [L, L_c, L_u, mean D].
    fn report(&self, s: [f32; 4], _inputs: &StepInputs) -> [f32; 4] {
        s
    }
}
