//! The matmul's tiled path for hardware GPUs (`shaders/matmul_tiled.wgsl`): workgroup-memory
//! tiles of A and B, a register tile of C per invocation, coalesced loads for every layout.
//! Two tile shapes are compiled from the one shader by pipeline-overridable constants; each
//! launch takes the large one where the product has enough blocks to fill a big GPU.

use super::MatmulParams;

/// The blocking of one tiled pipeline: a `m`×`n` block of C per workgroup, K staged `k` at
/// a time, a `thread_m`×`thread_n` register tile per invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    /// Rows of C per workgroup.
    pub m: u32,
    /// Columns of C per workgroup.
    pub n: u32,
    /// Values of K staged in workgroup memory at a time.
    pub k: u32,
    /// Rows of C per invocation.
    pub thread_m: u32,
    /// Columns of C per invocation.
    pub thread_n: u32,
}

impl Tile {
    /// 64×64 blocks, K by 16, 4×4 per invocation: 256 invocations, 8 KiB of workgroup memory.
    pub const SMALL: Tile = Tile {
        m: 64,
        n: 64,
        k: 16,
        thread_m: 4,
        thread_n: 4,
    };
    /// 128×128 blocks, K by 8, 8×8 per invocation: 256 invocations, 8 KiB, and half the
    /// global loads per FLOP of [`Tile::SMALL`].
    pub const LARGE: Tile = Tile {
        m: 128,
        n: 128,
        k: 8,
        thread_m: 8,
        thread_n: 8,
    };

    /// Invocations per workgroup.
    pub fn invocations(&self) -> u32 {
        (self.m / self.thread_m) * (self.n / self.thread_n)
    }

    /// Workgroup memory in bytes: one K-step of A and of B.
    pub fn workgroup_bytes(&self) -> u32 {
        4 * self.k * (self.m + self.n)
    }

    /// Bytes read from global memory per FLOP of an M×K×N product run with this tile
    /// (operands only): every block reads a K×`m` slice of A and a K×`n` slice of B and
    /// does 2·`m`·`n`·K FLOPs, so (4(m+n))/(2mn) = 2(m+n)/(mn).
    pub fn bytes_per_flop(&self) -> f64 {
        2.0 * (self.m + self.n) as f64 / (self.m as f64 * self.n as f64)
    }

    /// Whether `device`'s limits allow this tile.
    pub fn fits(&self, device: &wgpu::Device) -> bool {
        let l = device.limits();
        self.invocations() <= l.max_compute_invocations_per_workgroup
            && self.n / self.thread_n <= l.max_compute_workgroup_size_x
            && self.m / self.thread_m <= l.max_compute_workgroup_size_y
            && self.workgroup_bytes() <= l.max_compute_workgroup_storage_size
    }

    /// The blocking an M×N product takes where the device has both: the large one once the
    /// product has `LARGE_BLOCKS` (128) of its blocks.
    pub fn for_product(m: u32, n: u32) -> Tile {
        let blocks =
            (m as u64).div_ceil(Tile::LARGE.m as u64) * (n as u64).div_ceil(Tile::LARGE.n as u64);
        if blocks >= LARGE_BLOCKS {
            Tile::LARGE
        } else {
            Tile::SMALL
        }
    }

    /// The pipeline constants of this blocking.
    pub(super) fn constants(&self) -> [(&'static str, f64); 5] {
        [
            ("TILE_M", self.m as f64),
            ("TILE_N", self.n as f64),
            ("TILE_K", self.k as f64),
            ("THREAD_M", self.thread_m as f64),
            ("THREAD_N", self.thread_n as f64),
        ]
    }
}

/// Large blocks only pay when there are enough of them to occupy every multiprocessor of a
/// large GPU (132 on an H100); below this many, the small tile's 4× more blocks win.
const LARGE_BLOCKS: u64 = 128;

/// The tiled path: which tile shapes the device allows (their pipelines are the family's
/// specialisations of `matmul_tiled`).
pub(super) struct TiledPath {
    large: bool,
    /// Forces one tile shape for every launch (tests); `None` chooses per launch.
    pub(super) forced: Option<Tile>,
}

impl TiledPath {
    /// The tiled path, or `None` where `device` cannot run even the small tile.
    pub(super) fn new(device: &wgpu::Device) -> Option<Self> {
        Tile::SMALL.fits(device).then(|| Self {
            large: Tile::LARGE.fits(device),
            forced: None,
        })
    }

    /// The tile shapes this device runs.
    pub(super) fn tiles(&self) -> impl Iterator<Item = Tile> {
        std::iter::once(Tile::SMALL).chain(self.large.then_some(Tile::LARGE))
    }

    /// The tile an M×N product runs with.
    pub(super) fn tile(&self, m: u32, n: u32) -> Tile {
        if let Some(t) = self.forced {
            return t;
        }
        match Tile::for_product(m, n) {
            Tile::LARGE if self.large => Tile::LARGE,
            _ => Tile::SMALL,
        }
    }

    /// The tile and workgroup grid of one launch, or `None` where the grid would exceed the
    /// device's per-dimension limit or the tile is not this device's (the caller falls back
    /// to the portable kernel).
    pub(super) fn launch(
        &self,
        device: &wgpu::Device,
        params: &MatmulParams,
    ) -> Option<(Tile, (u32, u32))> {
        let tile = self.tile(params.m, params.n);
        let max = device.limits().max_compute_workgroups_per_dimension;
        let grid = (params.n.div_ceil(tile.n), params.m.div_ceil(tile.m));
        if grid.0 > max || grid.1 > max || (tile == Tile::LARGE && !self.large) {
            return None;
        }
        Some((tile, grid))
    }
}
