//! The dual loss with a weight per sample chosen on the host ([`super::weight_rules`]): the
//! arms that ask whether balancing by concepts, rather than by timesteps or single samples,
//! helps rare labels. Same forward rows, λ mix and unconditional term as IMBA and the dual
//! baseline; only the conditional term's weights differ.

use super::registry::{no_check, BuildArgs, Registration, Settings, Unsplittable};
use super::weight_rules::{HostWeights, Samples, WeightRule};
use super::{DualLoss, Objective, StepBatch, StepInputs};
use crate::kernels::{time_bucket, ImbaParams, LossKernels, Target};
use crate::model::dit::buffer;
use crate::model::{Activations, DitConfig};
use crate::Result;

/// Philox salt of the shuffled rule's draws.
const SHUFFLE_SALT: u32 = 0x5_4ff1e;

/// The dual loss with host-chosen weights per sample.
pub const REGISTRATION: Registration = Registration {
    name: "reweighted",
    about: "the dual forward with λ's mix and a weight per sample chosen on the host by \
            weight_rule (class-mean D, inverse frequency, the shuffled-D placebo, D's \
            timestep-bucket mean, or D's overall mean)",
    repeats: 2,
    reads: |s, key| match key {
        "lambda" | "weight_rule" => true,
        "gamma" | "d_form" | "time_buckets" | "time_decay" => learns_from_d(s),
        _ => false,
    },
    check: no_check,
    logs_d: false,
    unsplittable: |_| {
        Some(Unsplittable {
            why: "the reweighted objective draws each step's weights on one host for the \
                  whole batch",
            fix: "train it in one process",
        })
    },
    build: |a: &BuildArgs| {
        let spec = ReweightedSpec {
            rule: a.settings.weight_rule,
            counts: &a.labels.label_counts(),
            params: a.settings.imba,
            buckets: a.settings.time_buckets,
            decay: a.settings.time_decay,
            seed: a.settings.seed,
        };
        Ok(Box::new(Reweighted::new(
            a.device, a.loss, a.model, a.batch, &spec,
        )?))
    },
};

/// Whether the rule weighs samples from IMBA's D (all but inverse frequency), so that
/// D's γ, form and timestep buckets shape the run.
fn learns_from_d(s: &Settings) -> bool {
    s.weight_rule != WeightRule::InverseFrequency
}

/// A host-weighted dual loss for one model and batch.
pub struct Reweighted {
    dual: DualLoss,
    rule: HostWeights,
    /// D's parameters (unnormalised) when the rule learns from D.
    d_params: Option<ImbaParams>,
    lambda: f32,
    buckets: u32,
    slots: usize,
    seed: u32,
    /// The step's weights (B, N), written by [`Objective::prepare`].
    given: wgpu::Buffer,
}

/// How a reweighted objective is set up.
pub struct ReweightedSpec<'a> {
    /// Which host rule gives the weights.
    pub rule: WeightRule,
    /// Training images per label (concept).
    pub counts: &'a [usize],
    /// γ, form and λ of IMBA's D (normalisation and granularity are not read).
    pub params: ImbaParams,
    /// Timestep buckets of the running means.
    pub buckets: u32,
    /// Decay of the running means.
    pub decay: f32,
    /// The training seed (the shuffled rule's draws).
    pub seed: u32,
}

impl Reweighted {
    /// A reweighted objective for model `c` on batches of `batch` samples.
    pub fn new(
        device: &wgpu::Device,
        loss: &LossKernels,
        c: &DitConfig,
        batch: u32,
        spec: &ReweightedSpec,
    ) -> Result<Self> {
        spec.params.validate()?;
        let rule = HostWeights::new(spec.rule, spec.counts, spec.buckets, spec.decay, c.tokens())?;
        let d_params = rule.needs_d().then_some(ImbaParams {
            normalize: crate::kernels::Normalize::None,
            granularity: crate::kernels::Granularity::Token,
            ..spec.params
        });
        Ok(Self {
            dual: DualLoss::new(device, loss, c, batch)?,
            rule,
            d_params,
            lambda: spec.params.lambda,
            buckets: spec.buckets,
            slots: c.label_slots as usize,
            seed: spec.seed,
            given: buffer(device, "host_weights", batch as u64 * c.tokens() as u64),
        })
    }

    fn buckets_of(&self, inputs: &StepInputs) -> Vec<u32> {
        let k = self.buckets;
        inputs
            .time_fractions
            .iter()
            .map(|&f| time_bucket(f, k))
            .collect()
    }
}

impl Objective for Reweighted {
    fn repeats(&self) -> u32 {
        2
    }

    /// The step's weights from the rule's state (earlier steps only).
    fn prepare(&self, queue: &wgpu::Queue, inputs: &StepInputs) {
        let buckets = self.buckets_of(inputs);
        let samples = Samples {
            labels: &inputs.labels[..buckets.len() * self.slots],
            slots: self.slots,
            buckets: &buckets,
        };
        let (seed, step) = (self.seed, inputs.step);
        let draw = |b: usize| crate::rng::uniform(seed, SHUFFLE_SALT, step, b as u32);
        let w = self.rule.weights(&samples, draw);
        queue.write_buffer(&self.given, 0, bytemuck::cast_slice(&w));
    }

    fn record(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        loss: &LossKernels,
        acts: &Activations,
        target: Target,
        _batch: StepBatch,
    ) -> Result<()> {
        let given = super::dual::GivenWeights {
            target,
            weights: &self.given,
            lambda: self.lambda,
            d: self.d_params.as_ref(),
        };
        self.dual.record_given(device, encoder, loss, acts, &given)
    }

    fn dout(&self) -> &wgpu::Buffer {
        &self.dual.dout
    }

    fn scalars(&self) -> &wgpu::Buffer {
        &self.dual.scalars
    }

    /// The unnormalised D the rule learns from (None for inverse frequency).
    fn monitored_weights(&self) -> Option<&wgpu::Buffer> {
        self.d_params.is_some().then_some(&self.dual.weights)
    }

    fn observe(&mut self, d: &[f32], inputs: &StepInputs) -> Result<()> {
        if self.d_params.is_none() {
            return Ok(());
        }
        let buckets = self.buckets_of(inputs);
        let samples = Samples {
            labels: &inputs.labels[..buckets.len() * self.slots],
            slots: self.slots,
            buckets: &buckets,
        };
        self.rule.observe(&samples, d)
    }

    fn host_state(&self) -> Option<Vec<f32>> {
        self.d_params.is_some().then(|| self.rule.state())
    }

    fn restore_host_state(&mut self, state: &[f32]) -> Result<()> {
        if self.d_params.is_none() {
            return Ok(());
        }
        self.rule.restore(state)
    }

    /// The loss kernel writes [L, L_c, L_u, mean weight].
    fn report(&self, s: [f32; 4], _inputs: &StepInputs) -> [f32; 4] {
        s
    }
}
