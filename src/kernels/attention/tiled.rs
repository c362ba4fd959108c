//! The attention's tiled path for hardware GPUs (`shaders/attention_tiled.wgsl`): blocks of
//! 64 query (or key) rows per workgroup, the other side's rows staged through workgroup
//! memory. One set of pipelines per head size, compiled on first use: the head size is a
//! pipeline constant so that each row lives in registers.

use super::AttentionShape;

/// Rows per workgroup block (`BQ` in the shader).
pub(super) const BLOCK: u32 = 64;
/// Most rows staged at once (`MAX_BKV`).
const MAX_STAGED: u32 = 64;
/// Workgroup bytes besides the staged rows: lse and δ of up to 64 rows.
const SCALARS_BYTES: u32 = 2 * 4 * MAX_STAGED;
/// The most workgroup memory the kernels ask for even where a device offers more: 32 KiB
/// holds 64 staged rows of two 64-value heads, the DiT's usual head size.
const BUDGET: u32 = 32 * 1024;

pub(super) const ENTRIES: [&str; 3] = [
    "attention_forward_tiled",
    "attention_dq_tiled",
    "attention_dkv_tiled",
];

/// What the tiled kernels are specialised by on this device.
pub(super) struct TiledPath {
    /// Workgroup bytes available to the staged rows.
    staging_bytes: u32,
}

impl TiledPath {
    /// The path where `device` has 64 invocations per workgroup and room to stage at least
    /// 8 rows of the largest head; `None` elsewhere.
    pub(super) fn new(device: &wgpu::Device) -> Option<Self> {
        let l = device.limits();
        let staging_bytes = l.max_compute_workgroup_storage_size.min(BUDGET) - SCALARS_BYTES;
        let ok = l.max_compute_invocations_per_workgroup >= BLOCK
            && l.max_compute_workgroup_size_x >= BLOCK
            && staging_bytes >= 8 * 2 * 4 * super::MAX_HEAD_DIM;
        ok.then_some(Self { staging_bytes })
    }

    /// Rows staged per step for a head size: two blocks of rows fill the staging bytes.
    pub(super) fn staged_rows(&self, head_dim: u32) -> u32 {
        (self.staging_bytes / (2 * 4 * head_dim)).min(MAX_STAGED)
    }

    /// Workgroups of one launch: a block of rows per (sample, head).
    pub(super) fn workgroups(shape: AttentionShape) -> u64 {
        shape.samples as u64 * shape.heads as u64 * shape.tokens.div_ceil(BLOCK) as u64
    }

    /// The pipeline constants of the kernels for `head_dim`: the head size, so that each
    /// row lives in registers, and the rows staged per step.
    pub(super) fn constants(&self, head_dim: u32) -> [(&'static str, f64); 2] {
        [
            ("HD", head_dim as f64),
            ("BKV", self.staged_rows(head_dim) as f64),
        ]
    }
}
