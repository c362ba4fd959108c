//! Plain DiT training: one pass of B rows whose labels were dropped to ∅ per sample, and the
//! MSE of the prediction against the target.

use super::registry::{no_check, splits, BuildArgs, Registration};
use super::{Objective, StepBatch, StepInputs};
use crate::kernels::{LossKernels, LossWorkspace, MseLossArgs, Target, TokenShape};
use crate::model::{dit::buffer, Activations, DitConfig};
use crate::Result;

/// Plain DiT training: one pass, labels dropped per sample.
pub const REGISTRATION: Registration = Registration {
    name: "baseline",
    about: "plain DiT training: one pass of B rows, labels dropped to ∅ with label_dropout",
    repeats: 1,
    reads: |_, key| key == "label_dropout",
    check: no_check,
    logs_d: false,
    unsplittable: splits,
    build: |a: &BuildArgs| Ok(Box::new(Baseline::new(a.device, a.loss, a.model, a.batch)?)),
};

/// The baseline's buffers for one model and batch.
pub struct Baseline {
    shape: TokenShape,
    workspace: LossWorkspace,
    grad: wgpu::Buffer,
    scalars: wgpu::Buffer,
}

impl Baseline {
    /// The baseline's buffers for model `c` on batches of `batch` samples.
    pub fn new(
        device: &wgpu::Device,
        loss: &LossKernels,
        c: &DitConfig,
        batch: u32,
    ) -> Result<Self> {
        let shape = TokenShape::new(batch, c.tokens(), c.token_dim());
        shape.validate()?;
        Ok(Self {
            shape,
            workspace: loss.workspace(device, shape)?,
            grad: buffer(device, "grad_out", shape.elements()),
            scalars: buffer(device, "loss_scalars", 4),
        })
    }
}

impl Objective for Baseline {
    fn repeats(&self) -> u32 {
        1
    }

    fn drops_labels(&self) -> bool {
        true
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
        let args = MseLossArgs {
            shape: self.shape,
            pred: (&acts.out).into(),
            target,
            grad: (&self.grad).into(),
            scalars: (&self.scalars).into(),
            workspace: &self.workspace,
        };
        loss.record_mse(device, encoder, &args)
    }

    fn dout(&self) -> &wgpu::Buffer {
        &self.grad
    }

    fn scalars(&self) -> &wgpu::Buffer {
        &self.scalars
    }

    /// The MSE kernel writes [L, L, 0, 1].
    fn report(&self, s: [f32; 4], _inputs: &StepInputs) -> [f32; 4] {
        s
    }
}
