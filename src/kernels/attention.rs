//! Launcher of `shaders/attention.wgsl`: multi-head self-attention from the fused qkv
//! projection, forward (saving one log-sum-exp per query row) and backward (recomputing the
//! probabilities from it).

use super::common::{self, Region, Slot};
use crate::{Error, Result};

/// Largest head size the kernels hold in registers (`MAX_HD` in the shader).
pub const MAX_HEAD_DIM: u32 = 128;

/// The attention geometry: `samples` sequences of `tokens` rows, `heads` heads of
/// `head_dim` values (dim = heads·head_dim; qkv rows hold 3·dim).
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    pub samples: u32,
    pub tokens: u32,
    pub heads: u32,
    pub head_dim: u32,
}

impl AttentionShape {
    pub fn dim(&self) -> u32 {
        self.heads * self.head_dim
    }
    /// Values in O (and in one third of qkv).
    pub fn elements(&self) -> u64 {
        self.samples as u64 * self.tokens as u64 * self.dim() as u64
    }
    /// Query rows over all heads: the size of the saved log-sum-exp.
    pub fn query_rows(&self) -> u64 {
        self.samples as u64 * self.heads as u64 * self.tokens as u64
    }
    fn validate(&self) -> Result<()> {
        if self.samples == 0 || self.tokens == 0 || self.heads == 0 || self.head_dim == 0 {
            return Err(Error::Shape(format!(
                "attention shape {self:?} has a zero size"
            )));
        }
        if self.head_dim > MAX_HEAD_DIM {
            return Err(Error::Shape(format!(
                "head size {} exceeds the kernel's {MAX_HEAD_DIM}; use more heads",
                self.head_dim
            )));
        }
        if 3 * self.elements() > u32::MAX as u64 {
            return Err(Error::Shape(
                "qkv exceeds 2^32 values; split the batch".into(),
            ));
        }
        Ok(())
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    samples: u32,
    tokens: u32,
    heads: u32,
    head_dim: u32,
    dim: u32,
    scale: f32,
    groups_x: u32,
    pad: u32,
}

const ENTRIES: [&str; 4] = [
    "attention_forward",
    "attention_delta",
    "attention_dq",
    "attention_dkv",
];

/// Compiled attention pipelines for one device.
pub struct AttentionKernels {
    layout: wgpu::BindGroupLayout,
    pipelines: Vec<wgpu::ComputePipeline>,
    unused_read: wgpu::Buffer,
    unused_rw: wgpu::Buffer,
}

impl AttentionKernels {
    pub fn new(device: &wgpu::Device) -> Result<Self> {
        use Slot::*;
        let layout = common::layout(
            device,
            "attention",
            &[
                (0, Uniform),
                (1, Read),
                (2, Read),
                (3, Read),
                (4, ReadWrite),
                (5, ReadWrite),
                (6, Read),
            ],
        );
        let pipelines = common::pipelines(device, "attention", &layout, &ENTRIES)?;
        Ok(Self {
            layout,
            pipelines,
            unused_read: common::placeholder(device),
            unused_rw: common::placeholder(device),
        })
    }

    /// O = softmax(Q·Kᵀ/√head_dim)·V; writes the log-sum-exp of every query row to `lse`
    /// (samples·heads·tokens values) for the backward.
    pub fn record_forward<'a>(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        shape: AttentionShape,
        qkv: impl Into<Region<'a>>,
        o: impl Into<Region<'a>>,
        lse: impl Into<Region<'a>>,
    ) -> Result<()> {
        shape.validate()?;
        let e = shape.elements() * 4;
        let l = shape.query_rows() * 4;
        let bg = self.bind(
            device,
            shape,
            [
                Some(("qkv", qkv.into(), 3 * e)),
                None,
                None,
                Some(("o", o.into(), e)),
                Some(("lse", lse.into(), l)),
                None,
            ],
        )?;
        self.record(device, encoder, shape, &[(0, &bg)])
    }

    /// dqkv (overwritten) from dO, given the forward's qkv, O and log-sum-exp; `delta` is
    /// scratch of samples·heads·tokens values.
    #[allow(clippy::too_many_arguments)]
    pub fn record_backward<'a>(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        shape: AttentionShape,
        qkv: impl Into<Region<'a>>,
        o: impl Into<Region<'a>>,
        lse: impl Into<Region<'a>>,
        d_o: impl Into<Region<'a>>,
        dqkv: impl Into<Region<'a>>,
        delta: impl Into<Region<'a>>,
    ) -> Result<()> {
        shape.validate()?;
        let e = shape.elements() * 4;
        let l = shape.query_rows() * 4;
        let (qkv, o, lse, d_o, dqkv, delta) = (
            qkv.into(),
            o.into(),
            lse.into(),
            d_o.into(),
            dqkv.into(),
            delta.into(),
        );
        let first = self.bind(
            device,
            shape,
            [
                None,
                Some(("o", o, e)),
                Some(("d_o", d_o, e)),
                Some(("delta", delta, l)),
                None,
                None,
            ],
        )?;
        let second = self.bind(
            device,
            shape,
            [
                Some(("qkv", qkv, 3 * e)),
                None,
                Some(("d_o", d_o, e)),
                Some(("dqkv", dqkv, 3 * e)),
                Some(("lse", lse, l)),
                Some(("delta", delta, l)),
            ],
        )?;
        self.record(
            device,
            encoder,
            shape,
            &[(1, &first), (2, &second), (3, &second)],
        )
    }

    fn bind(
        &self,
        device: &wgpu::Device,
        shape: AttentionShape,
        slots: [Option<(&'static str, Region, u64)>; 6],
    ) -> Result<wgpu::BindGroup> {
        for (name, region, bytes) in slots.iter().flatten() {
            common::check_storage(device, name, *region, *bytes)?;
        }
        let (gx, _) = common::grid(device, shape.query_rows().div_ceil(64))?;
        let ub = common::uniform(
            device,
            &Params {
                samples: shape.samples,
                tokens: shape.tokens,
                heads: shape.heads,
                head_dim: shape.head_dim,
                dim: shape.dim(),
                scale: 1.0 / (shape.head_dim as f32).sqrt(),
                groups_x: gx,
                pad: 0,
            },
        );
        let mut entries = vec![(0, ub.as_entire_binding())];
        for (i, s) in slots.into_iter().enumerate() {
            let fallback = if i == 3 || i == 4 {
                &self.unused_rw
            } else {
                &self.unused_read
            };
            entries.push((
                i as u32 + 1,
                common::range_or(s.map(|(_, r, b)| (r, b)), fallback),
            ));
        }
        Ok(common::bind_group(device, &self.layout, entries))
    }

    fn record(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        shape: AttentionShape,
        steps: &[(usize, &wgpu::BindGroup)],
    ) -> Result<()> {
        let grid = common::grid(device, shape.query_rows().div_ceil(64))?;
        let dispatches: Vec<_> = steps
            .iter()
            .map(|&(e, bg)| (&self.pipelines[e], bg, grid))
            .collect();
        common::record_pass(encoder, "attention", &dispatches);
        Ok(())
    }
}
