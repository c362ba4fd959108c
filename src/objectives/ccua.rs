//! CCUA: a second, null forward with gradient; the unconditional contrastive loss on the ∅
//! rows' features after block ⌊depth/4⌋ and the (t/T)-weighted alignment of the two
//! predictions. The first half keeps DiT's per-sample label dropout.

use super::{Objective, PairKind, PairLoss, StepInputs};
use crate::kernels::{LossKernels, Target};
use crate::model::{Activations, DitConfig, Tap};
use crate::Result;

/// CCUA for one model and batch.
pub struct Ccua {
    pair: PairLoss,
}

impl Ccua {
    /// `(alpha, gamma, tau)`: the contrastive weight, the alignment weight, the temperature.
    pub fn new(
        device: &wgpu::Device,
        loss: &LossKernels,
        c: &DitConfig,
        batch: u32,
        (alpha, gamma, tau): (f32, f32, f32),
    ) -> Result<Self> {
        let kind = PairKind::Ccua {
            alpha,
            gamma,
            tau,
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
        let w = bytemuck::cast_slice(&inputs.time_fractions);
        queue.write_buffer(&self.pair.weight, 0, w);
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
        _inputs: &StepInputs,
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
