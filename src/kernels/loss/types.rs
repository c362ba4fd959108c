//! The loss launchers' public types: the IMBA parameters, the target, the launch arguments
//! and the workspace.

use super::groups;
use crate::kernels::{ImageGeometry, Region, TokenShape};
use crate::{Error, Result};

/// How the per-token weight D is formed from the unconditional error ε − ε_u.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "workflow", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum DForm {
    /// D = mean_k |ε − ε_u|^γ (the paper's default).
    #[default]
    MeanAbsPow,
    /// D = (mean_k (ε − ε_u)²)^(γ/2).
    PowOfRms,
    /// D = (mean_k (ε − ε_u)²)^γ.
    PowOfMse,
}

/// Optional normalisation of D.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "workflow", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Normalize {
    /// D as computed.
    #[default]
    None,
    /// D /= mean over the batch's tokens of D.
    BatchMean,
    /// D /= the running mean of D among samples of the same timestep bucket (an imba
    /// extension: removes D's dependence on the noise level). Launched with
    /// [`LossKernels::record_imba_time_normalized`](super::LossKernels::record_imba_time_normalized),
    /// which carries the running state.
    TBucket,
}

/// Token-wise D, or the sample-wise ablation (D averaged over the tokens of each sample).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "workflow", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Granularity {
    /// One D per token.
    #[default]
    Token,
    /// One D per sample: the mean of its tokens' D.
    Sample,
}

/// Parameters of the IMBA loss L = λ·L_c + (1−λ)·L_u.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ImbaParams {
    /// γ: the exponent of D (0 gives D ≡ 1, the dual baseline).
    pub gamma: f32,
    /// λ: the mix of the conditional and unconditional losses.
    pub lambda: f32,
    /// How D is formed from the unconditional prediction's error.
    pub form: DForm,
    /// Optional normalisation of D.
    pub normalize: Normalize,
    /// D per token or per sample.
    pub granularity: Granularity,
}

impl Default for ImbaParams {
    /// γ = 0.8, λ = 0.9, token-wise mean |·|^γ, no normalisation.
    fn default() -> Self {
        Self {
            gamma: 0.8,
            lambda: 0.9,
            form: DForm::MeanAbsPow,
            normalize: Normalize::None,
            granularity: Granularity::Token,
        }
    }
}

impl ImbaParams {
    /// γ = 0: D ≡ 1, the dual baseline at equal compute.
    pub fn dual_baseline() -> Self {
        Self {
            gamma: 0.0,
            ..Self::default()
        }
    }

    /// γ ≥ 0 and finite, λ in [0, 1].
    pub fn validate(&self) -> Result<()> {
        if !(self.gamma >= 0.0 && self.gamma.is_finite()) {
            return Err(Error::Param(format!(
                "γ (gamma) must be a finite number ≥ 0, got {}; γ = 0 is the dual baseline",
                self.gamma
            )));
        }
        if !(0.0..=1.0).contains(&self.lambda) {
            return Err(Error::Param(format!(
                "λ (lambda) must be in [0, 1], got {}",
                self.lambda
            )));
        }
        Ok(())
    }

    /// Whether D must be known for all tokens before the fused pass (extra passes).
    pub fn needs_weight_pass(&self) -> bool {
        self.granularity == Granularity::Sample || self.normalize != Normalize::None
    }
}

/// What the prediction is compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// ε (DDPM ε-prediction).
    Epsilon,
    /// v = ε − x0 (rectified flow).
    Velocity,
}

/// Where the target comes from.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// ε regenerated from Philox (seed, step) at each element's flat (B,C,H,W) index of
    /// `geometry`, exactly as the noise kernel drew it. `x0` (B,C,H,W) is needed for
    /// [`TargetKind::Velocity`].
    Philox {
        /// The noise seed of the run.
        seed: u32,
        /// The step (Philox's second key word): each step draws fresh noise.
        step: u32,
        /// The image batch the noise was drawn for.
        geometry: ImageGeometry,
        /// 0 for a whole batch; for a shard of a larger batch (`geometry` its B samples), its
        /// first sample within that batch, as the noise kernel's
        /// [`NoiseArgs::first_sample`](crate::kernels::NoiseArgs::first_sample) placed it.
        /// `first_sample`·C·H·W must be a multiple of 4.
        first_sample: u32,
        /// ε itself, or the velocity ε − x₀.
        kind: TargetKind,
        /// The clean images (B, C, H, W), for the velocity.
        x0: Option<Region<'a>>,
        /// A uniform holding this step's [`StepValues`](crate::kernels::StepValues) (its
        /// `step` equal to `step`), written once per step by a trainer, or `None` (the
        /// launch then makes one from `step`).
        step_values: Option<&'a wgpu::Buffer>,
    },
    /// A target in token layout (B, N, K), (i, j, c) order: for engines with their own noise.
    Explicit(Region<'a>),
}

/// The fields of a Philox target.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PhiloxTarget<'a> {
    pub(crate) seed: u32,
    pub(crate) step: u32,
    pub(crate) geometry: ImageGeometry,
    pub(crate) first_sample: u32,
    pub(crate) kind: TargetKind,
    pub(crate) x0: Option<Region<'a>>,
    pub(crate) step_values: Option<&'a wgpu::Buffer>,
}

/// Where a target's values come from, a whole batch's Philox target being the shard at
/// sample 0: what the launchers match on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Source<'a> {
    Philox(PhiloxTarget<'a>),
    Explicit(Region<'a>),
}

impl<'a> Target<'a> {
    pub(crate) fn source(&self) -> Source<'a> {
        match *self {
            Target::Philox {
                seed,
                step,
                geometry,
                first_sample,
                kind,
                x0,
                step_values,
            } => Source::Philox(PhiloxTarget {
                seed,
                step,
                geometry,
                first_sample,
                kind,
                x0,
                step_values,
            }),
            Target::Explicit(region) => Source::Explicit(region),
        }
    }
}

/// Arguments of [`LossKernels::record_imba`](super::LossKernels::record_imba). Token buffers are (B, N, K) f32. Every operand
/// is a [`Region`] (a buffer and a byte offset: a tensor of an engine's arena); a plain
/// `&wgpu::Buffer` converts with `.into()`. Outputs may not share memory with any other
/// operand: the launch refuses it, naming both.
pub struct ImbaLossArgs<'a> {
    /// The token layout (B, N, K) of every token operand.
    pub shape: TokenShape,
    /// ε_c = ε_θ(x_t, y, t).
    pub pred_cond: Region<'a>,
    /// ε_u = ε_θ(x_t, ∅, t).
    pub pred_uncond: Region<'a>,
    /// The target the predictions are compared with.
    pub target: Target<'a>,
    /// Output: D per token (B, N).
    pub weights: Region<'a>,
    /// Output: ∂L/∂ε_c.
    pub grad_cond: Region<'a>,
    /// Output: ∂L/∂ε_u.
    pub grad_uncond: Region<'a>,
    /// Output: [L, L_c, L_u, mean D], 4 f32.
    pub scalars: Region<'a>,
    /// Scratch for this shape (or a larger one), from [`LossKernels::workspace`](super::LossKernels::workspace).
    pub workspace: &'a LossWorkspace,
}

/// Arguments of [`LossKernels::record_mse`](super::LossKernels::record_mse).
pub struct MseLossArgs<'a> {
    /// The token layout (B, N, K).
    pub shape: TokenShape,
    /// Input: the prediction.
    pub pred: Region<'a>,
    /// The target.
    pub target: Target<'a>,
    /// Output: ∂L/∂pred.
    pub grad: Region<'a>,
    /// Output: [L, L, 0, 1].
    pub scalars: Region<'a>,
    /// Scratch for this shape (or a larger one).
    pub workspace: &'a LossWorkspace,
}

/// Arguments of [`LossKernels::record_token_mse`](super::LossKernels::record_token_mse).
pub struct TokenMseArgs<'a> {
    /// The token layout (B, N, K).
    pub shape: TokenShape,
    /// Input: the prediction.
    pub pred: Region<'a>,
    /// The target.
    pub target: Target<'a>,
    /// Output: mean_k (pred − target)² per token (B, N).
    pub out: Region<'a>,
    /// Scratch for this shape (or a larger one).
    pub workspace: &'a LossWorkspace,
}

/// Scratch of a loss launch: vec4 partial sums (one per workgroup of the portable passes, one
/// per invocation of the vector pass where the device's binding limit allows) followed by
/// one more vec4, the batch sum of D (one buffer for both keeps the family within 8 storage
/// bindings).
pub struct LossWorkspace {
    pub(super) shape: TokenShape,
    pub(super) partials: wgpu::Buffer,
    /// The time-bucket normalisation's per-bucket (sum, count) of one step.
    pub(super) bucket_sums: wgpu::Buffer,
}

impl LossWorkspace {
    /// Scratch for launches of `shape`.
    pub fn new(device: &wgpu::Device, shape: TokenShape) -> Result<Self> {
        shape.validate()?;
        let storage = |label, size| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                // COPY_DST: data-parallel training writes the bucket sums back after adding
                // them up over the processes.
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        let per_invocation = shape.rows() * 16 + 16;
        let partial_bytes = if per_invocation <= device.limits().max_storage_buffer_binding_size {
            per_invocation
        } else {
            groups(shape) * 16 + 16
        };
        Ok(Self {
            shape,
            partials: storage("loss-partials", partial_bytes),
            bucket_sums: storage(
                "loss-bucket-sums",
                8 * super::time_norm::MAX_TIME_BUCKETS as u64,
            ),
        })
    }

    /// The largest shape this workspace serves (by rows B·N).
    pub fn shape(&self) -> TokenShape {
        self.shape
    }

    /// Partial sums the workspace holds besides the batch sum of D.
    pub(super) fn partial_capacity(&self) -> u64 {
        self.partials.size() / 16 - 1
    }
}
