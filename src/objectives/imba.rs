//! IMBA: the fused concept-balancing loss on the dual forward (labels, then ∅). γ = 0 is the
//! dual baseline (D ≡ 1, the same compute); `Granularity::Sample` the sample-wise ablation.

use super::{DualLoss, Objective, StepInputs};
use crate::kernels::{ImbaParams, LossKernels, Target};
use crate::model::{Activations, DitConfig};
use crate::Result;

/// IMBA (or the dual baseline) for one model and batch.
pub struct Imba {
    dual: DualLoss,
    params: ImbaParams,
    /// Whether the step reads D back for the D monitor (IMBA; not the dual baseline).
    monitor: bool,
}

impl Imba {
    pub fn new(
        device: &wgpu::Device,
        loss: &LossKernels,
        c: &DitConfig,
        batch: u32,
        (params, monitor): (ImbaParams, bool),
    ) -> Result<Self> {
        params.validate()?;
        Ok(Self {
            dual: DualLoss::new(device, loss, c, batch)?,
            params,
            monitor,
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
        _inputs: &StepInputs,
    ) -> Result<()> {
        self.dual
            .record(device, encoder, loss, acts, target, &self.params)
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
