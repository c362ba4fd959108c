//! Kernel benchmarks, shared by `cargo bench` and `imba bench kernels` / `imba bench matmul`,
//! and the DiT step benchmark of `imba bench dit`.
//!
//! GPU time comes from timestamp queries written around the recorded launch (median of
//! `reps` runs after `warmup` runs, one submit each; the fused kernels and the unfused chain
//! are timed in alternation, so their ratio holds on a machine with other load); where the device has no timestamps it
//! falls back to wall time of submit + wait and says so. Bandwidth is reported for the
//! minimum traffic a kernel must move, against the device's copy bandwidth measured in the
//! same run.

use crate::diffusion::DdpmSchedule;
use crate::gpu::{Gpu, GpuTimer};
use crate::kernels::*;
use crate::model::tokens;
use crate::rng;
use crate::Result;
use std::time::Instant;
use unfused::{UnfusedImba, UnfusedWorkspace};

mod dit;
mod matmul;
mod torch;
pub mod train;
pub mod unfused;
pub use dit::{dit_step, DitStepReport, StepBench};
pub use matmul::{matmul, MatmulReport, MatmulRow, DEFAULT_SHAPES as MATMUL_SHAPES};
pub use torch::{side_by_side, SideOptions, SideReport, SideRow, Work};

/// How times were taken.
fn timing_name(timestamps: bool) -> &'static str {
    if timestamps {
        "GPU timestamps"
    } else {
        "wall clock of submit + wait (no timestamp support)"
    }
}

/// The benchmark sizes: DiT-S/2 on 32×32×4 latents, 32×32×3 images at patch 4, toy2d.
pub fn default_sizes() -> Vec<ImageGeometry> {
    let g = |batch, channels, height, width, patch| ImageGeometry {
        batch,
        channels,
        height,
        width,
        patch,
    };
    vec![
        g(256, 4, 32, 32, 2),
        g(64, 3, 32, 32, 4),
        g(1024, 2, 1, 1, 1),
    ]
}

/// One measured line of the report.
pub struct Row {
    pub kernel: String,
    pub shape: TokenShape,
    pub gpu_ms: f64,
    /// Minimum bytes the kernel must read and write.
    pub bytes: u64,
    /// Fused speed-up over the unfused chain, where there is one.
    pub vs_unfused: Option<f64>,
}

/// The whole report.
pub struct Report {
    pub adapter: String,
    pub backend: String,
    pub driver: String,
    pub timing: &'static str,
    pub copy_gbs: f64,
    pub reps: usize,
    pub rows: Vec<Row>,
}

impl Report {
    /// A Markdown table with the device line above it.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "adapter: {} ({}), driver: {}\ntiming: {}, median of {} runs; copy bandwidth \
             (copy_buffer_to_buffer, read + write): {:.1} GB/s\n\n",
            self.adapter, self.backend, self.driver, self.timing, self.reps, self.copy_gbs
        );
        s += "| kernel | (B, N, K) | GPU ms | GB/s (min. traffic) | % of copy | fused / unfused speed-up |\n";
        s += "|---|---|---:|---:|---:|---:|\n";
        for r in &self.rows {
            let gbs = r.bytes as f64 / (r.gpu_ms * 1e6);
            s += &format!(
                "| {} | ({}, {}, {}) | {:.3} | {:.1} | {:.0}% | {} |\n",
                r.kernel,
                r.shape.batch,
                r.shape.tokens,
                r.shape.token_dim,
                r.gpu_ms,
                gbs,
                100.0 * gbs / self.copy_gbs,
                r.vs_unfused.map_or("".into(), |x| format!("{x:.2}×")),
            );
        }
        s
    }
}

/// A launch to time: records its dispatches into the encoder.
type Launch<'a> = dyn FnMut(&mut wgpu::CommandEncoder) -> Result<()> + 'a;

/// Times `record` (median ms over `reps` after `warmup`).
fn time_ms(
    gpu: &Gpu,
    timer: Option<&GpuTimer>,
    warmup: usize,
    reps: usize,
    mut record: impl FnMut(&mut wgpu::CommandEncoder) -> Result<()>,
) -> Result<f64> {
    Ok(time_interleaved(gpu, timer, warmup, reps, &mut [&mut record])?[0])
}

/// Times several launches in turn, one run of each per round (median ms of each over `reps`
/// rounds after `warmup`). Launches compared by a ratio are timed this way, so that a burst
/// of load from elsewhere on a shared machine slows all of them alike.
fn time_interleaved(
    gpu: &Gpu,
    timer: Option<&GpuTimer>,
    warmup: usize,
    reps: usize,
    launches: &mut [&mut Launch],
) -> Result<Vec<f64>> {
    let mut samples = vec![Vec::with_capacity(reps); launches.len()];
    for round in 0..warmup + reps {
        for (record, samples) in launches.iter_mut().zip(samples.iter_mut()) {
            let mut enc = gpu.encoder();
            if let Some(t) = timer {
                t.start(&mut enc);
            }
            record(&mut enc)?;
            if let Some(t) = timer {
                t.stop(&mut enc);
            }
            let start = Instant::now();
            gpu.submit_and_wait(enc)?;
            let wall = start.elapsed().as_secs_f64() * 1e3;
            let ms = match timer {
                Some(t) => t.elapsed_ns(gpu)? / 1e6,
                None => wall,
            };
            if round >= warmup {
                samples.push(ms);
            }
        }
    }
    Ok(samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect())
}

/// Copy bandwidth (read + write bytes per second) of a 64 MiB buffer copy.
fn copy_gbs(gpu: &Gpu, timer: Option<&GpuTimer>, warmup: usize, reps: usize) -> Result<f64> {
    let bytes: u64 = 64 << 20;
    let a = gpu.zeros("copy-a", bytes);
    let b = gpu.zeros("copy-b", bytes);
    let ms = time_ms(gpu, timer, warmup, reps, |enc| {
        enc.copy_buffer_to_buffer(&a, 0, &b, 0, bytes);
        Ok(())
    })?;
    Ok(2.0 * bytes as f64 / (ms * 1e6))
}

/// Runs the kernel benchmark on `sizes`.
/// Refuses a benchmark tensor larger than one storage binding of the device, before anything
/// is allocated.
pub fn fits_binding(gpu: &Gpu, what: &str, bytes: u64) -> Result<()> {
    let max = gpu.device.limits().max_storage_buffer_binding_size;
    if bytes > max {
        return Err(crate::Error::Limit(format!(
            "{what} needs {bytes} bytes, over this device's {max}-byte storage binding; use a \
             smaller size"
        )));
    }
    crate::bounds::host_memory(what, bytes)
}

pub fn kernels(gpu: &Gpu, sizes: &[ImageGeometry], warmup: usize, reps: usize) -> Result<Report> {
    for g in sizes {
        g.validate()?;
        fits_binding(gpu, &format!("a tensor of size {g:?}"), g.elements() * 4)?;
    }
    let dev = &gpu.device;
    let timer = GpuTimer::new(gpu);
    let sched = DdpmSchedule::default_linear();
    let b = KernelBench {
        gpu,
        t: timer.as_ref(),
        warmup,
        reps: reps.max(1),
        loss: LossKernels::new(dev)?,
        portable: LossKernels::new(dev)?.with_vector_path(false),
        unfused: UnfusedImba::new(dev)?,
        noise: NoiseKernels::new(dev)?,
        table: gpu.upload("ddpm", &sched.coefficients()),
        sched,
    };
    let mut rows = Vec::new();
    for &geometry in sizes {
        geometry.validate()?;
        rows.extend(b.size_rows(geometry)?);
    }
    Ok(Report {
        adapter: gpu.info.name.clone(),
        backend: format!("{:?}", gpu.info.backend),
        driver: format!("{} {}", gpu.info.driver, gpu.info.driver_info),
        timing: timing_name(timer.is_some()),
        copy_gbs: copy_gbs(gpu, b.t, warmup, b.reps)?,
        reps: b.reps,
        rows,
    })
}

/// What the kernel benchmark times with, on one device.
struct KernelBench<'a> {
    gpu: &'a Gpu,
    t: Option<&'a GpuTimer>,
    warmup: usize,
    reps: usize,
    loss: LossKernels,
    portable: LossKernels,
    unfused: UnfusedImba,
    noise: NoiseKernels,
    table: wgpu::Buffer,
    sched: DdpmSchedule,
}

impl KernelBench<'_> {
    /// The loss kernels (fused default, fused portable, unfused chain, baseline MSE) at one
    /// size, then the noise kernels.
    fn size_rows(&self, geometry: ImageGeometry) -> Result<Vec<Row>> {
        let KernelBench {
            gpu,
            t,
            warmup,
            reps,
            ref loss,
            ref portable,
            ref unfused,
            ..
        } = *self;
        let dev = &gpu.device;
        let mut rows = Vec::new();
        geometry.validate()?;
        let s = geometry.token_shape();
        let (nk, bn) = (s.elements() as usize, s.rows() as usize);
        let (pred_c, pred_u) = predictions(geometry);
        let pc = gpu.upload("pc", &pred_c);
        let pu = gpu.upload("pu", &pred_u);
        let weights = gpu.zeros("w", bn as u64 * 4);
        let gc = gpu.zeros("gc", nk as u64 * 4);
        let gu = gpu.zeros("gu", nk as u64 * 4);
        let scalars = gpu.zeros("scalars", 16);
        let ws = loss.workspace(dev, s)?;
        let uws = UnfusedWorkspace::new(dev, s)?;
        let philox = Target::Philox {
            step_values: None,
            first_sample: 0,
            seed: 1,
            step: 2,
            geometry,
            kind: TargetKind::Epsilon,
            x0: None,
        };
        let p = ImbaParams::default();
        let args = ImbaLossArgs {
            shape: s,
            pred_cond: (&pc).into(),
            pred_uncond: (&pu).into(),
            target: philox,
            weights: (&weights).into(),
            grad_cond: (&gc).into(),
            grad_uncond: (&gu).into(),
            scalars: (&scalars).into(),
            workspace: &ws,
        };
        let times = time_interleaved(
            gpu,
            t,
            warmup,
            reps,
            &mut [
                &mut |enc: &mut wgpu::CommandEncoder| loss.record_imba(dev, enc, &args, &p),
                &mut |enc: &mut wgpu::CommandEncoder| portable.record_imba(dev, enc, &args, &p),
                &mut |enc: &mut wgpu::CommandEncoder| {
                    let args = unfused::UnfusedArgs {
                        pred_cond: &pc,
                        pred_uncond: &pu,
                        target: philox,
                        weights: &weights,
                        grad_cond: &gc,
                        grad_uncond: &gu,
                        scalars: &scalars,
                    };
                    unfused.record(dev, enc, &uws, &args, &p)
                },
            ],
        )?;
        let path = match loss.fused_path(s, &philox, &ws) {
            FusedPath::Vec4 { .. } => "vec4",
            FusedPath::Portable => "portable",
        };
        rows.extend(loss_rows(s, path, [times[0], times[1], times[2]]));

        let mse_ms = time_ms(gpu, t, warmup, reps, |enc| {
            loss.record_mse(
                dev,
                enc,
                &MseLossArgs {
                    shape: s,
                    pred: (&pc).into(),
                    target: philox,
                    grad: (&gc).into(),
                    scalars: (&scalars).into(),
                    workspace: &ws,
                },
            )
        })?;
        rows.push(Row {
            kernel: "baseline mse fused".into(),
            shape: s,
            gpu_ms: mse_ms,
            bytes: 8 * nk as u64,
            vs_unfused: None,
        });

        rows.extend(self.noise_rows(geometry, &gc)?);
        Ok(rows)
    }

    /// The noise kernel (x_t tokens) and the bare Philox normals, writing into `out`.
    fn noise_rows(&self, geometry: ImageGeometry, gc: &wgpu::Buffer) -> Result<Vec<Row>> {
        let KernelBench {
            gpu,
            t,
            warmup,
            reps,
            ref noise,
            ref table,
            ref sched,
            ..
        } = *self;
        let dev = &gpu.device;
        let s = geometry.token_shape();
        let nk = s.elements() as usize;
        let mut rows = Vec::new();
        let x0 = gpu.zeros("x0", nk as u64 * 4);
        let ts = gpu.upload("t", &vec![500.0f32; geometry.batch as usize]);
        let nargs = NoiseArgs {
            geometry,
            seed: 1,
            step: 2,
            schedule: Schedule::Ddpm {
                table: table.into(),
                steps: sched.steps(),
            },
            x0: (&x0).into(),
            timesteps: (&ts).into(),
            out_tokens: gc.into(),
            first_sample: 0,
            step_values: None,
        };
        let noise_ms = time_ms(gpu, t, warmup, reps, |enc| {
            noise.record_noise_to_tokens(dev, enc, &nargs)
        })?;
        rows.push(Row {
            kernel: "noise → x_t tokens".into(),
            shape: s,
            gpu_ms: noise_ms,
            bytes: 8 * nk as u64,
            vs_unfused: None,
        });
        let normals_ms = time_ms(gpu, t, warmup, reps, |enc| {
            noise.record_normals(
                dev,
                enc,
                &NormalsArgs {
                    seed: 1,
                    step: 2,
                    count: nk as u32,
                    out: gc.into(),
                },
            )
        })?;
        rows.push(Row {
            kernel: "Philox normals (ε only)".into(),
            shape: s,
            gpu_ms: normals_ms,
            bytes: 4 * nk as u64,
            vs_unfused: None,
        });
        Ok(rows)
    }
}

/// Deterministic inputs of the loss rows: predictions = ε + a token-scaled perturbation, ε
/// of (seed 1, step 2) in the loss's token layout, as the Philox target regenerates it.
fn predictions(geometry: ImageGeometry) -> (Vec<f32>, Vec<f32>) {
    let s = geometry.token_shape();
    let nk = s.elements() as usize;
    let target = tokens::output_tokens(&rng::noise(1, 2, nk), &geometry);
    let pred_c = target
        .iter()
        .enumerate()
        .map(|(i, e)| e + 0.3 * ((i % 7) as f32 - 3.0) / 3.0)
        .collect();
    let pred_u = target
        .iter()
        .enumerate()
        .map(|(i, e)| {
            e + 0.1 * (1 + (i / s.token_dim as usize) % 5) as f32 * ((i % 3) as f32 - 1.0)
        })
        .collect();
    (pred_c, pred_u)
}

/// The IMBA loss's rows from its three timings (fused default path `path`, fused portable,
/// unfused chain), each against the unfused chain.
fn loss_rows(s: TokenShape, path: &str, [fused, portable, unfused]: [f64; 3]) -> [Row; 3] {
    let bytes = 16 * s.elements() + 4 * s.rows();
    let row = |kernel: String, gpu_ms: f64, vs_unfused| Row {
        kernel,
        shape: s,
        gpu_ms,
        bytes,
        vs_unfused,
    };
    [
        row(
            format!("imba fused, default ({path}) kernel"),
            fused,
            Some(unfused / fused),
        ),
        row(
            "imba fused, portable kernel".into(),
            portable,
            Some(unfused / portable),
        ),
        row("imba unfused chain".into(), unfused, None),
    ]
}
