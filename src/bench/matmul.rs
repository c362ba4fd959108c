//! Matmul benchmark: GFLOP/s of the default (adapter-chosen) path and of the portable
//! kernel at DiT-S linear-layer shapes, for A·B and A·Bᵀ (the layout of a linear
//! layer's (out, in) weight), bias included. `scripts/bench_matmul_vs_torch.sh` runs this
//! beside PyTorch's CPU sgemm on the same machine.
//!
//! On CPU adapters timing is the wall clock of submit + wait, not timestamps: on lavapipe
//! (Mesa 22.3), once a command buffer has used textures, later timestamp pairs around
//! storage-buffer dispatches come back near zero (measured: 0.04 ms for a 105 ms portable
//! product). Wall time includes about 0.3–0.5 ms of submit and wait per run, which the
//! GFLOP/s figures carry. Other adapters with timestamps are timed by them (the GPU's own
//! time for the recorded products, no submit cost).

use super::time_ms;
use crate::gpu::{Gpu, GpuTimer};
use crate::kernels::{Layout, MatmulArgs, MatmulKernels};
use crate::Result;

/// (M, K, N): DiT-S-sized linear layers and a square reference.
pub const DEFAULT_SHAPES: &[(u32, u32, u32)] = &[
    (1024, 64, 192),
    (1024, 256, 64),
    (4096, 128, 512),
    (1024, 1024, 1024),
];

/// One measured product.
pub struct MatmulRow {
    pub shape: (u32, u32, u32),
    pub b_layout: Layout,
    /// The default kernel on this device (`MatmulKernels::path`).
    pub path: String,
    pub ms: f64,
    /// The portable kernel, where timed.
    pub portable_ms: Option<f64>,
}

impl MatmulRow {
    pub fn flops(&self) -> f64 {
        let (m, k, n) = self.shape;
        2.0 * m as f64 * k as f64 * n as f64
    }
}

/// The report.
pub struct MatmulReport {
    pub adapter: String,
    pub driver: String,
    pub timing: &'static str,
    pub reps: usize,
    /// Products recorded per submission (the default kernel's ms is per product).
    pub stream: usize,
    pub rows: Vec<MatmulRow>,
}

impl MatmulReport {
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "adapter: {}, driver: {}\ntiming: {}, median of {} runs (portable kernel: fewer, see \
             --portable-reps); {}\n\n",
            self.adapter,
            self.driver,
            self.timing,
            self.reps,
            if self.stream == 1 {
                "one product per submission".to_string()
            } else {
                format!(
                    "default kernel: {} products per submission, time per product",
                    self.stream
                )
            }
        );
        s += "| (M, K, N) | product | kernel | ms | GFLOP/s | portable ms | portable GFLOP/s | speed-up |\n";
        s += "|---|---|---|---:|---:|---:|---:|---:|\n";
        for r in &self.rows {
            let (m, k, n) = r.shape;
            let gf = |ms: f64| r.flops() / (ms * 1e6);
            s += &format!(
                "| ({m}, {k}, {n}) | {} | {} | {:.3} | {:.1} | {} | {} | {} |\n",
                match r.b_layout {
                    Layout::RowMajor => "A·B",
                    Layout::Transposed => "A·Bᵀ",
                },
                r.path,
                r.ms,
                gf(r.ms),
                r.portable_ms.map_or("".into(), |p| format!("{p:.1}")),
                r.portable_ms.map_or("".into(), |p| format!("{:.2}", gf(p))),
                r.portable_ms
                    .map_or("".into(), |p| format!("{:.1}×", p / r.ms)),
            );
        }
        s
    }
}

/// Times every shape for A·B and A·Bᵀ with the default kernel (`reps` runs) and, when
/// `portable_reps` > 0, with the portable kernel.
pub fn matmul(
    gpu: &Gpu,
    shapes: &[(u32, u32, u32)],
    warmup: usize,
    reps: usize,
    portable_reps: usize,
    stream: usize,
) -> Result<MatmulReport> {
    for &(m, k, n) in shapes {
        for (name, rows, cols) in [("A", m, k), ("B", k, n), ("C", m, n)] {
            let what = format!("{name} ({rows}×{cols}) of the product {m}×{k}×{n}");
            super::fits_binding(gpu, &what, rows as u64 * cols as u64 * 4)?;
        }
    }
    let dev = &gpu.device;
    // Wall clock on CPU adapters; see the module comment.
    let timer = match gpu.info.device_type {
        wgpu::DeviceType::Cpu => None,
        _ => GpuTimer::new(gpu),
    };
    let t = timer.as_ref();
    let fast = MatmulKernels::with_paths(dev, gpu.paths)?;
    let portable = MatmulKernels::with_paths(dev, gpu.paths)?.with_fast_path(false);
    let reps = reps.max(1);
    let mut rows = Vec::new();
    for &(m, k, n) in shapes {
        // Values in [-1, 1) from a simple hash: the timing does not depend on them.
        let fill = |len: u32, salt: u32| -> Vec<f32> {
            (0..len)
                .map(|i| {
                    let h = (i ^ salt).wrapping_mul(0x9E37_79B9) >> 8;
                    h as f32 / (1u32 << 23) as f32 - 1.0
                })
                .collect()
        };
        let a = gpu.upload("a", &fill(m * k, 1));
        let b = gpu.upload("b", &fill(k * n, 2));
        let bias = gpu.upload("bias", &fill(n, 3));
        let c = gpu.zeros("c", m as u64 * n as u64 * 4);
        for b_layout in [Layout::RowMajor, Layout::Transposed] {
            let args = MatmulArgs {
                m,
                k,
                n,
                a: (&a).into(),
                a_layout: Layout::RowMajor,
                b: (&b).into(),
                b_layout,
                bias: Some((&bias).into()),
                c: (&c).into(),
                accumulate: false,
            };
            // `stream` products back to back in one command buffer, one submit and wait.
            let stream = stream.max(1);
            let ms = time_ms(gpu, t, warmup, reps, |enc| {
                (0..stream).try_for_each(|_| fast.record(dev, enc, &args))
            })? / stream as f64;
            let portable_ms =
                if portable_reps > 0 && fast.path(dev, m, k, n) != portable.path(dev, m, k, n) {
                    Some(time_ms(gpu, t, 1, portable_reps, |enc| {
                        portable.record(dev, enc, &args)
                    })?)
                } else {
                    None
                };
            rows.push(MatmulRow {
                shape: (m, k, n),
                b_layout,
                path: fast.path(dev, m, k, n).to_string(),
                ms,
                portable_ms,
            });
        }
    }
    Ok(MatmulReport {
        adapter: gpu.info.name.clone(),
        driver: format!("{} {}", gpu.info.driver, gpu.info.driver_info),
        timing: match t {
            Some(_) => "GPU timestamps",
            None => {
                "wall clock of submit + wait (no timestamps, or a CPU adapter, whose \
                 timestamps are unreliable once textures are in use)"
            }
        },
        reps,
        stream: stream.max(1),
        rows,
    })
}
