//! The matmul's texture path for llvmpipe: operands packed (or copied) into zero-padded
//! rgba32float textures, then 8- or 16-lane subgroups compute 16×64 tiles of C from texel
//! fetches (`shaders/matmul_texture.wgsl`).

use super::{Layout, MatmulArgs, PackParams, ProductParams, TILE_COLS, TILE_ROWS};
use crate::kernels::common::{self, Family, Operand, Region};
use crate::Result;
use std::collections::HashMap;
use std::sync::Mutex;

/// The texture path's kernels: three families of `matmul_texture.wgsl`, each with the
/// bindings of its entry point.
pub(super) struct TexturePath {
    /// `pack_rows4`: an operand into its texture.
    pack: Family,
    /// `matmul_texture{8,16}`: the product stored into C.
    product: Family,
    /// `matmul_texture{8,16}_to_texture`: C written to a texture and copied out.
    product_tex: Family,
    /// The product entry points for this device's subgroups: (into C, into a texture).
    entries: (&'static str, &'static str),
    /// Subgroup size the product kernels are built for (8 or 16).
    pub(super) lanes: u32,
    /// Most rows of A packed and multiplied per chunk (a multiple of the tile's 16).
    pub(super) row_chunk: u32,
    /// Packed-operand textures by (role, width, height), made on first use and reused: the
    /// passes of an encoder run in order, so a later product repacks only after an earlier
    /// one has read them.
    pub(super) textures: Mutex<HashMap<(&'static str, u32, u32), wgpu::TextureView>>,
}

/// The product entry points by subgroup size.
const PRODUCT: [(u32, &str, &str); 2] = [
    (8, "matmul_texture8", "matmul_texture8_to_texture"),
    (16, "matmul_texture16", "matmul_texture16_to_texture"),
];

impl TexturePath {
    /// The texture path for `device`, whose subgroups are 8 or 16 lanes
    /// ([`super::MatmulKernels::fast_path_supported`]).
    pub(super) fn new(device: &wgpu::Device) -> Result<Self> {
        let lanes = device.adapter_info().subgroup_min_size;
        let &(_, product, product_tex) = PRODUCT
            .iter()
            .find(|p| p.0 == lanes)
            .expect("the texture path runs on 8- or 16-lane subgroups");
        let shader = "matmul_texture";
        let max = device.limits().max_texture_dimension_2d;
        Ok(Self {
            pack: Family::new(device, shader, &["pack_rows4"])?,
            product: Family::new(device, shader, &[product])?,
            product_tex: Family::new(device, shader, &[product_tex])?,
            entries: (product, product_tex),
            lanes,
            row_chunk: max / TILE_ROWS * TILE_ROWS,
            textures: Mutex::new(HashMap::new()),
        })
    }

    /// Width in texels of the B texture for N columns: whole tiles of 64 columns.
    pub(super) fn b_width(&self, n: u64) -> u64 {
        n.div_ceil(TILE_COLS as u64) * TILE_COLS as u64 / 4
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
/// Commands are recorded in order; wgpu orders each texture's write before its reads.
///
/// Operands that are row-major with rows of whole 256-byte multiples go into their textures
/// by copy_buffer_to_texture, and such a C comes back from a texture by
/// copy_texture_to_buffer: plain copies, where the pack kernel and the per-lane stores of C
/// pay llvmpipe's per-value storage-buffer cost. Everything else is packed / stored by
/// kernels.
pub(super) fn record_texture(
    device: &wgpu::Device,
    encoder: &mut wgpu::CommandEncoder,
    tex: &TexturePath,
    args: &MatmulArgs,
    strides: ((u32, u32), (u32, u32)),
) -> Result<()> {
    let plan = Plan::new(tex, args);
    let a_view = tex.texture(device, "matmul-a-packed", plan.a_width, plan.chunk);
    let b_view = tex.texture(device, "matmul-b-packed", plan.b_width, plan.k4);
    let copy_c = !args.accumulate && copyable(args.c, args.n, wgpu::BufferUsages::COPY_DST);
    let c_view = copy_c.then(|| tex.texture(device, "matmul-c", args.n / 4, plan.chunk));
    tex.fill_b(device, encoder, args, &plan, (&b_view, strides.1))?;
    for row_offset in (0..args.m).step_by(plan.chunk as usize) {
        tex.fill_a(
            device,
            encoder,
            args,
            &plan,
            (&a_view, strides.0, row_offset),
        )?;
        let chunk = Chunk {
            a: &a_view,
            b: &b_view,
            c: c_view.as_ref(),
            row_offset,
        };
        tex.product(device, encoder, args, &plan, chunk)?;
    }
    Ok(())
}

/// One chunk of A's rows: the packed A and B, C's texture where C comes back by a copy (else
/// the product stores into C), and the chunk's first row.
struct Chunk<'a> {
    a: &'a wgpu::TextureView,
    b: &'a wgpu::TextureView,
    c: Option<&'a wgpu::TextureView>,
    row_offset: u32,
}

/// The packed operands' sizes: K rounded up to whole texels, B's texture, A's row chunk.
struct Plan {
    k4: u32,
    a_width: u32,
    b_width: u32,
    chunk: u32,
}

impl Plan {
    fn new(tex: &TexturePath, args: &MatmulArgs) -> Self {
        let k4 = args.k.div_ceil(4) * 4;
        Self {
            k4,
            a_width: k4 / 4,
            b_width: tex.b_width(args.n as u64) as u32,
            chunk: (args.m.div_ceil(TILE_ROWS) * TILE_ROWS).min(tex.row_chunk),
        }
    }
}

impl TexturePath {
    /// The cached texture of `role` and size, made on first use.
    fn texture(
        &self,
        device: &wgpu::Device,
        role: &'static str,
        w: u32,
        h: u32,
    ) -> wgpu::TextureView {
        let mut cache = self.textures.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry((role, w, h))
            .or_insert_with(|| common::rgba32f_texture(device, role, w, h))
            .clone()
    }

    /// Packs `bytes` of `src` into `view` with the layout in `p`.
    fn pack(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        src: Region,
        bytes: u64,
        view: &wgpu::TextureView,
        p: PackParams,
    ) -> Result<()> {
        let groups = (p.width as u64 * p.height as u64).div_ceil(64);
        let uniform = |groups_x| PackParams { groups_x, ..p };
        let operands = [
            Operand::buffer("src", src, bytes),
            Operand::texture("packed", view),
        ];
        self.pack
            .launch(device, encoder, "pack_rows4", groups, uniform, &operands)
    }

    /// op(B) into its texture: a copy where B is row-major with whole texels of K rows (the
    /// rows up to ⌈K/4⌉·4 must be zero, and only the pack writes them), else the pack kernel.
    fn fill_b(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &MatmulArgs,
        plan: &Plan,
        (view, (row_stride, col_stride)): (&wgpu::TextureView, (u32, u32)),
    ) -> Result<()> {
        let copy = args.b_layout == Layout::RowMajor
            && args.k.is_multiple_of(4)
            && copyable(args.b, args.n, wgpu::BufferUsages::COPY_SRC);
        if copy {
            let size = extent(args.n / 4, args.k);
            encoder.copy_buffer_to_texture(
                texel_rows(args.b, 0, args.n / 4),
                texture_origin(view),
                size,
            );
            return Ok(());
        }
        let p = PackParams {
            rows: args.k,
            cols: args.n,
            row_stride,
            col_stride,
            row_offset: 0,
            width: plan.b_width,
            height: plan.k4,
            groups_x: 0,
        };
        let bytes = args.k as u64 * args.n as u64 * 4;
        self.pack(device, encoder, args.b, bytes, view, p)
    }

    /// The chunk of op(A)'s rows from `row_offset` into its texture, by copy or pack.
    fn fill_a(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &MatmulArgs,
        plan: &Plan,
        (view, (row_stride, col_stride), row_offset): (&wgpu::TextureView, (u32, u32), u32),
    ) -> Result<()> {
        let rows = (args.m - row_offset).min(plan.chunk);
        let copy = args.a_layout == Layout::RowMajor
            && copyable(args.a, args.k, wgpu::BufferUsages::COPY_SRC);
        if copy {
            let src = texel_rows(args.a, row_offset, args.k / 4);
            encoder.copy_buffer_to_texture(src, texture_origin(view), extent(args.k / 4, rows));
            return Ok(());
        }
        let p = PackParams {
            rows: args.m,
            cols: args.k,
            row_stride,
            col_stride,
            row_offset,
            width: plan.a_width,
            height: plan.chunk,
            groups_x: 0,
        };
        let bytes = args.m as u64 * args.k as u64 * 4;
        self.pack(device, encoder, args.a, bytes, view, p)
    }

    /// One chunk's product from the packed textures, into C's texture (then copied out) or
    /// straight into C.
    fn product(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &MatmulArgs,
        plan: &Plan,
        chunk: Chunk,
    ) -> Result<()> {
        let Chunk {
            a: a_view,
            b: b_view,
            c: c_view,
            row_offset,
        } = chunk;
        let rows = (args.m - row_offset).min(plan.chunk);
        let (m, n) = (args.m as u64, args.n as u64);
        let uni = ProductParams {
            m: args.m,
            n: args.n,
            k4: plan.k4,
            row_offset,
            use_bias: args.bias.is_some() as u32,
            accumulate: args.accumulate as u32,
        };
        let grid = (args.n.div_ceil(TILE_COLS), rows.div_ceil(TILE_ROWS));
        let mut operands = vec![
            Operand::texture("a_tex", a_view),
            Operand::texture("b_tex", b_view),
            Operand::maybe("bias", args.bias.map(|b| (b, n * 4))),
        ];
        let Some(c_view) = c_view else {
            operands.push(Operand::buffer("c", args.c, m * n * 4));
            let bg = self.product.bind(device, &uni, &operands)?;
            self.product.record(encoder, &[(self.entries.0, &bg, grid)]);
            return Ok(());
        };
        operands.push(Operand::texture("c_tex", c_view));
        let bg = self.product_tex.bind(device, &uni, &operands)?;
        self.product_tex
            .record(encoder, &[(self.entries.1, &bg, grid)]);
        let dst = texel_rows(args.c, row_offset, args.n / 4);
        encoder.copy_texture_to_buffer(texture_origin(c_view), dst, extent(args.n / 4, rows));
        Ok(())
    }
}

fn extent(width: u32, height: u32) -> wgpu::Extent3d {
    wgpu::Extent3d {
        width,
        height,
        depth_or_array_layers: 1,
    }
}
