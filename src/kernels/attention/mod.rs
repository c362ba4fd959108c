//! Launcher of the attention family: multi-head self-attention from the fused qkv
//! projection, forward (saving one log-sum-exp per query row) and backward (recomputing the
//! probabilities from it). Three paths with the same results, chosen by [`Paths`]:
//! - portable (`shaders/attention.wgsl`): one invocation per query row from storage buffers;
//!   every adapter;
//! - tiled (`shaders/attention_tiled.wgsl`), for hardware GPUs: flash-attention style
//!   blocks of 64 rows per workgroup, the other side's rows staged in workgroup memory (see
//!   `tiled.rs`);
//! - texture (`shaders/attention_texture.wgsl`), for llvmpipe: copies qkv and dO into
//!   linear rgba32float textures (`LinearTextures`; `pack_linear4` where a buffer lacks
//!   COPY_SRC usage) and reads the rows of the inner loops as storage-texture loads, which
//!   llvmpipe compiles into gathers instead of per-lane load loops. Chosen on CPU adapters
//!   when dim and head_dim are multiples of 4.

use super::common::{self, Family, Operand, Region};
use super::linear_texture::{self, LinearTextures};
use super::Paths;
use texture_path::TexturePath;
use tiled::TiledPath;

mod texture_path;
mod tiled;
use crate::{Error, Result};

/// Texels per row of the texture path's linear textures (`TEX_W` in the shader).
const TEX_W: u64 = linear_texture::WIDTH as u64;

/// Largest head size the kernels hold in registers (`MAX_HD` in the shader).
pub const MAX_HEAD_DIM: u32 = 128;

/// The attention geometry: `samples` sequences of `tokens` rows, `heads` heads of
/// `head_dim` values (dim = heads·head_dim; qkv rows hold 3·dim).
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    /// Sequences (images).
    pub samples: u32,
    /// Rows (tokens) per sequence.
    pub tokens: u32,
    /// Attention heads.
    pub heads: u32,
    /// Values per head.
    pub head_dim: u32,
}

impl AttentionShape {
    /// The hidden size heads·head_dim.
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
pub(crate) struct AttnParams {
    pub(crate) samples: u32,
    pub(crate) tokens: u32,
    pub(crate) heads: u32,
    pub(crate) head_dim: u32,
    pub(crate) dim: u32,
    pub(crate) scale: f32,
    pub(crate) groups_x: u32,
    pub(crate) pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct AttnTexParams {
    pub(crate) samples: u32,
    pub(crate) tokens: u32,
    pub(crate) heads: u32,
    pub(crate) head_dim: u32,
    pub(crate) dim: u32,
    pub(crate) scale: f32,
    pub(crate) groups_x: u32,
    pub(crate) texels: u32,
}

const ENTRIES: [&str; 4] = [
    "attention_forward",
    "attention_delta",
    "attention_dq",
    "attention_dkv",
];

/// Which kernels a launch runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionPath {
    /// One workgroup per query row, no workgroup memory: runs anywhere.
    Portable,
    /// Keys and values read through textures (fast on llvmpipe).
    Texture,
    /// Workgroup-memory tiles of queries, keys and values (fast on GPUs).
    Tiled,
}

const TEX_ENTRIES: [&str; 5] = [
    "pack_linear4",
    "attention_forward_tex",
    "attention_delta_tex",
    "attention_dq_tex",
    "attention_dkv_tex",
];

/// Compiled attention pipelines for one device.
pub struct AttentionKernels {
    family: Family,
    texture: Option<TexturePath>,
    tiled: Option<TiledPath>,
}

/// dqkv (overwritten) from dO, given the forward's qkv, O and log-sum-exp; `delta` is scratch of samples·heads·tokens values.
#[derive(Clone, Copy)]
pub struct AttentionBackwardArgs<'a> {
    /// The attention geometry.
    pub shape: AttentionShape,
    /// Input: the forward's fused q, k, v rows (3·dim values each).
    pub qkv: Region<'a>,
    /// Input: the forward's output O.
    pub o: Region<'a>,
    /// Input: the forward's log-sum-exp per query row.
    pub lse: Region<'a>,
    /// Input: ∂L/∂O.
    pub d_o: Region<'a>,
    /// Output: ∂L/∂qkv (overwritten).
    pub dqkv: Region<'a>,
    /// Scratch: samples·heads·tokens values (rowsum of dO ⊙ O).
    pub delta: Region<'a>,
}

/// softmax(QKᵀ/√d)·V per (sample, head) from the fused qkv into `o`, saving the log-sum-exp per query row.
#[derive(Clone, Copy)]
pub struct AttentionArgs<'a> {
    /// The attention geometry.
    pub shape: AttentionShape,
    /// Input: the fused q, k, v rows (3·dim values each).
    pub qkv: Region<'a>,
    /// Output: softmax(QKᵀ/√d)·V, dim values per row.
    pub o: Region<'a>,
    /// Output, saved for the backward: the log-sum-exp per query row.
    pub lse: Region<'a>,
}

impl AttentionKernels {
    /// The kernels of [`Paths::choose`] for `device`.
    pub fn new(device: &wgpu::Device) -> Result<Self> {
        Self::with_paths(device, Paths::choose(device)?)
    }

    /// The kernels of `paths`, where `device` supports them (else the portable kernels).
    pub fn with_paths(device: &wgpu::Device, paths: Paths) -> Result<Self> {
        let tiled = match paths {
            Paths::Tiled => TiledPath::new(device),
            _ => None,
        };
        // The tiled kernels are compiled per head size on first use, with this layout.
        let family = Family::with_variant(
            device,
            "attention",
            &ENTRIES,
            "attention_tiled",
            &tiled::ENTRIES,
        )?;
        let texture = if paths == Paths::Texture && Self::texture_path_supported(device) {
            Some(TexturePath {
                family: Family::new(device, "attention_texture", &TEX_ENTRIES)?,
                textures: LinearTextures::default(),
            })
        } else {
            None
        };
        Ok(Self {
            family,
            texture,
            tiled,
        })
    }

    /// Whether `device` gets the texture path: CPU adapters (llvmpipe), where storage-buffer
    /// loads are slow and texel fetches are not.
    pub fn texture_path_supported(device: &wgpu::Device) -> bool {
        device.adapter_info().device_type == wgpu::DeviceType::Cpu
    }

    /// Turns the texture and tiled paths off (`false`), e.g. to test or time the portable
    /// kernels.
    pub fn with_texture_path(mut self, enabled: bool) -> Self {
        if !enabled {
            self.texture = None;
            self.tiled = None;
        }
        self
    }

    /// The kernels a launch of `shape` runs on this device.
    pub fn path(&self, device: &wgpu::Device, shape: AttentionShape) -> AttentionPath {
        if self.tiled.is_some() {
            return AttentionPath::Tiled;
        }
        let max = device.limits().max_texture_dimension_2d as u64;
        let rows = |texels: u64| texels.div_ceil(TEX_W);
        let fits = TEX_W <= max
            && rows(3 * shape.elements() / 4) <= max
            && rows(shape.query_rows()) <= max;
        if self.texture.is_some() && shape.head_dim.is_multiple_of(4) && fits {
            AttentionPath::Texture
        } else {
            AttentionPath::Portable
        }
    }

    /// O = softmax(Q·Kᵀ/√head_dim)·V; writes the log-sum-exp of every query row to `lse`
    /// (samples·heads·tokens values) for the backward.
    pub fn record_forward<'a>(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &AttentionArgs<'a>,
    ) -> Result<()> {
        let AttentionArgs { shape, qkv, o, lse } = *args;
        shape.validate()?;
        let e = shape.elements() * 4;
        let l = shape.query_rows() * 4;
        common::check_launch(
            device,
            &[
                ("qkv", qkv, 3 * e, false),
                ("o", o, e, true),
                ("lse", lse, l, true),
            ],
        )?;
        if self.path(device, shape) == AttentionPath::Texture {
            return self.forward_texture(device, encoder, shape, qkv, o, lse);
        }
        let operands = [
            Operand::buffer("qkv", qkv, 3 * e),
            Operand::buffer("out", o, e).called("o"),
            Operand::buffer("lse", lse, l),
        ];
        if let Some(tiled) = &self.tiled {
            let groups = TiledPath::workgroups(shape);
            let bg = self.bind(device, shape, &operands, groups)?;
            let forward = self.tiled(device, tiled, shape, "attention_forward_tiled")?;
            let grid = common::grid(device, groups)?;
            common::record_pass(encoder, "attention-tiled", &[(&forward, &bg, grid)]);
            return Ok(());
        }
        let bg = self.bind(device, shape, &operands, shape.query_rows().div_ceil(64))?;
        self.record(device, encoder, shape, &[("attention_forward", &bg)])
    }

    /// dqkv (overwritten) from dO, given the forward's qkv, O and log-sum-exp; `delta` is
    /// scratch of samples·heads·tokens values.
    pub fn record_backward<'a>(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &AttentionBackwardArgs<'a>,
    ) -> Result<()> {
        let AttentionBackwardArgs {
            shape,
            qkv,
            o,
            lse,
            d_o,
            dqkv,
            delta,
        } = *args;
        shape.validate()?;
        let e = shape.elements() * 4;
        let l = shape.query_rows() * 4;
        common::check_launch(
            device,
            &[
                ("qkv", qkv, 3 * e, false),
                ("o", o, e, false),
                ("lse", lse, l, false),
                ("d_o", d_o, e, false),
                ("dqkv", dqkv, 3 * e, true),
                ("delta", delta, l, true),
            ],
        )?;
        if self.path(device, shape) == AttentionPath::Texture {
            return self.backward_texture(device, encoder, shape, [qkv, o, lse, d_o, dqkv]);
        }
        let rows_groups = shape.query_rows().div_ceil(64);
        // δ = rowsum(dO ∘ O), written through the shader's `out`.
        let delta_operands = [
            Operand::buffer("o_in", o, e).called("o"),
            Operand::buffer("d_o", d_o, e),
            Operand::buffer("out", delta, l).called("delta"),
        ];
        let first = self.bind(device, shape, &delta_operands, rows_groups)?;
        let grads = [
            Operand::buffer("qkv", qkv, 3 * e),
            Operand::buffer("d_o", d_o, e),
            Operand::buffer("out", dqkv, 3 * e).called("dqkv"),
            Operand::buffer("lse", lse, l),
            Operand::buffer("delta", delta, l),
        ];
        if let Some(tiled) = &self.tiled {
            let groups = TiledPath::workgroups(shape);
            let second = self.bind(device, shape, &grads, groups)?;
            let dq = self.tiled(device, tiled, shape, "attention_dq_tiled")?;
            let dkv = self.tiled(device, tiled, shape, "attention_dkv_tiled")?;
            let (rows_grid, grid) = (
                common::grid(device, rows_groups)?,
                common::grid(device, groups)?,
            );
            let dispatches = [
                (self.family.pipeline("attention_delta"), &first, rows_grid),
                (&dq, &second, grid),
                (&dkv, &second, grid),
            ];
            common::record_pass(encoder, "attention-tiled-backward", &dispatches);
            return Ok(());
        }
        let second = self.bind(device, shape, &grads, rows_groups)?;
        self.record(
            device,
            encoder,
            shape,
            &[
                ("attention_delta", &first),
                ("attention_dq", &second),
                ("attention_dkv", &second),
            ],
        )
    }

    /// The bind group of `operands` for a launch of `groups` workgroups.
    fn bind(
        &self,
        device: &wgpu::Device,
        shape: AttentionShape,
        operands: &[Operand],
        groups: u64,
    ) -> Result<wgpu::BindGroup> {
        let (gx, _) = common::grid(device, groups)?;
        let uni = AttnParams {
            samples: shape.samples,
            tokens: shape.tokens,
            heads: shape.heads,
            head_dim: shape.head_dim,
            dim: shape.dim(),
            scale: 1.0 / (shape.head_dim as f32).sqrt(),
            groups_x: gx,
            pad: 0,
        };
        self.family.bind(device, &uni, operands)
    }

    /// The tiled kernel `entry` for this launch's head size (compiled on first use).
    fn tiled(
        &self,
        device: &wgpu::Device,
        tiled: &TiledPath,
        shape: AttentionShape,
        entry: &'static str,
    ) -> Result<wgpu::ComputePipeline> {
        let constants = tiled.constants(shape.head_dim);
        self.family
            .specialised(device, "attention_tiled", entry, &constants)
    }

    fn record(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        shape: AttentionShape,
        steps: &[(&str, &wgpu::BindGroup)],
    ) -> Result<()> {
        let grid = common::grid(device, shape.query_rows().div_ceil(64))?;
        let dispatches: Vec<_> = steps.iter().map(|&(entry, bg)| (entry, bg, grid)).collect();
        self.family.record(encoder, &dispatches);
        Ok(())
    }
}
