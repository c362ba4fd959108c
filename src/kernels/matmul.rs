//! Launcher of the matmul family: C = op(A)·op(B) (+ bias) (+= C), the products of the
//! linear layer. Two paths, one interface:
//! - portable (`shaders/matmul.wgsl`): one invocation per output from storage buffers;
//!   correct on every adapter, the fallback and the reference the fast path is tested against;
//! - texture8 (`shaders/matmul_texture.wgsl`), for llvmpipe: both operands are packed into
//!   zero-padded rgba32float textures (which also applies their layouts), then 8-lane
//!   subgroups compute 16×64 tiles of C from texel fetches. It is chosen on CPU adapters with
//!   subgroup operations and subgroups of exactly 8 lanes (so a workgroup of 8 is one whole
//!   subgroup); where a packed operand would exceed the texture size limit along K or N the
//!   launch runs the portable kernel, and tall A operands are packed and multiplied in
//!   row chunks.

use super::common::{self, Region, Slot};
use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::Mutex;

/// How an operand is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// As used: A stored (M, K), B stored (K, N), row-major.
    RowMajor,
    /// Stored transposed: A as (K, M), B as (N, K) — e.g. a linear layer's (out, in) weight
    /// for Y = X·Wᵀ.
    Transposed,
}

/// One product C (M×N, row-major) = op(A) (M×K) · op(B) (K×N). Operands are regions, so a
/// weight can be a named view of a flat parameter buffer (`(&buffer).into()` for a whole one).
/// C must not share a buffer with A, B or the bias (wgpu forbids binding one buffer both
/// read-only and writable in a dispatch).
pub struct MatmulArgs<'a> {
    pub m: u32,
    pub k: u32,
    pub n: u32,
    pub a: Region<'a>,
    pub a_layout: Layout,
    pub b: Region<'a>,
    pub b_layout: Layout,
    /// Added to every row (N values), if given.
    pub bias: Option<Region<'a>>,
    pub c: Region<'a>,
    /// C += op(A)·op(B) instead of C = …
    pub accumulate: bool,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct MatmulParams {
    pub(crate) m: u32,
    pub(crate) n: u32,
    pub(crate) k: u32,
    pub(crate) a_row: u32,
    pub(crate) a_col: u32,
    pub(crate) b_row: u32,
    pub(crate) b_col: u32,
    pub(crate) use_bias: u32,
    pub(crate) accumulate: u32,
    pub(crate) groups_x: u32,
}

/// Which kernel a launch runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulPath {
    /// `matmul_portable`: any adapter.
    Portable,
    /// `pack_rows4` (or copies) + `matmul_texture8`: llvmpipe-shaped, 16×64 tiles per 8-lane
    /// subgroup.
    Texture8,
    /// The same with `matmul_texture16`: 16×64 tiles per 16-lane subgroup (llvmpipe with
    /// `LP_NATIVE_VECTOR_WIDTH=512`).
    Texture16,
}

/// Rows of C per texture-path workgroup (columns: 4 per lane).
const TILE_ROWS: u32 = 16;
/// Columns of C per workgroup: 8 lanes × 2 texels, or 16 lanes × 1 texel.
const TILE_COLS: u32 = 64;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct PackParams {
    pub(crate) rows: u32,
    pub(crate) cols: u32,
    pub(crate) row_stride: u32,
    pub(crate) col_stride: u32,
    pub(crate) row_offset: u32,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) groups_x: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ProductParams {
    pub(crate) m: u32,
    pub(crate) n: u32,
    pub(crate) k4: u32,
    pub(crate) row_offset: u32,
    pub(crate) use_bias: u32,
    pub(crate) accumulate: u32,
}

/// The texture path's pipelines.
struct TexturePath {
    pack_layout: wgpu::BindGroupLayout,
    pack: wgpu::ComputePipeline,
    product_layout: wgpu::BindGroupLayout,
    product: wgpu::ComputePipeline,
    /// `matmul_texture8_to_texture`: C written to a texture and copied out.
    product_tex_layout: wgpu::BindGroupLayout,
    product_tex: wgpu::ComputePipeline,
    /// Subgroup size the product kernels are built for (8 or 16).
    lanes: u32,
    /// Most rows of A packed and multiplied per chunk (a multiple of the tile's 16).
    row_chunk: u32,
    /// Packed-operand textures by (role, width, height), made on first use and reused: the
    /// passes of an encoder run in order, so a later product repacks only after an earlier
    /// one has read them.
    textures: Mutex<HashMap<(&'static str, u32, u32), wgpu::TextureView>>,
    binder: common::Binder,
}

impl TexturePath {
    /// Width in texels of the B texture for N columns: whole tiles of 64 columns.
    fn b_width(&self, n: u64) -> u64 {
        n.div_ceil(TILE_COLS as u64) * TILE_COLS as u64 / 4
    }
}

/// Compiled matmul pipelines for one device.
pub struct MatmulKernels {
    layout: wgpu::BindGroupLayout,
    portable: wgpu::ComputePipeline,
    /// Present where the device qualifies (see [`MatmulKernels::fast_path_supported`]).
    texture: Option<TexturePath>,
    unused: wgpu::Buffer,
    binder: common::Binder,
}

impl MatmulKernels {
    pub fn new(device: &wgpu::Device) -> Result<Self> {
        use Slot::*;
        let layout = common::layout(
            device,
            "matmul",
            &[
                (0, Uniform),
                (1, Read),
                (2, Read),
                (3, Read),
                (4, ReadWrite),
            ],
        );
        let portable =
            common::pipelines(device, "matmul", &layout, &["matmul_portable"])?.remove(0);
        let texture = if Self::fast_path_supported(device) {
            let pack_layout = common::layout(
                device,
                "matmul-pack",
                &[(0, Uniform), (1, Read), (2, WriteTexture)],
            );
            let product_layout = common::layout(
                device,
                "matmul-texture",
                &[
                    (0, Uniform),
                    (1, ReadTexture),
                    (2, ReadTexture),
                    (3, Read),
                    (4, ReadWrite),
                ],
            );
            let lanes = device.adapter_info().subgroup_min_size;
            let pack = common::pipelines(device, "matmul_texture", &pack_layout, &["pack_rows4"])?
                .remove(0);
            let product = common::pipelines(
                device,
                "matmul_texture",
                &product_layout,
                &[&format!("matmul_texture{lanes}")],
            )?
            .remove(0);
            let product_tex_layout = common::layout(
                device,
                "matmul-texture-out",
                &[
                    (0, Uniform),
                    (1, ReadTexture),
                    (2, ReadTexture),
                    (3, Read),
                    (5, WriteTexture),
                ],
            );
            let product_tex = common::pipelines(
                device,
                "matmul_texture",
                &product_tex_layout,
                &[&format!("matmul_texture{lanes}_to_texture")],
            )?
            .remove(0);
            let max = device.limits().max_texture_dimension_2d;
            Some(TexturePath {
                pack_layout,
                pack,
                product_layout,
                product,
                product_tex_layout,
                product_tex,
                lanes,
                row_chunk: max / TILE_ROWS * TILE_ROWS,
                textures: Mutex::new(HashMap::new()),
                binder: Default::default(),
            })
        } else {
            None
        };
        Ok(Self {
            binder: Default::default(),
            layout,
            portable,
            texture,
            unused: common::placeholder(device),
        })
    }

    /// Whether `device` runs the texture path: a CPU adapter (llvmpipe) with subgroup
    /// operations whose subgroups are exactly 8 lanes (Mesa's default) or 16
    /// (`LP_NATIVE_VECTOR_WIDTH=512`), so that one workgroup is one whole subgroup. GPUs run
    /// the portable kernel, whose storage-buffer loads they handle well.
    pub fn fast_path_supported(device: &wgpu::Device) -> bool {
        let info = device.adapter_info();
        info.device_type == wgpu::DeviceType::Cpu
            && device.features().contains(wgpu::Features::SUBGROUP)
            && info.subgroup_min_size == info.subgroup_max_size
            && matches!(info.subgroup_min_size, 8 | 16)
    }

    /// Turns the fast path off (`false`), e.g. to time or test the portable kernel.
    pub fn with_fast_path(mut self, enabled: bool) -> Self {
        if !enabled {
            self.texture = None;
        }
        self
    }

    /// Packs and multiplies at most `rows` rows of A at a time (rounded down to a multiple
    /// of 16, at least 16); the default is the device's texture size limit. Lets tests cover
    /// the chunking with small matrices.
    pub fn with_row_chunk(mut self, rows: u32) -> Self {
        if let Some(t) = &mut self.texture {
            t.row_chunk = t.row_chunk.min((rows / TILE_ROWS).max(1) * TILE_ROWS);
        }
        self
    }

    /// The kernel a launch of (M, K, N) runs on this device.
    pub fn path(&self, device: &wgpu::Device, k: u32, n: u32) -> MatmulPath {
        let max = device.limits().max_texture_dimension_2d as u64;
        let (k, n) = (k as u64, n as u64);
        match &self.texture {
            // The packed textures: A is ⌈K/4⌉ texels wide; B is 16⌈N/64⌉ texels wide and
            // 4⌈K/4⌉ high.
            Some(t) if k.div_ceil(4) * 4 <= max && t.b_width(n) <= max => {
                if t.lanes == 16 {
                    MatmulPath::Texture16
                } else {
                    MatmulPath::Texture8
                }
            }
            _ => MatmulPath::Portable,
        }
    }

    /// Records one product into `encoder` after checking sizes and limits.
    pub fn record(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &MatmulArgs,
    ) -> Result<()> {
        let (m, k, n) = (args.m as u64, args.k as u64, args.n as u64);
        if m == 0 || k == 0 || n == 0 {
            return Err(Error::Shape(format!(
                "matmul (M, K, N) = ({m}, {k}, {n}) has a zero size"
            )));
        }
        if m * n > u32::MAX as u64 || m * k > u32::MAX as u64 || k * n > u32::MAX as u64 {
            return Err(Error::Shape(format!(
                "matmul (M, K, N) = ({m}, {k}, {n}) exceeds 2^32 elements in one operand; split it"
            )));
        }
        common::check_storage(device, "a", args.a, m * k * 4)?;
        common::check_storage(device, "b", args.b, k * n * 4)?;
        common::check_storage(device, "c", args.c, m * n * 4)?;
        if let Some(bias) = args.bias {
            common::check_storage(device, "bias", bias, n * 4)?;
        }
        let (a_row, a_col) = match args.a_layout {
            Layout::RowMajor => (args.k, 1),
            Layout::Transposed => (1, args.m),
        };
        let (b_row, b_col) = match args.b_layout {
            Layout::RowMajor => (args.n, 1),
            Layout::Transposed => (1, args.k),
        };
        if let (MatmulPath::Texture8 | MatmulPath::Texture16, Some(tex)) =
            (self.path(device, args.k, args.n), &self.texture)
        {
            let strides = ((a_row, a_col), (b_row, b_col));
            return record_texture(device, encoder, tex, &self.unused, args, strides);
        }
        let bias = common::range_or(args.bias.map(|b| (b, n * 4)), &self.unused);
        let (gx, gy) = common::grid(device, (m * n).div_ceil(64))?;
        let params = MatmulParams {
            m: args.m,
            n: args.n,
            k: args.k,
            a_row,
            a_col,
            b_row,
            b_col,
            use_bias: args.bias.is_some() as u32,
            accumulate: args.accumulate as u32,
            groups_x: gx,
        };
        let bg = self.binder.bind(
            device,
            &self.layout,
            &params,
            vec![
                (1, common::range(args.a, m * k * 4)),
                (2, common::range(args.b, k * n * 4)),
                (3, bias),
                (4, common::range(args.c, m * n * 4)),
            ],
        );
        common::record_pass(encoder, "matmul", &[(&self.portable, &bg, (gx, gy))]);
        Ok(())
    }
}

/// Copy rows of `width_texels` texels between a region of a buffer and the top of a texture.
fn texel_rows<'a>(
    region: Region<'a>,
    row: u32,
    width_texels: u32,
) -> wgpu::TexelCopyBufferInfo<'a> {
    wgpu::TexelCopyBufferInfo {
        buffer: region.buffer,
        layout: wgpu::TexelCopyBufferLayout {
            offset: region.offset + row as u64 * width_texels as u64 * 16,
            bytes_per_row: Some(width_texels * 16),
            rows_per_image: None,
        },
    }
}

fn texture_origin(view: &wgpu::TextureView) -> wgpu::TexelCopyTextureInfo<'_> {
    wgpu::TexelCopyTextureInfo {
        texture: view.texture(),
        mip_level: 0,
        origin: wgpu::Origin3d::ZERO,
        aspect: wgpu::TextureAspect::All,
    }
}

/// Whether a row-major operand of `cols` columns can go to or from a texture by a plain copy:
/// whole texels per row and rows of a multiple of 256 bytes (wgpu's copy pitch), at an
/// offset of whole texels, in a buffer with the copy usage.
fn copyable(region: Region, cols: u32, usage: wgpu::BufferUsages) -> bool {
    cols.is_multiple_of(64)
        && region.offset.is_multiple_of(16)
        && region.buffer.usage().contains(usage)
}

/// The texture path: pack op(B) once, then per chunk of A's rows pack them and multiply.
/// All dispatches go into one compute pass; wgpu orders each texture's write before its reads.
fn record_texture(
    device: &wgpu::Device,
    encoder: &mut wgpu::CommandEncoder,
    tex: &TexturePath,
    unused: &wgpu::Buffer,
    args: &MatmulArgs,
    ((a_row, a_col), (b_row, b_col)): ((u32, u32), (u32, u32)),
) -> Result<()> {
    let (m, k, n) = (args.m as u64, args.k as u64, args.n as u64);
    let k4 = args.k.div_ceil(4) * 4;
    let (b_width, b_height) = (tex.b_width(args.n as u64) as u32, k4);
    let chunk = (args.m.div_ceil(TILE_ROWS) * TILE_ROWS).min(tex.row_chunk);
    let a_width = k4 / 4;
    let (a_view, b_view) = {
        let mut cache = tex.textures.lock().unwrap_or_else(|e| e.into_inner());
        let mut get = |role: &'static str, w: u32, h: u32| {
            cache
                .entry((role, w, h))
                .or_insert_with(|| common::rgba32f_texture(device, role, w, h))
                .clone()
        };
        (
            get("matmul-a-packed", a_width, chunk),
            get("matmul-b-packed", b_width, b_height),
        )
    };

    // Operands that are row-major with rows of whole 256-byte multiples go into their
    // textures by copy_buffer_to_texture, and such a C comes back from a texture by
    // copy_texture_to_buffer: plain copies, where the pack kernel and the per-lane stores of
    // C pay llvmpipe's per-value storage-buffer cost. Everything else is packed / stored by
    // kernels. Commands are recorded in order; wgpu orders each texture's writes before its
    // reads.
    let copy_a =
        args.a_layout == Layout::RowMajor && copyable(args.a, args.k, wgpu::BufferUsages::COPY_SRC);
    // A copy of B fills K rows, and the texture's rows up to ⌈K/4⌉·4 must be zero (a reused
    // texture holds the last product's values there, perhaps non-finite): only the pack
    // writes them.
    let copy_b = args.b_layout == Layout::RowMajor
        && args.k.is_multiple_of(4)
        && copyable(args.b, args.n, wgpu::BufferUsages::COPY_SRC);
    let copy_c = !args.accumulate && copyable(args.c, args.n, wgpu::BufferUsages::COPY_DST);
    let c_view = copy_c.then(|| {
        let mut cache = tex.textures.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(("matmul-c", args.n / 4, chunk))
            .or_insert_with(|| common::rgba32f_texture(device, "matmul-c", args.n / 4, chunk))
            .clone()
    });
    let pack = |encoder: &mut wgpu::CommandEncoder,
                src: Region,
                bytes: u64,
                view: &wgpu::TextureView,
                p: PackParams| {
        let (gx, gy) = common::grid(device, (p.width as u64 * p.height as u64).div_ceil(64))?;
        let uni = PackParams { groups_x: gx, ..p };
        let bg = tex.binder.bind(
            device,
            &tex.pack_layout,
            &uni,
            vec![
                (1, common::range(src, bytes)),
                (2, wgpu::BindingResource::TextureView(view)),
            ],
        );
        common::record_pass(encoder, "matmul-pack", &[(&tex.pack, &bg, (gx, gy))]);
        Ok::<_, Error>(())
    };
    if copy_b {
        encoder.copy_buffer_to_texture(
            texel_rows(args.b, 0, args.n / 4),
            texture_origin(&b_view),
            wgpu::Extent3d {
                width: args.n / 4,
                height: args.k,
                depth_or_array_layers: 1,
            },
        );
    } else {
        pack(
            encoder,
            args.b,
            k * n * 4,
            &b_view,
            PackParams {
                rows: args.k,
                cols: args.n,
                row_stride: b_row,
                col_stride: b_col,
                row_offset: 0,
                width: b_width,
                height: b_height,
                groups_x: 0,
            },
        )?;
    }
    for row_offset in (0..args.m).step_by(chunk as usize) {
        let rows = (args.m - row_offset).min(chunk);
        if copy_a {
            encoder.copy_buffer_to_texture(
                texel_rows(args.a, row_offset, args.k / 4),
                texture_origin(&a_view),
                wgpu::Extent3d {
                    width: args.k / 4,
                    height: rows,
                    depth_or_array_layers: 1,
                },
            );
        } else {
            pack(
                encoder,
                args.a,
                m * k * 4,
                &a_view,
                PackParams {
                    rows: args.m,
                    cols: args.k,
                    row_stride: a_row,
                    col_stride: a_col,
                    row_offset,
                    width: a_width,
                    height: chunk,
                    groups_x: 0,
                },
            )?;
        }
        let uni = ProductParams {
            m: args.m,
            n: args.n,
            k4,
            row_offset,
            use_bias: args.bias.is_some() as u32,
            accumulate: args.accumulate as u32,
        };
        let bias = common::range_or(args.bias.map(|b| (b, n * 4)), unused);
        let grid = (args.n.div_ceil(TILE_COLS), rows.div_ceil(TILE_ROWS));
        if let Some(c_view) = &c_view {
            let bg = tex.binder.bind(
                device,
                &tex.product_tex_layout,
                &uni,
                vec![
                    (1, wgpu::BindingResource::TextureView(&a_view)),
                    (2, wgpu::BindingResource::TextureView(&b_view)),
                    (3, bias),
                    (5, wgpu::BindingResource::TextureView(c_view)),
                ],
            );
            common::record_pass(encoder, "matmul-texture", &[(&tex.product_tex, &bg, grid)]);
            encoder.copy_texture_to_buffer(
                texture_origin(c_view),
                texel_rows(args.c, row_offset, args.n / 4),
                wgpu::Extent3d {
                    width: args.n / 4,
                    height: rows,
                    depth_or_array_layers: 1,
                },
            );
        } else {
            let bg = tex.binder.bind(
                device,
                &tex.product_layout,
                &uni,
                vec![
                    (1, wgpu::BindingResource::TextureView(&a_view)),
                    (2, wgpu::BindingResource::TextureView(&b_view)),
                    (3, bias),
                    (4, common::range(args.c, m * n * 4)),
                ],
            );
            common::record_pass(encoder, "matmul-texture", &[(&tex.product, &bg, grid)]);
        }
    }
    Ok(())
}
