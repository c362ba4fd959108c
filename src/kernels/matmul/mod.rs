//! Launcher of the matmul family: C = op(A)·op(B) (+ bias) (+= C), the products of the
//! linear layer. Three paths, one interface, chosen by [`Paths`]:
//! - portable (`shaders/matmul.wgsl`): one invocation per output from storage buffers;
//!   correct on every adapter, the fallback and the reference the fast paths are tested
//!   against;
//! - tiled (`shaders/matmul_tiled.wgsl`), for hardware GPUs: blocks of A and B staged in
//!   workgroup memory, register tiles, coalesced loads (see `tiled.rs`);
//! - texture8 (`shaders/matmul_texture.wgsl`), for llvmpipe: both operands are packed into
//!   zero-padded rgba32float textures (which also applies their layouts), then 8-lane
//!   subgroups compute 16×64 tiles of C from texel fetches. It is chosen on CPU adapters with
//!   subgroup operations and subgroups of exactly 8 lanes (so a workgroup of 8 is one whole
//!   subgroup); where a packed operand would exceed the texture size limit along K or N the
//!   launch runs the portable kernel, and tall A operands are packed and multiplied in
//!   row chunks.

use super::common::{self, Family, Operand, Region};
use super::Paths;
use crate::{Error, Result};

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
    /// Rows M of C.
    pub m: u32,
    /// The shared dimension K.
    pub k: u32,
    /// Columns N of C.
    pub n: u32,
    /// Input: A, stored as `a_layout` says.
    pub a: Region<'a>,
    /// A as stored (M×K) or transposed (K×M).
    pub a_layout: Layout,
    /// Input: B, stored as `b_layout` says.
    pub b: Region<'a>,
    /// B as stored (K×N) or transposed (N×K).
    pub b_layout: Layout,
    /// Added to every row (N values), if given.
    pub bias: Option<Region<'a>>,
    /// Output: C (M×N, row-major).
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
    /// `matmul_tiled` with this blocking: hardware GPUs.
    Tiled(Tile),
    /// `pack_rows4` (or copies) + `matmul_texture8`: llvmpipe-shaped, 16×64 tiles per 8-lane
    /// subgroup.
    Texture8,
    /// The same with `matmul_texture16`: 16×64 tiles per 16-lane subgroup (llvmpipe with
    /// `LP_NATIVE_VECTOR_WIDTH=512`).
    Texture16,
}

impl std::fmt::Display for MatmulPath {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            MatmulPath::Portable => write!(f, "portable"),
            MatmulPath::Tiled(t) => write!(f, "tiled {}×{}×{}", t.m, t.n, t.k),
            MatmulPath::Texture8 => write!(f, "texture8"),
            MatmulPath::Texture16 => write!(f, "texture16"),
        }
    }
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

/// Compiled matmul pipelines for one device.
pub struct MatmulKernels {
    /// The portable kernel, and the tiled kernels' specialisations.
    family: Family,
    /// Present where the device qualifies (see [`MatmulKernels::fast_path_supported`]).
    texture: Option<TexturePath>,
    /// Present where the paths are [`Paths::Tiled`] and the device allows the tiles.
    tiled: Option<TiledPath>,
}

mod texture;
mod tiled;

use texture::{record_texture, TexturePath};
pub use tiled::Tile;
use tiled::TiledPath;

impl MatmulKernels {
    /// The kernels of [`Paths::choose`] for `device`.
    pub fn new(device: &wgpu::Device) -> Result<Self> {
        Self::with_paths(device, Paths::choose(device)?)
    }

    /// The kernels of `paths`, where `device` supports them (else the portable kernel).
    pub fn with_paths(device: &wgpu::Device, paths: Paths) -> Result<Self> {
        let family = Family::with_variant(
            device,
            "matmul",
            &["matmul_portable"],
            "matmul_tiled",
            &["matmul_tiled"],
        )?;
        let tiled = match paths {
            Paths::Tiled => TiledPath::new(device),
            _ => None,
        };
        // The tiles' pipelines are made now, so that a launch finds them compiled.
        for tile in tiled.iter().flat_map(TiledPath::tiles) {
            family.specialised(device, "matmul_tiled", "matmul_tiled", &tile.constants())?;
        }
        let texture = if paths == Paths::Texture && Self::fast_path_supported(device) {
            Some(TexturePath::new(device)?)
        } else {
            None
        };
        Ok(Self {
            family,
            texture,
            tiled,
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

    /// Turns the fast paths off (`false`), e.g. to time or test the portable kernel.
    pub fn with_fast_path(mut self, enabled: bool) -> Self {
        if !enabled {
            self.texture = None;
            self.tiled = None;
        }
        self
    }

    /// Runs every tiled launch with `tile` (one of [`Tile::SMALL`], [`Tile::LARGE`]) instead
    /// of choosing by size; lets tests cover both blockings with small matrices. No effect
    /// off the tiled path.
    pub fn with_tile(mut self, tile: Tile) -> Self {
        if let Some(t) = &mut self.tiled {
            t.forced = Some(tile);
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
    pub fn path(&self, device: &wgpu::Device, m: u32, k: u32, n: u32) -> MatmulPath {
        if let Some(t) = &self.tiled {
            let probe = MatmulParams {
                m,
                n,
                k,
                ..bytemuck::Zeroable::zeroed()
            };
            if t.launch(device, &probe).is_some() {
                return MatmulPath::Tiled(t.tile(m, n));
            }
        }
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
        let mut operands = vec![
            ("a", args.a, m * k * 4, false),
            ("b", args.b, k * n * 4, false),
            ("c", args.c, m * n * 4, true),
        ];
        operands.extend(args.bias.map(|r| ("bias", r, n * 4, false)));
        common::check_launch(device, &operands)?;
        let (a_row, a_col) = match args.a_layout {
            Layout::RowMajor => (args.k, 1),
            Layout::Transposed => (1, args.m),
        };
        let (b_row, b_col) = match args.b_layout {
            Layout::RowMajor => (args.n, 1),
            Layout::Transposed => (1, args.k),
        };
        if let (MatmulPath::Texture8 | MatmulPath::Texture16, Some(tex)) =
            (self.path(device, args.m, args.k, args.n), &self.texture)
        {
            let strides = ((a_row, a_col), (b_row, b_col));
            return record_texture(device, encoder, tex, args, strides);
        }
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
        let operands = [
            Operand::buffer("a", args.a, m * k * 4),
            Operand::buffer("b", args.b, k * n * 4),
            Operand::maybe("bias", args.bias.map(|b| (b, n * 4))),
            Operand::buffer("c", args.c, m * n * 4),
        ];
        let bg = self.family.bind(device, &params, &operands)?;
        let (pipeline, grid) = match self.tiled.as_ref().and_then(|t| t.launch(device, &params)) {
            Some((tile, grid)) => {
                let constants = tile.constants();
                let tiled = "matmul_tiled";
                let p = self.family.specialised(device, tiled, tiled, &constants)?;
                (p, grid)
            }
            None => (self.family.pipeline("matmul_portable").clone(), (gx, gy)),
        };
        common::record_pass(encoder, "matmul", &[(&pipeline, &bg, grid)]);
        Ok(())
    }
}
