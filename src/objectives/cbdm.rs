//! CBDM: a second forward with an extra label y' per sample, drawn from the training label
//! frequencies (or uniformly over the label rows), and the (t/T)-weighted pull between the
//! two predictions. With probability `uncond` a whole step trains unconditionally and skips
//! the regulariser.

use super::registry::{no_check, splits, BuildArgs, Registration};
use super::{Objective, PairKind, PairLoss, StepBatch, StepInputs};
use crate::kernels::noise::dropout_threshold;
use crate::kernels::{LossKernels, Target};
use crate::model::{Activations, DitConfig, Tap};
use crate::rng::philox4x32_10;
use crate::Result;

/// Philox stream of CBDM's extra labels y' (counter b) and of its whole-batch unconditional
/// draw (counter B, one per step).
const STREAM_CBDM: u32 = 3;

/// CBDM: a second forward with a drawn label y' and the pull between the two predictions.
pub const REGISTRATION: Registration = Registration {
    name: "cbdm",
    about: "CBDM (Qin et al. 2023): a second forward with a label y' drawn from a prior, \
            and the (t/T)-weighted pull between the two predictions",
    repeats: 2,
    reads: |_, key| key.starts_with("cbdm_"),
    check: no_check,
    logs_d: false,
    unsplittable: splits,
    build: |a: &BuildArgs| {
        let spec = CbdmSpec {
            batch: a.batch,
            seed: a.settings.seed,
            tau: a.settings.cbdm_tau,
            uncond: a.settings.cbdm_uncond,
            prior_rows: match a.settings.cbdm_prior {
                CbdmPrior::Uniform => a.labels.distinct_label_rows(),
                CbdmPrior::Frequency => a.labels.image_label_rows(),
            },
        };
        Ok(Box::new(Cbdm::new(a.device, a.loss, a.model, spec)?))
    },
};

/// CBDM's distribution of the extra label y'.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "workflow", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum CbdmPrior {
    /// The training labels' frequencies: y' is the label (list) of a random training image,
    /// as the official code does when training from scratch.
    Frequency,
    /// Uniform over the label (lists) present in the training data (its fine-tune mode).
    Uniform,
}

/// CBDM's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct CbdmSpec {
    /// Samples per step.
    pub batch: u32,
    /// The run's seed: it draws each sample's extra label y' and the unconditional steps.
    pub seed: u32,
    /// τ: the weight of the pull between the two predictions.
    pub tau: f32,
    /// Probability that a whole step trains unconditionally (and skips the regulariser).
    pub uncond: f32,
    /// The rows y' is drawn from, uniformly: every training image's labels (the frequency
    /// prior) or each distinct label row once (the uniform prior).
    pub prior_rows: Vec<Vec<u32>>,
}

/// CBDM for one model and batch.
pub struct Cbdm {
    pair: PairLoss,
    seed: u32,
    batch: u32,
    /// P(whole batch unconditional).
    uncond: f32,
    /// The rows y' is drawn from, uniformly: every training image's labels (the frequency
    /// prior) or each distinct label row once (the uniform prior).
    prior_rows: Vec<Vec<u32>>,
}

impl Cbdm {
    /// CBDM for model `c` with these settings.
    pub fn new(
        device: &wgpu::Device,
        loss: &LossKernels,
        c: &DitConfig,
        spec: CbdmSpec,
    ) -> Result<Self> {
        let kind = PairKind::Cbdm { tau: spec.tau };
        Ok(Self {
            pair: PairLoss::new(device, loss, c, spec.batch, kind)?,
            seed: spec.seed,
            batch: spec.batch,
            uncond: spec.uncond,
            prior_rows: spec.prior_rows,
        })
    }

    /// Sample b's extra label row y' at step `s`.
    fn prior_row(&self, s: u32, b: u32) -> &[u32] {
        let w = philox4x32_10([b, STREAM_CBDM, 0, 0], [self.seed, s])[0] as u64;
        &self.prior_rows[((w * self.prior_rows.len() as u64) >> 32) as usize]
    }
}

impl Objective for Cbdm {
    fn repeats(&self) -> u32 {
        2
    }

    fn whole_batch_unconditional(&self, s: u32) -> bool {
        let w = philox4x32_10([self.batch, STREAM_CBDM, 0, 0], [self.seed, s])[0];
        // The 24-bit word against the 24-bit threshold, as the label dropout does.
        (w >> 8) < dropout_threshold(self.uncond)
    }

    fn second_half(&self, step: u32, batch: u32, _null_row: &[u32]) -> Vec<u32> {
        (0..batch)
            .flat_map(|b| self.prior_row(step, b).to_vec())
            .collect()
    }

    fn prepare(&self, queue: &wgpu::Queue, inputs: &StepInputs) {
        self.pair.prepare(queue, inputs);
    }

    fn tap(&self) -> Option<Tap<'_>> {
        self.pair.tap()
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
        let regularise = !batch.inputs.unconditional;
        self.pair
            .record(device, encoder, loss, acts, target, regularise)
    }

    fn dout(&self) -> &wgpu::Buffer {
        &self.pair.dout
    }

    fn scalars(&self) -> &wgpu::Buffer {
        &self.pair.scalars
    }

    fn report(&self, s: [f32; 4], inputs: &StepInputs) -> [f32; 4] {
        self.pair.report(s, !inputs.unconditional)
    }
}
