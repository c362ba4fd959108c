//! Training objectives: what one step of training feeds the model and how it scores it.
//!
//! Every objective implements [`Objective`]: how many label sets the forward runs (1, or 2
//! for the dual forwards), the label rows of the second half, the loss it records on the
//! forward's output, the gradient it hands to the backward (and, for CCUA, the block output
//! it reads and the gradient it injects there), and the numbers a step reports. The trainer
//! draws one [`StepInputs`] per step and runs any objective the same way.
//!
//! - [`Baseline`]: plain DiT training, one pass with per-sample label dropout;
//! - [`Imba`]: the fused IMBA loss on the dual forward (labels, then ∅); with γ = 0 the
//!   dual baseline, with `Granularity::Sample` the sample-wise ablation;
//! - [`Cbdm`], [`Ccua`]: CBDM's and CCUA's regularisers on a dual forward;
//! - [`Reweighted`]: the dual loss with a weight per sample chosen on the host
//!   ([`weight_rules`]: class-mean D, inverse frequency, the shuffled-D placebo, D's
//!   timestep-bucket and overall means).
//!
//! The math is in docs/design.md.

mod baseline;
mod cbdm;
mod ccua;
mod dual;
mod imba;
mod pair;
pub mod registry;
pub mod reweighted;
mod step;
pub mod weight_rules;

pub use baseline::Baseline;
pub use cbdm::{Cbdm, CbdmPrior, CbdmSpec};
pub use ccua::{Ccua, CcuaSpec};
pub use dual::{ComputedWeights, DualLoss, GivenWeights};
pub use imba::{Imba, ImbaSpec};
pub use pair::{PairKind, PairLoss};
pub use registry::{ObjectiveKind, Registration, Settings, REGISTERED};
pub use reweighted::Reweighted;
pub use step::{
    draw_timestep, draw_timesteps, labels_or_null, model_timesteps, null_row, time_fractions,
    PhiloxStream, StepBatch, StepInputs,
};
pub use weight_rules::{HostWeights, WeightRule};

use crate::kernels::{LossKernels, Target};
use crate::model::{Activations, Tap};
use crate::Result;

/// One training objective on one model and batch size.
pub trait Objective {
    /// Label sets per sample the forward runs: 1, or 2 for the dual forwards.
    fn repeats(&self) -> u32;

    /// Whether the first half's labels are dropped to ∅ per sample (probability
    /// `label_dropout`, Philox stream 1), as plain DiT training does.
    fn drops_labels(&self) -> bool {
        false
    }

    /// Whether step `step` trains the whole batch unconditionally (CBDM).
    fn whole_batch_unconditional(&self, _step: u32) -> bool {
        false
    }

    /// The label rows after the first B: ∅ rows for a dual forward against the
    /// unconditional pass (the default), none for one pass.
    fn second_half(&self, step: u32, batch: u32, null_row: &[u32]) -> Vec<u32> {
        let _ = step;
        if self.repeats() == 2 {
            null_row.repeat(batch as usize)
        } else {
            Vec::new()
        }
    }

    /// Uploads what the step's loss needs from the host (the regularisers' t/T weights).
    fn prepare(&self, _queue: &wgpu::Queue, _inputs: &StepInputs) {}

    /// The block output the forward must copy out (CCUA's features).
    fn tap(&self) -> Option<Tap<'_>> {
        None
    }

    /// Records the loss on `acts.out` after the forward, leaving ∂L/∂out in [`Self::dout`].
    fn record(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        loss: &LossKernels,
        acts: &Activations,
        target: Target,
        batch: StepBatch,
    ) -> Result<()>;

    /// ∂L/∂out for the backward.
    fn dout(&self) -> &wgpu::Buffer;

    /// The gradient the backward must add at the tapped block (CCUA).
    fn inject(&self) -> Option<Tap<'_>> {
        None
    }

    /// Four f32 the step reads back (see [`Self::report`]).
    fn scalars(&self) -> &wgpu::Buffer;

    /// IMBA's weight D per (sample, token), read back for the D monitor.
    fn monitored_weights(&self) -> Option<&wgpu::Buffer> {
        None
    }

    /// State the objective carries from step to step on the device (f32 values), which a
    /// checkpoint must save for a resume to be exact: the t-bucket normalisation's running
    /// means. None for stateless objectives.
    fn carried_state(&self) -> Option<(&wgpu::Buffer, usize)> {
        None
    }

    /// Takes in the step's read-back [`Self::monitored_weights`] (the whole batch's, B·N) after
    /// the step: the host weight rules' running state.
    fn observe(&mut self, d: &[f32], inputs: &StepInputs) -> Result<()> {
        let _ = (d, inputs);
        Ok(())
    }

    /// State the objective carries from step to step on the host, which a checkpoint saves
    /// in place of [`Self::carried_state`] (an objective has one or the other).
    fn host_state(&self) -> Option<Vec<f32>> {
        None
    }

    /// Restores [`Self::host_state`] from a checkpoint.
    fn restore_host_state(&mut self, state: &[f32]) -> Result<()> {
        let _ = state;
        Ok(())
    }

    /// [loss, L_c, L_u, mean D] of the step from its four scalars.
    fn report(&self, scalars: [f32; 4], inputs: &StepInputs) -> [f32; 4];
}
