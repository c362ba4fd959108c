//! Launcher of `shaders/contrastive.wgsl`: CCUA's unconditional contrastive loss on B
//! feature rows, and its gradient with respect to the rows.

use super::common::{self, Family, Operand, Region};
use crate::{Error, Result};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
pub(crate) struct ContrastiveParams {
    pub(crate) batch: u32,
    pub(crate) features: u32,
    pub(crate) base: u32,
    pub(crate) out_base: u32,
    pub(crate) tau: f32,
    pub(crate) scale: f32,
    pub(crate) accumulate: u32,
    pub(crate) groups_x: u32,
}

/// Arguments of [`ContrastiveKernels::record`].
pub struct ContrastiveArgs<'a> {
    /// Rows B.
    pub batch: u32,
    /// Values per row F.
    pub features: u32,
    /// The rows: B·F values from index `base` of `feats`.
    pub feats: Region<'a>,
    /// The first row's index (in f32 values) within `feats`.
    pub base: u32,
    /// One weight per row (t/T).
    pub weight: Region<'a>,
    /// Temperature τ (> 0).
    pub tau: f32,
    /// α: the gradient is scale·∂L/∂h; the reported loss is not scaled.
    pub scale: f32,
    /// Output: the gradient, B·F values from index `out_base` of `grad`, written or added.
    pub grad: Region<'a>,
    /// The first row's index (in f32 values) within `grad`.
    pub out_base: u32,
    /// Add to `grad` instead of overwriting it.
    pub accumulate: bool,
    /// Scratch: B·B values each ([`ContrastiveKernels::matrix_bytes`]).
    pub gram: Region<'a>,
    /// Scratch: the B×B coefficients of the backward.
    pub coef: Region<'a>,
    /// Output: [(1/B)·Σ w_i·UCL_i] (one f32; 16 bytes are bound).
    pub scalars: Region<'a>,
}

/// Compiled contrastive pipelines for one device.
pub struct ContrastiveKernels {
    family: Family,
}

impl ContrastiveKernels {
    /// The contrastive pipelines for `device`.
    pub fn new(device: &wgpu::Device) -> Result<Self> {
        let entries = ["gram_rows", "ucl", "ucl_backward"];
        Ok(Self {
            family: Family::new(device, "contrastive", &entries)?,
        })
    }

    /// Bytes of each B×B scratch matrix.
    pub fn matrix_bytes(batch: u32) -> u64 {
        (batch as u64 * batch as u64 * 4).max(16)
    }

    /// Records the weighted unconditional-contrastive loss of CCUA and its gradient.
    pub fn record(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        a: &ContrastiveArgs,
    ) -> Result<()> {
        if a.batch < 2 || a.features == 0 {
            return Err(Error::Shape(format!(
                "contrastive loss over {} rows of {} features: it needs ≥ 2 rows (a batch of \
                 one has no pairs) and ≥ 1 feature",
                a.batch, a.features
            )));
        }
        let values = a.batch as u64 * a.features as u64;
        if a.base as u64 + values > u32::MAX as u64 || a.out_base as u64 + values > u32::MAX as u64
        {
            return Err(Error::Shape(
                "contrastive loss: feature indices exceed 2^32".into(),
            ));
        }
        if !(a.tau.is_finite() && a.tau > 0.0 && a.scale.is_finite()) {
            return Err(Error::Param(format!(
                "contrastive loss: τ = {} and scale = {}; τ must be > 0 and both finite",
                a.tau, a.scale
            )));
        }
        let m = Self::matrix_bytes(a.batch);
        let operands = [
            Operand::buffer("feats", a.feats, (a.base as u64 + values) * 4),
            Operand::buffer("weight", a.weight, a.batch as u64 * 4),
            Operand::buffer("gram", a.gram, m),
            Operand::buffer("coef", a.coef, m),
            Operand::buffer("grad", a.grad, (a.out_base as u64 + values) * 4),
            Operand::buffer("scalars", a.scalars, 16),
        ];
        // Pairs and values each need their own grid; the uniform holds one groups_x, so each
        // dispatch gets its own bind group.
        let mut dispatches = Vec::new();
        for (entry, groups) in [
            ("gram_rows", a.batch as u64 * a.batch as u64),
            ("ucl", 1),
            ("ucl_backward", values.div_ceil(64)),
        ] {
            let (gx, gy) = common::grid(device, groups)?;
            let p = ContrastiveParams {
                batch: a.batch,
                features: a.features,
                base: a.base,
                out_base: a.out_base,
                tau: a.tau,
                scale: a.scale,
                accumulate: a.accumulate as u32,
                groups_x: gx,
            };
            let group = self.family.bind(device, &p, &operands)?;
            dispatches.push((entry, group, (gx, gy)));
        }
        let list: Vec<_> = dispatches.iter().map(|(e, b, g)| (*e, b, *g)).collect();
        self.family.record(encoder, &list);
        Ok(())
    }
}
