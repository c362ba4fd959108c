//! The losses of CBDM (docs/design.md#cbdm) and CCUA (docs/design.md#ccua) on a dual forward's output: the
//! diffusion MSE of the first half (ε_θ(x_t, y, t) against the target), the pair
//! regulariser between the halves weighted by t/T, and for CCUA the unconditional
//! contrastive loss on the ∅ rows' features of one block. Writes ∂L/∂out for
//! [`Dit::record_backward`](crate::model::Dit::record_backward) and, for CCUA, the
//! features' gradient to inject.

use crate::kernels::{
    ContrastiveArgs, ContrastiveKernels, LossKernels, LossWorkspace, MseLossArgs, PairArgs,
    PairKernels, Target, TokenShape,
};
use crate::model::{Activations, DitConfig, Tap};
use crate::{Error, Result};

/// Which regulariser, with its coefficients.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PairKind {
    /// L = mse(ε_c, ε) + (t/T)·τ·[mse(ε_c, sg ε_y') + ¼·mse(sg ε_c, ε_y')].
    Cbdm {
        /// τ: the weight of the pull toward another label's prediction.
        tau: f32,
    },
    /// L = mse(ε_c, ε) + α·mean_i (t_i/T)·UCL_i + γ·(t/T)·mse(ε_c, ε_u), features of `block`.
    Ccua {
        /// α: the weight of the contrastive term.
        alpha: f32,
        /// γ: the weight of the alignment of ε_c with ε_u.
        gamma: f32,
        /// τ: the contrastive temperature.
        tau: f32,
        /// The block whose output features are contrasted.
        block: u32,
    },
}

impl PairKind {
    /// (ka, kb) of the pair kernel: the pulls of each half toward the other.
    pub(crate) fn pulls(self) -> (f32, f32) {
        match self {
            PairKind::Cbdm { tau } => (tau, 0.25 * tau),
            PairKind::Ccua { gamma, .. } => (gamma, gamma),
        }
    }

    /// The loss from the three scalars [L_diff, R, U]: R = (1/E)Σ(t/T)(a − b)², U = the
    /// weighted mean UCL. CBDM's two stop-gradient terms add up to 1.25·τ·R.
    pub fn total(self, s: [f32; 3]) -> f32 {
        s[0] + self.regulariser(s)
    }

    /// The regulariser's part of the loss.
    pub fn regulariser(self, s: [f32; 3]) -> f32 {
        match self {
            PairKind::Cbdm { tau } => 1.25 * tau * s[1],
            PairKind::Ccua { alpha, gamma, .. } => gamma * s[1] + alpha * s[2],
        }
    }
}

struct Contrastive {
    kernels: ContrastiveKernels,
    /// The residual stream after the tapped block (R·N·D) and its gradient (the first B
    /// rows stay zero: the loss reads only the ∅ rows).
    features: wgpu::Buffer,
    feature_grad: wgpu::Buffer,
    gram: wgpu::Buffer,
    coef: wgpu::Buffer,
    scalars: wgpu::Buffer,
}

/// Buffers and kernels of the CBDM / CCUA loss for one model and batch.
pub struct PairLoss {
    /// Which regulariser, with its coefficients.
    pub kind: PairKind,
    shape: TokenShape,
    dim: u32,
    pair: PairKernels,
    workspace: LossWorkspace,
    mse_scalars: wgpu::Buffer,
    partials: wgpu::Buffer,
    pair_scalars: wgpu::Buffer,
    contrastive: Option<Contrastive>,
    /// t/T per sample (B), set by the caller before recording.
    pub weight: wgpu::Buffer,
    /// [L_diff, R, U, 0]: what [`PairKind::total`] takes.
    pub scalars: wgpu::Buffer,
    /// ∂L/∂out (2B·N, p²·C).
    pub dout: wgpu::Buffer,
}

fn zeros(device: &wgpu::Device, label: &str, bytes: u64) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(16),
        usage: crate::gpu::storage_usage(),
        mapped_at_creation: false,
    })
}

impl PairLoss {
    /// The buffers and kernels of model `c` on batches of `batch` samples.
    pub fn new(
        device: &wgpu::Device,
        loss: &LossKernels,
        c: &DitConfig,
        batch: u32,
        kind: PairKind,
    ) -> Result<Self> {
        let shape = TokenShape::new(batch, c.tokens(), c.token_dim());
        shape.validate()?;
        let e = shape.elements();
        let contrastive = match kind {
            PairKind::Cbdm { .. } => None,
            PairKind::Ccua { block, .. } => {
                if block >= c.depth {
                    return Err(Error::Config(format!(
                        "CCUA reads block {block} but the model has {} blocks",
                        c.depth
                    )));
                }
                if batch < 2 {
                    return Err(Error::Config(
                        "CCUA's contrastive loss needs a batch of ≥ 2 (pairs of samples)".into(),
                    ));
                }
                let stream = 8 * batch as u64 * c.tokens() as u64 * c.dim as u64;
                let m = ContrastiveKernels::matrix_bytes(batch);
                Some(Contrastive {
                    kernels: ContrastiveKernels::new(device)?,
                    features: zeros(device, "ccua_features", stream),
                    feature_grad: zeros(device, "ccua_feature_grad", stream),
                    gram: zeros(device, "ccua_gram", m),
                    coef: zeros(device, "ccua_coef", m),
                    scalars: zeros(device, "ccua_scalars", 16),
                })
            }
        };
        Ok(Self {
            kind,
            shape,
            dim: c.dim,
            pair: PairKernels::new(device)?,
            workspace: loss.workspace(device, shape)?,
            mse_scalars: zeros(device, "mse_scalars", 16),
            partials: zeros(
                device,
                "pair_partials",
                PairKernels::partials_bytes(e as u32),
            ),
            pair_scalars: zeros(device, "pair_scalars", 16),
            contrastive,
            weight: zeros(device, "pair_weight", 4 * batch as u64),
            scalars: zeros(device, "pair_loss_scalars", 16),
            dout: zeros(device, "dout", 8 * e),
        })
    }

    /// Uploads the step's t/T, the regulariser's weight per sample.
    pub fn prepare(&self, queue: &wgpu::Queue, inputs: &super::StepInputs) {
        let w = bytemuck::cast_slice(&inputs.time_fractions);
        queue.write_buffer(&self.weight, 0, w);
    }

    /// Where the forward must copy the tapped block's output (CCUA), else None.
    pub fn tap(&self) -> Option<Tap<'_>> {
        match (self.kind, &self.contrastive) {
            (PairKind::Ccua { block, .. }, Some(c)) => Some(Tap {
                block,
                buffer: &c.features,
            }),
            _ => None,
        }
    }

    /// The gradient the backward must inject at the tapped block (CCUA), else None.
    pub fn inject(&self) -> Option<Tap<'_>> {
        match (self.kind, &self.contrastive) {
            (PairKind::Ccua { block, .. }, Some(c)) => Some(Tap {
                block,
                buffer: &c.feature_grad,
            }),
            _ => None,
        }
    }

    /// Records the loss after a forward tapped with [`Self::tap`]. `regularise` false skips
    /// the regulariser (CBDM's whole-batch unconditional steps): the second half then gets
    /// no gradient.
    pub fn record(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        loss: &LossKernels,
        acts: &Activations,
        target: Target,
        regularise: bool,
    ) -> Result<()> {
        if acts.repeats != 2 || acts.batch != self.shape.batch {
            return Err(Error::Shape(format!(
                "the pair loss needs activations of a dual forward (repeats 2) of batch {}; got \
                 repeats {} and batch {}",
                self.shape.batch, acts.repeats, acts.batch
            )));
        }
        loss.record_mse(
            device,
            encoder,
            &MseLossArgs {
                shape: self.shape,
                pred: (&acts.out).into(),
                target,
                grad: (&self.dout).into(),
                scalars: (&self.mse_scalars).into(),
                workspace: &self.workspace,
            },
        )?;
        let (ka, kb) = if regularise {
            self.kind.pulls()
        } else {
            (0.0, 0.0)
        };
        self.pair.record(
            device,
            encoder,
            &PairArgs {
                half: self.shape.elements() as u32,
                per_sample: self.shape.tokens * self.shape.token_dim,
                pred: (&acts.out).into(),
                weight: (&self.weight).into(),
                ka,
                kb,
                accumulate: true,
                dout: (&self.dout).into(),
                partials: (&self.partials).into(),
                scalars: (&self.pair_scalars).into(),
            },
        )?;
        encoder.copy_buffer_to_buffer(&self.mse_scalars, 0, &self.scalars, 0, 4);
        encoder.copy_buffer_to_buffer(&self.pair_scalars, 0, &self.scalars, 4, 4);
        if let (PairKind::Ccua { alpha, tau, .. }, Some(c)) = (self.kind, &self.contrastive) {
            let (b, features) = (self.shape.batch, self.shape.tokens * self.dim);
            c.kernels.record(
                device,
                encoder,
                &ContrastiveArgs {
                    batch: b,
                    features,
                    feats: (&c.features).into(),
                    base: b * features,
                    weight: (&self.weight).into(),
                    tau,
                    scale: if regularise { alpha } else { 0.0 },
                    grad: (&c.feature_grad).into(),
                    out_base: b * features,
                    accumulate: false,
                    gram: (&c.gram).into(),
                    coef: (&c.coef).into(),
                    scalars: (&c.scalars).into(),
                },
            )?;
            encoder.copy_buffer_to_buffer(&c.scalars, 0, &self.scalars, 8, 4);
        }
        Ok(())
    }

    /// [loss, L_diff, the regulariser, 1] from the scalars [L_diff, R, U, 0]; without the
    /// regulariser (CBDM's unconditional steps) it counts 0.
    pub fn report(&self, s: [f32; 4], regularise: bool) -> [f32; 4] {
        let reg = if regularise {
            self.kind.regulariser([s[0], s[1], s[2]])
        } else {
            0.0
        };
        [s[0] + reg, s[0], reg, 1.0]
    }
}
