//! Launcher of `shaders/pair.wgsl`: the regulariser between the two halves of a dual
//! forward (CBDM's and CCUA's), its gradients into both halves and its value.

use super::common::{self, Family, Operand, Region};
use crate::{Error, Result};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
pub(crate) struct PairParams {
    pub(crate) half: u32,
    pub(crate) per_sample: u32,
    pub(crate) ka: f32,
    pub(crate) kb: f32,
    pub(crate) inv_count: f32,
    pub(crate) accumulate: u32,
    pub(crate) groups_x: u32,
    pub(crate) partial_count: u32,
}

/// Arguments of [`PairKernels::record`].
pub struct PairArgs<'a> {
    /// Values per half, E = B·N·K.
    pub half: u32,
    /// Values per sample, N·K (E a multiple of it).
    pub per_sample: u32,
    /// a (E values) then b (E values): a dual forward's output.
    pub pred: Region<'a>,
    /// One weight per sample (t/T), B values.
    pub weight: Region<'a>,
    /// Coefficient of the pull of a toward sg(b).
    pub ka: f32,
    /// Coefficient of the pull of b toward sg(a).
    pub kb: f32,
    /// Add a's gradient to what `dout` holds (the diffusion MSE's gradient) instead of
    /// overwriting it; b's half is always overwritten.
    pub accumulate: bool,
    /// Output: ∂/∂pred, 2E values.
    pub dout: Region<'a>,
    /// Scratch of [`PairKernels::partials_bytes`] bytes.
    pub partials: Region<'a>,
    /// Output: \[R\] with R = (1/E)·Σ w·(a − b)² (one f32; 16 bytes are bound).
    pub scalars: Region<'a>,
}

/// Compiled pair pipelines for one device.
pub struct PairKernels {
    family: Family,
}

impl PairKernels {
    /// The pair-loss pipelines for `device`.
    pub fn new(device: &wgpu::Device) -> Result<Self> {
        let entries = ["pair_grad", "pair_finalize"];
        Ok(Self {
            family: Family::new(device, "pair", &entries)?,
        })
    }

    /// Bytes of the partial-sum scratch for halves of `half` values.
    pub fn partials_bytes(half: u32) -> u64 {
        half.div_ceil(64).max(1) as u64 * 16
    }

    /// Records the pair loss (CBDM's or CCUA's regulariser) and its gradient.
    pub fn record(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        a: &PairArgs,
    ) -> Result<()> {
        if a.half == 0 || a.per_sample == 0 || !a.half.is_multiple_of(a.per_sample) {
            return Err(Error::Shape(format!(
                "pair loss: halves of {} values with {} per sample; both must be non-zero and \
                 the sample size divide the half",
                a.half, a.per_sample
            )));
        }
        if a.half as u64 * 2 > u32::MAX as u64 {
            return Err(Error::Shape("pair loss: 2E exceeds 2^32 values".into()));
        }
        for (name, k) in [("ka", a.ka), ("kb", a.kb)] {
            if !k.is_finite() || k < 0.0 {
                return Err(Error::Param(format!(
                    "pair loss: `{name}` = {k}; give a finite value ≥ 0"
                )));
            }
        }
        let e = a.half as u64;
        let samples = e / a.per_sample as u64;
        let operands = [
            Operand::buffer("pred", a.pred, 2 * e * 4),
            Operand::buffer("weight", a.weight, samples * 4),
            Operand::buffer("dout", a.dout, 2 * e * 4),
            Operand::buffer("partials", a.partials, Self::partials_bytes(a.half)),
            Operand::buffer("scalars", a.scalars, 16),
        ];
        let groups = e.div_ceil(64);
        let (gx, gy) = common::grid(device, groups)?;
        let p = PairParams {
            half: a.half,
            per_sample: a.per_sample,
            ka: a.ka,
            kb: a.kb,
            inv_count: 1.0 / a.half as f32,
            accumulate: a.accumulate as u32,
            groups_x: gx,
            partial_count: groups as u32,
        };
        let group = self.family.bind(device, &p, &operands)?;
        self.family.record(
            encoder,
            &[
                ("pair_grad", &group, (gx, gy)),
                ("pair_finalize", &group, (1, 1)),
            ],
        );
        Ok(())
    }
}
