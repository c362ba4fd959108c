//! Launcher of `shaders/time_norm.wgsl`: IMBA's D divided by its running mean within the
//! sample's timestep bucket (an imba extension; docs/design.md#timestep-normalised-d).

use crate::kernels::common::{Family, Operand};
use crate::kernels::TokenShape;
use crate::{Error, Result};

/// The most timestep buckets one launch handles (one invocation per bucket).
pub const MAX_TIME_BUCKETS: u32 = 64;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
pub(crate) struct TimeNormParams {
    pub(crate) batch: u32,
    pub(crate) tokens: u32,
    pub(crate) buckets: u32,
    pub(crate) decay: f32,
}

/// The running state of the time-bucket normalisation, owned by the caller and carried from
/// step to step (a training checkpoint must save it for a resume to be exact).
#[derive(Clone, Copy, Debug)]
pub struct TimeBuckets<'a> {
    /// Number of buckets K, 1..=[`MAX_TIME_BUCKETS`].
    pub buckets: u32,
    /// Decay β of the running means, in [0, 1).
    pub decay: f32,
    /// The bucket of each sample, B u32 each < K (see [`time_bucket`]).
    pub sample_bucket: crate::kernels::Region<'a>,
    /// (m_k, w_k) per bucket, 2·K f32; zeros before the first step.
    pub state: crate::kernels::Region<'a>,
}

impl TimeBuckets<'_> {
    /// K in 1..=64 and β in [0, 1).
    pub fn validate(&self) -> Result<()> {
        validate(self.buckets, self.decay)
    }
}

/// Checks a bucket count and decay.
pub fn validate(buckets: u32, decay: f32) -> Result<()> {
    if !(1..=MAX_TIME_BUCKETS).contains(&buckets) {
        return Err(Error::Param(format!(
            "the time-bucket normalisation needs 1 to {MAX_TIME_BUCKETS} buckets, got {buckets}"
        )));
    }
    if !(0.0..1.0).contains(&decay) {
        return Err(Error::Param(format!(
            "the time-bucket decay must be in [0, 1), got {decay}; 0.99 averages about the \
             last hundred batches of a bucket"
        )));
    }
    Ok(())
}

/// The bucket of a sample at time fraction `fraction` (DDPM t/T, or flow time t) in [0, 1):
/// ⌊fraction·K⌋, clamped to K − 1.
pub fn time_bucket(fraction: f32, buckets: u32) -> u32 {
    let k = (fraction.max(0.0) as f64 * buckets as f64).floor() as u32;
    k.min(buckets.saturating_sub(1))
}

/// The caller's hook that adds up a few f32 of a device buffer over every process that holds
/// a shard of one batch, in place: what data-parallel training runs between the passes of a
/// launch that needs the whole batch (the time-bucket normalisation's per-bucket sums). The
/// launcher only records and calls the hook; the hook, being the caller's, may finish and
/// submit `encoder` and continue in a new one. Every process must add in the same (rank)
/// order, so that all of them get the same bits.
pub trait ShardSum {
    /// Adds `values` (`count` f32) up over every process, leaving the total in `values`.
    fn sum(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        values: &wgpu::Buffer,
        count: usize,
    ) -> Result<()>;
}

/// What one time-bucket normalisation reads and writes.
pub(crate) struct TimeNormArgs<'a> {
    pub(crate) shape: TokenShape,
    /// D (B, N), divided in place by its bucket's running mean.
    pub(crate) weights: crate::kernels::Region<'a>,
    /// The buckets: each sample's, their running means, the decay.
    pub(crate) time: &'a TimeBuckets<'a>,
    /// Scratch of the per-bucket sums (2·K f32).
    pub(crate) sums: &'a wgpu::Buffer,
}

/// Compiled pipelines of the time-bucket normalisation: the per-bucket sums, then the update
/// and division.
pub(crate) struct TimeNormKernel {
    family: Family,
}

impl TimeNormKernel {
    pub(crate) fn new(device: &wgpu::Device) -> Result<Self> {
        let entries = ["time_norm_sums", "time_norm_apply"];
        Ok(Self {
            family: Family::new(device, "time_norm", &entries)?,
        })
    }

    /// Records the update of the running means and the division of the weights, the
    /// per-bucket sums added up over the shards by `across` first.
    pub(crate) fn record(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &TimeNormArgs,
        across: Option<&mut dyn ShardSum>,
    ) -> Result<()> {
        let &TimeNormArgs {
            shape,
            weights,
            time: t,
            sums,
        } = args;
        shape.validate()?;
        t.validate()?;
        let params = TimeNormParams {
            batch: shape.batch,
            tokens: shape.tokens,
            buckets: t.buckets,
            decay: t.decay,
        };
        let operands = [
            Operand::buffer("weights", weights, shape.rows() * 4),
            Operand::buffer("sample_bucket", t.sample_bucket, shape.batch as u64 * 4),
            Operand::buffer("state", t.state, t.buckets as u64 * 8),
            Operand::buffer("sums", sums, t.buckets as u64 * 8),
        ];
        // One workgroup each: the buckets' invocations (then, applying, a strided pass over
        // the tokens).
        let launch = |entry, encoder: &mut wgpu::CommandEncoder| {
            self.family
                .launch(device, encoder, entry, 1, |_| params, &operands)
        };
        launch("time_norm_sums", encoder)?;
        if let Some(across) = across {
            across.sum(encoder, sums, 2 * t.buckets as usize)?;
        }
        launch("time_norm_apply", encoder)
    }
}
