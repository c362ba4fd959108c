//! Launcher of `shaders/reduce.wgsl`: deterministic multi-pass sums to one vec4.

use super::common::{self, Family, Operand, Region};
use crate::{Error, Result};

/// Items each workgroup adds (64 invocations × 16 items each).
pub const CHUNK: u32 = 1024;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ReduceParams {
    pub(crate) items: u32,
    pub(crate) width: u32,
    pub(crate) chunk: u32,
    pub(crate) groups_x: u32,
}

/// Sums `items` items of `width` (1 or 4) f32 each into one vec4, in a fixed order.
pub struct ReduceKernel {
    family: Family,
}

/// A deterministic sum of `items` items of `width` (1 or 4) f32 into one vec4, through two
/// scratch buffers.
#[derive(Clone, Copy)]
pub struct ReduceArgs<'a> {
    /// Input: `items`·`width` f32.
    pub input: Region<'a>,
    /// Items summed.
    pub items: u32,
    /// f32 per item: 1 or 4.
    pub width: u32,
    /// Scratch: two buffers of [`ReduceKernel::scratch_bytes`] each, used in turn by the passes.
    pub scratch: [Region<'a>; 2],
    /// Output: one vec4 (for width 1, the sum is in the first lane).
    pub out: Region<'a>,
}

impl ReduceKernel {
    /// The reduction pipeline for `device`.
    pub fn new(device: &wgpu::Device) -> Result<Self> {
        Ok(Self {
            family: Family::new(device, "reduce", &["sum_items"])?,
        })
    }

    /// Bytes of each of the two scratch buffers a reduction of `items` items needs.
    pub fn scratch_bytes(items: u32) -> u64 {
        (items.div_ceil(CHUNK) as u64).max(1) * 16
    }

    /// Records the passes: `input` → scratch ping-pong → `out` (one vec4, 16 bytes).
    pub fn record(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &ReduceArgs<'_>,
    ) -> Result<()> {
        let ReduceArgs {
            input,
            items,
            width,
            scratch,
            out,
        } = *args;
        if items == 0 {
            return Err(Error::Shape("reduce: nothing to sum (0 items)".into()));
        }
        if width != 1 && width != 4 {
            return Err(Error::Param(format!(
                "reduce: item width must be 1 or 4, got {width}"
            )));
        }
        common::check_storage(device, "input", input, items as u64 * width as u64 * 4)?;
        common::check_storage(device, "out", out, 16)?;
        for s in scratch {
            common::check_storage(device, "scratch", s, Self::scratch_bytes(items))?;
        }
        let mut passes = Vec::new();
        let (mut n, mut w, mut src): (u32, u32, Region) = (items, width, input);
        let mut turn = 0;
        loop {
            let g = n.div_ceil(CHUNK);
            let dst = if g == 1 { out } else { scratch[turn % 2] };
            let (gx, _) = common::grid(device, g as u64)?;
            let uni = ReduceParams {
                items: n,
                width: w,
                chunk: CHUNK,
                groups_x: gx,
            };
            let operands = [
                Operand::buffer("input", src, n as u64 * w as u64 * 4),
                Operand::buffer("output", dst, g as u64 * 16),
            ];
            let bg = self.family.bind(device, &uni, &operands)?;
            passes.push((bg, common::grid(device, g as u64)?));
            if g == 1 {
                break;
            }
            (n, w, src) = (g, 4, dst);
            turn += 1;
        }
        let dispatches: Vec<_> = passes
            .iter()
            .map(|(bg, grid)| ("sum_items", bg, *grid))
            .collect();
        self.family.record(encoder, &dispatches);
        Ok(())
    }
}
