//! The IMBA loss on a dual forward's output.

use crate::model::dit::buffer;
use crate::model::{Activations, DitConfig};
use crate::{Error, Result};

/// The IMBA loss on a dual forward's output: splits `acts.out` into ε_c (rows 0..B) and ε_u
/// (rows B..2B), runs the fused loss, and joins its two gradients into `dout` for
/// [`Dit::record_backward`](crate::model::Dit::record_backward).
pub struct DualLoss {
    shape: crate::kernels::TokenShape,
    pred_cond: wgpu::Buffer,
    pred_uncond: wgpu::Buffer,
    /// D per token (B, N).
    pub weights: wgpu::Buffer,
    grad_cond: wgpu::Buffer,
    grad_uncond: wgpu::Buffer,
    /// [L, L_c, L_u, mean D].
    pub scalars: wgpu::Buffer,
    workspace: crate::kernels::LossWorkspace,
    /// ∂L/∂out (2B·N, p²·C).
    pub dout: wgpu::Buffer,
}

/// What [`DualLoss::record_given`] weighs the conditional term with.
#[derive(Clone, Copy)]
pub struct GivenWeights<'a> {
    /// The target the predictions are compared with.
    pub target: crate::kernels::Target<'a>,
    /// Per-token weights (B, N), read.
    pub weights: &'a wgpu::Buffer,
    /// The mix λ·L_c + (1 − λ)·L_u.
    pub lambda: f32,
    /// IMBA's parameters when its unnormalised D is to be computed alongside (into
    /// [`DualLoss::weights`]), for rules that learn from it.
    pub d: Option<&'a crate::kernels::ImbaParams>,
}

/// How [`DualLoss::record`] computes IMBA's D.
pub struct ComputedWeights<'a, 't> {
    /// The target the predictions are compared with.
    pub target: crate::kernels::Target<'a>,
    /// IMBA's parameters.
    pub params: &'a crate::kernels::ImbaParams,
    /// With the t-bucket normalisation: its state.
    pub time: Option<&'a crate::kernels::TimeBuckets<'a>>,
    /// For a data-parallel shard of the t-bucket normalisation: the sum of its per-bucket sums
    /// over the ranks.
    pub across: Option<&'t mut dyn crate::kernels::ShardSum>,
}

impl DualLoss {
    /// The dual loss's buffers for model `c` on batches of `batch` samples.
    pub fn new(
        device: &wgpu::Device,
        loss: &crate::kernels::LossKernels,
        c: &DitConfig,
        batch: u32,
    ) -> Result<Self> {
        let shape = crate::kernels::TokenShape::new(batch, c.tokens(), c.token_dim());
        shape.validate()?;
        let e = shape.elements();
        Ok(Self {
            shape,
            pred_cond: buffer(device, "pred_cond", e),
            pred_uncond: buffer(device, "pred_uncond", e),
            weights: buffer(device, "imba_weights", shape.rows()),
            grad_cond: buffer(device, "grad_cond", e),
            grad_uncond: buffer(device, "grad_uncond", e),
            scalars: buffer(device, "loss_scalars", 4),
            workspace: loss.workspace(device, shape)?,
            dout: buffer(device, "dout", 2 * e),
        })
    }

    /// The dual loss with the per-token weights in `given` (B, N) in place of D; with `d`,
    /// IMBA's unnormalised D of these parameters is computed into [`Self::weights`] first
    /// (what host weight rules learn from; its gradients are overwritten).
    pub fn record_given(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        loss: &crate::kernels::LossKernels,
        acts: &Activations,
        given: &GivenWeights,
    ) -> Result<()> {
        let GivenWeights {
            target,
            weights: given,
            lambda,
            d,
        } = *given;
        self.split_predictions(encoder, acts)?;
        if let Some(params) = d {
            let args = self.loss_args(target, (&self.weights).into());
            loss.record_imba(device, encoder, &args, params)?;
        }
        let args = self.loss_args(target, given.into());
        loss.record_weighted(device, encoder, &args, lambda)?;
        self.join_gradients(encoder);
        Ok(())
    }

    /// ε_c and ε_u, the two halves of the dual forward's output, into buffers of their own.
    fn split_predictions(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        acts: &Activations,
    ) -> Result<()> {
        self.check(acts)?;
        let bytes = self.shape.elements() * 4;
        encoder.copy_buffer_to_buffer(&acts.out, 0, &self.pred_cond, 0, bytes);
        encoder.copy_buffer_to_buffer(&acts.out, bytes, &self.pred_uncond, 0, bytes);
        Ok(())
    }

    /// ∂L/∂ε_c and ∂L/∂ε_u, side by side, as the gradient of the forward's output.
    fn join_gradients(&self, encoder: &mut wgpu::CommandEncoder) {
        let bytes = self.shape.elements() * 4;
        encoder.copy_buffer_to_buffer(&self.grad_cond, 0, &self.dout, 0, bytes);
        encoder.copy_buffer_to_buffer(&self.grad_uncond, 0, &self.dout, bytes, bytes);
    }

    /// The loss kernels' arguments on this loss's buffers, with `weights`.
    fn loss_args<'a>(
        &'a self,
        target: crate::kernels::Target<'a>,
        weights: crate::kernels::Region<'a>,
    ) -> crate::kernels::ImbaLossArgs<'a> {
        crate::kernels::ImbaLossArgs {
            shape: self.shape,
            pred_cond: (&self.pred_cond).into(),
            pred_uncond: (&self.pred_uncond).into(),
            target,
            weights,
            grad_cond: (&self.grad_cond).into(),
            grad_uncond: (&self.grad_uncond).into(),
            scalars: (&self.scalars).into(),
            workspace: &self.workspace,
        }
    }

    fn check(&self, acts: &Activations) -> Result<()> {
        if acts.repeats != 2 || acts.batch != self.shape.batch {
            return Err(Error::Shape(format!(
                "the dual loss needs activations of a dual forward (repeats 2) of batch {}; got \
                 repeats {} and batch {}",
                self.shape.batch, acts.repeats, acts.batch
            )));
        }
        Ok(())
    }

    /// Records the dual loss with IMBA's weights, D computed by the launch (see
    /// [`Self::record_given`] for weights the caller gives).
    pub fn record(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        loss: &crate::kernels::LossKernels,
        acts: &Activations,
        how: ComputedWeights,
    ) -> Result<()> {
        let ComputedWeights {
            target,
            params,
            time,
            across,
        } = how;
        self.split_predictions(encoder, acts)?;
        let args = self.loss_args(target, (&self.weights).into());
        match time {
            Some(t) => {
                loss.record_imba_time_normalized(device, encoder, &args, params, t, across)?
            }
            None => loss.record_imba(device, encoder, &args, params)?,
        }
        self.join_gradients(encoder);
        Ok(())
    }
}
