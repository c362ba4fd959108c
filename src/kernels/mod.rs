//! Typed launchers, one module per kernel family. Each validates shapes, parameters, buffer
//! sizes and device limits, returns an [`Error`] instead of panicking, and
//! records its dispatches into the caller's `wgpu::CommandEncoder`: this is the API for
//! engines that bring their own device and buffers.

pub mod activation;
pub mod adaln;
pub mod attention;
pub(crate) mod common;
pub mod contrastive;
pub mod embed;
mod linear_texture;
pub mod loss;
pub mod matmul;
pub mod noise;
pub mod optim;
pub mod pair;
pub mod reduce;
mod step_values;
#[cfg(test)]
mod uniform_layout;

pub use crate::gpu::paths::{Paths, PATHS_ENV};
pub use activation::{Activation, ActivationArgs, ActivationBackwardArgs, ActivationKernels};
pub use adaln::{
    AdaLnKernels, AdaLnPath, Columns, GatedResidualArgs, GatedResidualBackwardArgs, LnModulateArgs,
    LnModulateBackwardArgs, Modulation, SegmentSumsArgs, Stream,
};
pub use attention::{
    AttentionArgs, AttentionBackwardArgs, AttentionKernels, AttentionPath, AttentionShape,
};
pub use common::{
    dispatches_recorded, launch_objects_created, release_unused_bindings, required_limits, Region,
    Write,
};
pub use contrastive::{ContrastiveArgs, ContrastiveKernels};
pub use embed::{
    ConditionArgs, EmbedKernels, FoldArgs, LabelBackwardArgs, Labels, TokensArgs, NO_LABEL,
};
pub use loss::{
    time_bucket, DForm, FusedPath, Granularity, ImbaLossArgs, ImbaParams, LossKernels,
    LossWorkspace, MseLossArgs, Normalize, ShardSum, Target, TargetKind, TimeBuckets, TokenMseArgs,
    MAX_TIME_BUCKETS,
};
pub use matmul::{Layout, MatmulArgs, MatmulKernels, MatmulPath, Tile};
pub use noise::{
    LabelDropoutArgs, NoiseArgs, NoiseKernels, NormalsArgs, PhiloxWordsArgs, Schedule,
};
pub use optim::{AdamW, AdamWArgs, EmaArgs, GradNormArgs, OptimKernels};
pub use pair::{PairArgs, PairKernels};
pub use reduce::{ReduceArgs, ReduceKernel};
pub use step_values::StepValues;

use crate::{Error, Result};

/// An image batch (B, C, H, W) cut into p×p patches: N = (H/p)(W/p) tokens of K = p²·C values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageGeometry {
    /// Images B.
    pub batch: u32,
    /// Channels C.
    pub channels: u32,
    /// Height H in pixels (a multiple of `patch`).
    pub height: u32,
    /// Width W in pixels (a multiple of `patch`).
    pub width: u32,
    /// Patch side p.
    pub patch: u32,
}

impl ImageGeometry {
    /// Checks that every size is non-zero, the patch divides the image, and B·C·H·W fits the
    /// kernels' 32-bit indices.
    pub fn validate(&self) -> Result<()> {
        let ImageGeometry {
            batch,
            channels,
            height,
            width,
            patch,
        } = *self;
        if batch == 0 || channels == 0 || height == 0 || width == 0 || patch == 0 {
            return Err(Error::Shape(format!(
                "every size must be at least 1, got B={batch} C={channels} H={height} W={width} p={patch}"
            )));
        }
        if height % patch != 0 || width % patch != 0 {
            return Err(Error::Shape(format!(
                "patch size {patch} must divide the image size {height}×{width}; crop or pad the images"
            )));
        }
        if self.elements() > u32::MAX as u64 {
            return Err(Error::Shape(format!(
                "B·C·H·W = {} exceeds 2^32 elements; split the batch",
                self.elements()
            )));
        }
        Ok(())
    }

    /// B·C·H·W.
    pub fn elements(&self) -> u64 {
        self.batch as u64 * self.channels as u64 * self.height as u64 * self.width as u64
    }

    /// The token shape (B, N, K) of this geometry.
    pub fn token_shape(&self) -> TokenShape {
        TokenShape {
            batch: self.batch,
            tokens: (self.height / self.patch) * (self.width / self.patch),
            token_dim: self.channels * self.patch * self.patch,
        }
    }
}

/// The Philox counter at which sample `first_sample` of a batch of `g`'s images starts:
/// first_sample·C·H·W / 4 (each counter gives four normals, in flat (B,C,H,W) order). A shard
/// must start on a whole counter, and the whole batch must stay within 2^32 elements.
pub fn shard_quad_base(g: ImageGeometry, first_sample: u32) -> Result<u32> {
    let image = g.channels as u64 * g.height as u64 * g.width as u64;
    let start = first_sample as u64 * image;
    if !start.is_multiple_of(4) {
        return Err(Error::Shape(format!(
            "a shard starting at sample {first_sample} of images of {image} values does not start \
             on a Philox quad (4 values); use shards whose size times C·H·W is a multiple of 4"
        )));
    }
    if start + g.elements() > u32::MAX as u64 {
        return Err(Error::Shape(format!(
            "samples {first_sample}.. of {image} values each pass 2^32 elements; split the batch"
        )));
    }
    Ok((start / 4) as u32)
}

/// Token layout (B, N, K).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenShape {
    /// Samples B.
    pub batch: u32,
    /// Tokens per sample N.
    pub tokens: u32,
    /// Values per token K.
    pub token_dim: u32,
}

impl TokenShape {
    /// The shape (B, N, K).
    pub fn new(batch: u32, tokens: u32, token_dim: u32) -> Self {
        Self {
            batch,
            tokens,
            token_dim,
        }
    }

    /// Checks for zero sizes and 32-bit index overflow.
    pub fn validate(&self) -> Result<()> {
        if self.batch == 0 || self.tokens == 0 || self.token_dim == 0 {
            return Err(Error::Shape(format!(
                "token shape (B, N, K) = ({}, {}, {}) has a zero size",
                self.batch, self.tokens, self.token_dim
            )));
        }
        if self.elements() > u32::MAX as u64 {
            return Err(Error::Shape(format!(
                "B·N·K = {} exceeds 2^32 elements; split the batch",
                self.elements()
            )));
        }
        Ok(())
    }

    /// B·N.
    pub fn rows(&self) -> u64 {
        self.batch as u64 * self.tokens as u64
    }

    /// B·N·K.
    pub fn elements(&self) -> u64 {
        self.rows() * self.token_dim as u64
    }
}
