//! CCUA: a second, null forward with gradient; the unconditional contrastive loss on the ∅
//! rows' features after block ⌊depth/4⌋ and the (t/T)-weighted alignment of the two
//! predictions. The first half keeps DiT's per-sample label dropout.

use super::registry::{BuildArgs, Registration, Unsplittable};
use super::{Objective, PairKind, PairLoss, StepBatch, StepInputs};
use crate::kernels::{LossKernels, Target};
use crate::model::{Activations, DitConfig, Tap};
use crate::Result;

/// CCUA: a ∅ forward with gradient, a contrastive loss on its features and the alignment.
pub const REGISTRATION: Registration = Registration {
    name: "ccua",
    about: "CCUA (Chen et al. 2025): a ∅ forward with gradient, an unconditional \
            contrastive loss on one block's features and the (t/T)-weighted alignment",
    repeats: 2,
    reads: |_, key| key == "label_dropout" || key.starts_with("ccua_"),
    check: |_, batch| {
        if batch < 2 {
            return Err(crate::Error::Config(
                "`batch` must be at least 2 for CCUA (its contrastive loss compares samples)"
                    .into(),
            ));
        }
        Ok(())
    },
    logs_d: false,
    unsplittable: |_| {
        Some(Unsplittable {
            why: "CCUA's contrastive loss takes its negatives from the whole batch",
            fix: "train it in one process",
        })
    },
    build: |a: &BuildArgs| {
        let spec = a.settings.ccua;
        Ok(Box::new(Ccua::new(
            a.device, a.loss, a.model, a.batch, spec,
        )?))
    },
};

/// CCUA's weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CcuaSpec {
    /// α: the weight of the unconditional contrastive loss.
    pub alpha: f32,
    /// γ: the weight of the (t/T)-weighted alignment of ε_c with ε_u.
    pub gamma: f32,
    /// τ: the contrastive temperature.
    pub tau: f32,
}

/// CCUA for one model and batch.
pub struct Ccua {
    pair: PairLoss,
}

impl Ccua {
    /// CCUA for model `c` on batches of `batch` samples, the features those of block
    /// ⌊depth/4⌋.
    pub fn new(
        device: &wgpu::Device,
        loss: &LossKernels,
        c: &DitConfig,
        batch: u32,
        spec: CcuaSpec,
    ) -> Result<Self> {
        let kind = PairKind::Ccua {
            alpha: spec.alpha,
            gamma: spec.gamma,
            tau: spec.tau,
            block: c.depth / 4,
        };
        Ok(Self {
            pair: PairLoss::new(device, loss, c, batch, kind)?,
        })
    }
}

impl Objective for Ccua {
    fn repeats(&self) -> u32 {
        2
    }

    fn drops_labels(&self) -> bool {
        true
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
        _batch: StepBatch,
    ) -> Result<()> {
        self.pair.record(device, encoder, loss, acts, target, true)
    }

    fn dout(&self) -> &wgpu::Buffer {
        &self.pair.dout
    }

    fn inject(&self) -> Option<Tap<'_>> {
        self.pair.inject()
    }

    fn scalars(&self) -> &wgpu::Buffer {
        &self.pair.scalars
    }

    fn report(&self, s: [f32; 4], _inputs: &StepInputs) -> [f32; 4] {
        self.pair.report(s, true)
    }
}
