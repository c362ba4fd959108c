//! Launcher of `shaders/matmul.wgsl`: C = op(A)·op(B) (+ bias) (+= C), the products of the
//! linear layer. Only the portable kernel exists so far (one invocation per output, correct on
//! every adapter); the adapter-shaped fast kernels of DESIGN §6 are not written yet.

use super::common::{self, Slot};
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

/// One product C (M×N, row-major) = op(A) (M×K) · op(B) (K×N).
pub struct MatmulArgs<'a> {
    pub m: u32,
    pub k: u32,
    pub n: u32,
    pub a: &'a wgpu::Buffer,
    pub a_layout: Layout,
    pub b: &'a wgpu::Buffer,
    pub b_layout: Layout,
    /// Added to every row (N values), if given.
    pub bias: Option<&'a wgpu::Buffer>,
    pub c: &'a wgpu::Buffer,
    /// C += op(A)·op(B) instead of C = …
    pub accumulate: bool,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    a_row: u32,
    a_col: u32,
    b_row: u32,
    b_col: u32,
    use_bias: u32,
    accumulate: u32,
    groups_x: u32,
}

/// Compiled matmul pipelines for one device.
pub struct MatmulKernels {
    layout: wgpu::BindGroupLayout,
    portable: wgpu::ComputePipeline,
    unused: wgpu::Buffer,
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
        Ok(Self {
            layout,
            portable,
            unused: common::placeholder(device),
        })
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
        let (gx, gy) = common::grid(device, (m * n).div_ceil(64))?;
        let params = Params {
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
        let ub = common::uniform(device, &params);
        let bg = common::bind_group(
            device,
            &self.layout,
            vec![
                (0, ub.as_entire_binding()),
                (1, common::range(args.a, m * k * 4)),
                (2, common::range(args.b, k * n * 4)),
                (
                    3,
                    common::range_or(args.bias.map(|b| (b, n * 4)), &self.unused),
                ),
                (4, common::range(args.c, m * n * 4)),
            ],
        );
        common::record_pass(encoder, "matmul", &[(&self.portable, &bg, (gx, gy))]);
        Ok(())
    }
}
