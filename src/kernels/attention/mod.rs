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

use super::common::{self, Region, Slot};
use super::linear_texture::{self, LinearTextures};
use super::Paths;
use tiled::TiledPath;

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

/// The texture path's pipelines, placeholder textures and cached operand textures.
struct TexturePath {
    layout: crate::kernels::common::Layout,
    pipelines: common::Pipelines,
    read_placeholder: wgpu::TextureView,
    storage_placeholder: wgpu::TextureView,
    /// qkv, dO and (lse, δ) as linear textures, filled by copies or by `pack_linear4`.
    textures: LinearTextures,
}

/// What a texture-path dispatch binds: buffers in slots 1–4, sampled textures in 5–7, the
/// written texture in 8 (placeholders where `None`).
struct TexOperands<'a> {
    buffers: [Option<(Region<'a>, u64)>; 4],
    sampled: [Option<&'a wgpu::TextureView>; 3],
    written: Option<&'a wgpu::TextureView>,
}

/// Compiled attention pipelines for one device.
pub struct AttentionKernels {
    layout: crate::kernels::common::Layout,
    pipelines: common::Pipelines,
    texture: Option<TexturePath>,
    tiled: Option<TiledPath>,
    unused_read: wgpu::Buffer,
    /// One placeholder per writable slot: WebGPU forbids two writable bindings of one buffer
    /// in a dispatch.
    unused_rw: [wgpu::Buffer; 2],
    binder: common::Binder,
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
        )?;
        let pipelines = common::Pipelines::new(device, "attention", &layout, &ENTRIES)?;
        let tiled = match paths {
            Paths::Tiled => TiledPath::new(device, &layout),
            _ => None,
        };
        let texture = if paths == Paths::Texture && Self::texture_path_supported(device) {
            let layout = common::layout(
                device,
                "attention-texture",
                &[
                    (0, Uniform),
                    (1, Read),
                    (2, Read),
                    (3, ReadWrite),
                    (4, ReadWrite),
                    (5, ReadTexture),
                    (6, ReadTexture),
                    (7, ReadTexture),
                    (8, WriteTexture),
                ],
            )?;
            let pipelines =
                common::Pipelines::new(device, "attention_texture", &layout, &TEX_ENTRIES)?;
            Some(TexturePath {
                layout,
                pipelines,
                read_placeholder: linear_texture::placeholder(device),
                storage_placeholder: linear_texture::placeholder(device),
                textures: LinearTextures::default(),
            })
        } else {
            None
        };
        Ok(Self {
            binder: Default::default(),
            layout,
            pipelines,
            texture,
            tiled,
            unused_read: common::placeholder(device),
            unused_rw: std::array::from_fn(|_| common::placeholder(device)),
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
        common::check_operands(&[
            ("qkv", qkv, 3 * e, false),
            ("o", o, e, true),
            ("lse", lse, l, true),
        ])?;
        if self.path(device, shape) == AttentionPath::Texture {
            for (name, r, bytes) in [("qkv", qkv, 3 * e), ("o", o, e), ("lse", lse, l)] {
                common::check_storage(device, name, r, bytes)?;
            }
            return self.forward_texture(device, encoder, shape, qkv, o, lse);
        }
        let slots = [
            Some(("qkv", qkv, 3 * e)),
            None,
            None,
            Some(("o", o, e)),
            Some(("lse", lse, l)),
            None,
        ];
        if let Some(tiled) = &self.tiled {
            let groups = TiledPath::workgroups(shape);
            let bg = self.bind(device, shape, slots, groups)?;
            let p = tiled.pipelines(device, shape.head_dim)?;
            let grid = common::grid(device, groups)?;
            let forward = p.get("attention_forward_tiled");
            common::record_pass(encoder, "attention-tiled", &[(forward, &bg, grid)]);
            return Ok(());
        }
        let bg = self.bind(device, shape, slots, shape.query_rows().div_ceil(64))?;
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
        common::check_operands(&[
            ("qkv", qkv, 3 * e, false),
            ("o", o, e, false),
            ("lse", lse, l, false),
            ("d_o", d_o, e, false),
            ("dqkv", dqkv, 3 * e, true),
            ("delta", delta, l, true),
        ])?;
        if self.path(device, shape) == AttentionPath::Texture {
            for (name, r, bytes) in [
                ("qkv", qkv, 3 * e),
                ("o", o, e),
                ("lse", lse, l),
                ("d_o", d_o, e),
                ("dqkv", dqkv, 3 * e),
            ] {
                common::check_storage(device, name, r, bytes)?;
            }
            return self.backward_texture(device, encoder, shape, [qkv, o, lse, d_o, dqkv]);
        }
        let rows_groups = shape.query_rows().div_ceil(64);
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
            rows_groups,
        )?;
        let grads = [
            Some(("qkv", qkv, 3 * e)),
            None,
            Some(("d_o", d_o, e)),
            Some(("dqkv", dqkv, 3 * e)),
            Some(("lse", lse, l)),
            Some(("delta", delta, l)),
        ];
        if let Some(tiled) = &self.tiled {
            let groups = TiledPath::workgroups(shape);
            let second = self.bind(device, shape, grads, groups)?;
            let p = tiled.pipelines(device, shape.head_dim)?;
            let (rows_grid, grid) = (
                common::grid(device, rows_groups)?,
                common::grid(device, groups)?,
            );
            let dispatches = [
                (self.pipelines.get("attention_delta"), &first, rows_grid),
                (p.get("attention_dq_tiled"), &second, grid),
                (p.get("attention_dkv_tiled"), &second, grid),
            ];
            common::record_pass(encoder, "attention-tiled-backward", &dispatches);
            return Ok(());
        }
        let second = self.bind(device, shape, grads, rows_groups)?;
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

    fn cached(&self, device: &wgpu::Device, role: &'static str, texels: u64) -> wgpu::TextureView {
        let tex = self.texture.as_ref().expect("texture path");
        tex.textures.view(device, role, texels)
    }

    /// `floats` values of `src` into the texture for `role`: by a copy where the region
    /// allows one (recorded now, before the caller's pass), else by a `pack_linear4`
    /// dispatch returned for the caller's pass.
    #[allow(clippy::type_complexity)]
    fn fill(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        shape: AttentionShape,
        role: &'static str,
        src: Region,
        floats: u64,
    ) -> Result<(wgpu::TextureView, Option<(wgpu::BindGroup, (u32, u32))>)> {
        let tex = self.texture.as_ref().expect("texture path");
        if let Some(view) = tex.textures.fill(device, encoder, role, src, floats) {
            return Ok((view, None));
        }
        let view = self.cached(device, role, floats / 4);
        let pack = self.tex_dispatch(
            device,
            shape,
            floats / 4,
            floats / 4,
            TexOperands {
                buffers: [Some((src, 4 * floats)), None, None, None],
                sampled: [None; 3],
                written: Some(&view),
            },
        )?;
        Ok((view, Some(pack)))
    }

    /// One texture-path dispatch: buffers in slots 1–4, sampled textures in 5–7, the written
    /// texture in 8 (placeholders where unused).
    fn tex_dispatch(
        &self,
        device: &wgpu::Device,
        shape: AttentionShape,
        texels: u64,
        invocations: u64,
        operands: TexOperands,
    ) -> Result<(wgpu::BindGroup, (u32, u32))> {
        let TexOperands {
            buffers,
            sampled,
            written,
        } = operands;
        let tex = self.texture.as_ref().expect("texture path");
        let grid = common::grid(device, invocations.div_ceil(64))?;
        let uni = AttnTexParams {
            samples: shape.samples,
            tokens: shape.tokens,
            heads: shape.heads,
            head_dim: shape.head_dim,
            dim: shape.dim(),
            scale: 1.0 / (shape.head_dim as f32).sqrt(),
            groups_x: grid.0,
            texels: texels as u32,
        };
        let mut entries = Vec::new();
        for (i, b) in buffers.into_iter().enumerate() {
            let fallback = if i < 2 {
                &self.unused_read
            } else {
                &self.unused_rw[i - 2]
            };
            entries.push((i as u32 + 1, common::range_or(b, fallback)));
        }
        for (i, t) in sampled.into_iter().enumerate() {
            entries.push((
                i as u32 + 5,
                wgpu::BindingResource::TextureView(t.unwrap_or(&tex.read_placeholder)),
            ));
        }
        entries.push((
            8,
            wgpu::BindingResource::TextureView(written.unwrap_or(&tex.storage_placeholder)),
        ));
        Ok((self.binder.bind(device, &tex.layout, &uni, entries)?, grid))
    }

    fn forward_texture(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        shape: AttentionShape,
        qkv: Region,
        o: Region,
        lse: Region,
    ) -> Result<()> {
        let tex = self.texture.as_ref().expect("texture path");
        let (e, l) = (shape.elements(), shape.query_rows());
        let (qkv_tex, pack) = self.fill(device, encoder, shape, "attention-qkv", qkv, 3 * e)?;
        let fwd = self.tex_dispatch(
            device,
            shape,
            0,
            l,
            TexOperands {
                buffers: [None, None, Some((lse, 4 * l)), Some((o, 4 * e))],
                sampled: [Some(&qkv_tex), None, None],
                written: None,
            },
        )?;
        let mut dispatches: Vec<_> = pack
            .iter()
            .map(|p| (tex.pipelines.get("pack_linear4"), &p.0, p.1))
            .collect();
        dispatches.push((tex.pipelines.get("attention_forward_tex"), &fwd.0, fwd.1));
        common::record_pass(encoder, "attention-texture", &dispatches);
        Ok(())
    }

    fn backward_texture(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        shape: AttentionShape,
        [qkv, o, lse, d_o, dqkv]: [Region; 5],
    ) -> Result<()> {
        let tex = self.texture.as_ref().expect("texture path");
        let (e, l) = (shape.elements(), shape.query_rows());
        let (qkv_tex, qkv_pack) = self.fill(device, encoder, shape, "attention-qkv", qkv, 3 * e)?;
        let (do_tex, do_pack) = self.fill(device, encoder, shape, "attention-do", d_o, e)?;
        let ld_tex = self.cached(device, "attention-ld", l);
        let delta = self.tex_dispatch(
            device,
            shape,
            0,
            l,
            TexOperands {
                buffers: [
                    Some((o, 4 * e)),
                    Some((d_o, 4 * e)),
                    Some((lse, 4 * l)),
                    None,
                ],
                sampled: [None; 3],
                written: Some(&ld_tex),
            },
        )?;
        let grads = self.tex_dispatch(
            device,
            shape,
            0,
            l,
            TexOperands {
                buffers: [None, None, None, Some((dqkv, 12 * e))],
                sampled: [Some(&qkv_tex), Some(&do_tex), Some(&ld_tex)],
                written: None,
            },
        )?;
        let p = &tex.pipelines;
        let mut dispatches: Vec<_> = qkv_pack
            .iter()
            .chain(&do_pack)
            .map(|d| (p.get("pack_linear4"), &d.0, d.1))
            .collect();
        dispatches.extend([
            (p.get("attention_delta_tex"), &delta.0, delta.1),
            (p.get("attention_dq_tex"), &grads.0, grads.1),
            (p.get("attention_dkv_tex"), &grads.0, grads.1),
        ]);
        common::record_pass(encoder, "attention-texture-backward", &dispatches);
        Ok(())
    }

    fn bind(
        &self,
        device: &wgpu::Device,
        shape: AttentionShape,
        slots: [Option<(&'static str, Region, u64)>; 6],
        groups: u64,
    ) -> Result<wgpu::BindGroup> {
        for (name, region, bytes) in slots.iter().flatten() {
            common::check_storage(device, name, *region, *bytes)?;
        }
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
        let mut entries = Vec::new();
        for (i, s) in slots.into_iter().enumerate() {
            let fallback = if i == 3 || i == 4 {
                &self.unused_rw[i - 3]
            } else {
                &self.unused_read
            };
            entries.push((
                i as u32 + 1,
                common::range_or(s.map(|(_, r, b)| (r, b)), fallback),
            ));
        }
        self.binder.bind(device, &self.layout, &uni, entries)
    }

    fn record(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        shape: AttentionShape,
        steps: &[(&str, &wgpu::BindGroup)],
    ) -> Result<()> {
        let grid = common::grid(device, shape.query_rows().div_ceil(64))?;
        let dispatches: Vec<_> = steps
            .iter()
            .map(|&(entry, bg)| (self.pipelines.get(entry), bg, grid))
            .collect();
        common::record_pass(encoder, "attention", &dispatches);
        Ok(())
    }
}
