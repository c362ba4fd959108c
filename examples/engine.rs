//! A long run of the fused loss inside someone else's wgpu program, as an engine meets it:
//! two instances with a device each, opened with `imba::kernels::required_limits()`; fresh
//! tensors every step, of a shape that changes, with the engine's own passes recorded before
//! and after imba's; the loss checked against the CPU reference; a launch given a buffer of
//! another device refused without a panic, the family usable after it; and the live buffer
//! count of each instance bounded over hundreds of steps.
//!
//! Run: `cargo run --release --no-default-features --features vulkan --example engine`
//! (the kernel library alone, as CI runs it).

use imba::kernels::{ImbaLossArgs, ImbaParams, LossKernels, Target, TokenShape};
use imba::wgpu;
use std::error::Error;
use std::panic::{catch_unwind, AssertUnwindSafe};
use wgpu::util::DeviceExt;

/// What a soak run saw, for the test that runs it (tests/kernels/examples.rs).
pub struct Soak {
    pub steps: usize,
    /// Steps whose loss was read back and compared with the CPU reference.
    pub checked: usize,
    /// The largest relative difference of [L, L_c, L_u, mean D] from the reference.
    pub worst: f64,
    /// Live buffers of each instance after the warm-up and at the end.
    pub live: [(usize, usize); 2],
    /// The error of the launch given another device's buffer.
    pub refused: String,
}

/// One engine: its own instance, device, queue and loss kernels.
struct Engine {
    instance: wgpu::Instance,
    adapter: wgpu::Adapter,
    device: wgpu::Device,
    queue: wgpu::Queue,
    kernels: LossKernels,
}

/// The tensors of one step, made fresh as an engine that allocates per step would.
struct Step {
    shape: TokenShape,
    pred_cond: Vec<f32>,
    pred_uncond: Vec<f32>,
    noise: Vec<f32>,
}

impl Engine {
    fn open() -> Result<Self, Box<dyn Error>> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter =
            pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))?;
        let (device, queue) =
            pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
                label: Some("engine"),
                required_limits: imba::kernels::required_limits(),
                ..Default::default()
            }))?;
        let kernels = LossKernels::new(&device)?;
        Ok(Engine {
            instance,
            adapter,
            device,
            queue,
            kernels,
        })
    }

    /// A second device of this engine's instance and adapter (a second GPU context).
    fn second_device(&self) -> Result<wgpu::Device, Box<dyn Error>> {
        let descriptor = wgpu::DeviceDescriptor {
            label: Some("second"),
            required_limits: imba::kernels::required_limits(),
            ..Default::default()
        };
        Ok(pollster::block_on(self.adapter.request_device(&descriptor))?.0)
    }

    /// Buffers alive in this instance (made and not yet freed by wgpu).
    fn live_buffers(&self) -> usize {
        self.instance
            .generate_report()
            .map_or(0, |r| r.hub.buffers.num_allocated)
    }

    fn tensor(&self, label: &str, data: &[f32]) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::cast_slice(data),
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// Records the engine's own clear, imba's loss and the engine's copy of the scalars into
    /// one encoder, submits it and reads the scalars back. `foreign` replaces the noise
    /// operand (a buffer of another device).
    fn step(&self, s: &Step, foreign: Option<&wgpu::Buffer>) -> Result<[f32; 4], Box<dyn Error>> {
        let n = s.noise.len();
        let (pc, pu) = (
            self.tensor("pred_cond", &s.pred_cond),
            self.tensor("pred_uncond", &s.pred_uncond),
        );
        let noise = self.tensor("noise", &s.noise);
        let zeros = |label, len: usize| self.tensor(label, &vec![f32::NAN; len]);
        let (weights, grad_cond) = (zeros("D", s.shape.rows() as usize), zeros("grad_cond", n));
        let (grad_uncond, scalars) = (zeros("grad_uncond", n), zeros("scalars", 4));
        let workspace = self.kernels.workspace(&self.device, s.shape)?;
        let readback = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: 16,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        // The engine's own work before imba's: clear the gradient it will accumulate into.
        encoder.clear_buffer(&grad_cond, 0, None);
        let args = ImbaLossArgs {
            shape: s.shape,
            pred_cond: (&pc).into(),
            pred_uncond: (&pu).into(),
            target: Target::Explicit(foreign.unwrap_or(&noise).into()),
            weights: (&weights).into(),
            grad_cond: (&grad_cond).into(),
            grad_uncond: (&grad_uncond).into(),
            scalars: (&scalars).into(),
            workspace: &workspace,
        };
        let params = ImbaParams::default();
        self.kernels
            .record_imba(&self.device, &mut encoder, &args, &params)?;
        encoder.copy_buffer_to_buffer(&scalars, 0, &readback, 0, 16);
        self.queue.submit(Some(encoder.finish()));
        readback
            .slice(..)
            .map_async(wgpu::MapMode::Read, |r| r.expect("map failed"));
        self.device.poll(wgpu::PollType::wait_indefinitely())?;
        let view = readback.slice(..).get_mapped_range()?;
        let out: [f32; 4] = bytemuck::pod_read_unaligned(&view[..16]);
        drop(view);
        // The kernels keep the bind groups of recent launches; the engine says when a step
        // is over, so groups of tensors it dropped are released.
        imba::kernels::release_unused_bindings();
        Ok(out)
    }
}

/// Step `i`'s tensors: 1–3 samples of 3–5 tokens of 8 values, drawn by a small LCG.
fn draw(i: usize) -> Step {
    let shape = TokenShape::new(1 + (i % 3) as u32, 3 + (i / 3 % 3) as u32, 8);
    let mut state = 0x9e37_79b9_u32.wrapping_mul(i as u32 + 1);
    let mut next = || {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (state >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
    };
    let n = shape.elements() as usize;
    let noise: Vec<f32> = (0..n).map(|_| next()).collect();
    let pred_cond = noise.iter().map(|e| e + 0.3 * next()).collect();
    let pred_uncond = noise.iter().map(|e| e + 0.5 * next()).collect();
    Step {
        shape,
        pred_cond,
        pred_uncond,
        noise,
    }
}

/// The largest relative difference of the scalars from the CPU reference.
fn difference(s: &Step, got: [f32; 4]) -> f64 {
    use imba::reference::loss;
    let w = loss::imba(
        s.shape,
        &loss::widen(&s.pred_cond),
        &loss::widen(&s.pred_uncond),
        &loss::widen(&s.noise),
        &ImbaParams::default(),
    );
    got.iter()
        .zip([w.loss, w.loss_cond, w.loss_uncond, w.mean_d])
        .map(|(&g, w)| (g as f64 - w).abs() / w.abs().max(1e-12))
        .fold(0.0, f64::max)
}

/// `steps` steps alternating between the two engines, then a launch with a foreign operand.
pub fn run(steps: usize) -> Result<Soak, Box<dyn Error>> {
    let engines = [Engine::open()?, Engine::open()?];
    let warm = steps / 10;
    let (mut worst, mut checked, mut live) = (0.0f64, 0, [(0, 0); 2]);
    for i in 0..steps {
        let e = &engines[i % 2];
        let s = draw(i);
        let got = e.step(&s, None)?;
        if i % 7 == 0 {
            worst = worst.max(difference(&s, got));
            checked += 1;
        }
        if i + 1 == warm {
            for (k, e) in engines.iter().enumerate() {
                live[k].0 = e.live_buffers();
            }
        }
    }
    for (k, e) in engines.iter().enumerate() {
        live[k].1 = e.live_buffers();
    }
    // A buffer of another device of engine 0's instance handed to engine 0's kernels: an
    // error, not a panic. (Objects of another *instance* cannot be told apart: wgpu names
    // them by per-instance ids and says nothing of their device; see docs/kernels.md.)
    let other = engines[0].second_device()?;
    let foreign = other.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("foreign noise"),
        contents: bytemuck::cast_slice(&draw(0).noise),
        usage: wgpu::BufferUsages::STORAGE,
    });
    let attempt = catch_unwind(AssertUnwindSafe(|| {
        engines[0].step(&draw(0), Some(&foreign))
    }));
    let refused = match attempt {
        Err(_) => return Err("a foreign operand panicked instead of returning an error".into()),
        Ok(Ok(_)) => return Err("a foreign operand was accepted".into()),
        Ok(Err(e)) => e.to_string(),
    };
    // The family works after the refusal.
    let s = draw(1);
    worst = worst.max(difference(&s, engines[0].step(&s, None)?));
    Ok(Soak {
        steps,
        checked: checked + 1,
        worst,
        live,
        refused,
    })
}

#[allow(dead_code)]
fn main() {
    match run(300) {
        Ok(r) => {
            println!(
                "{} steps on two devices, {} checked against the CPU reference (worst relative \
                 difference {:.1e}); live buffers after warm-up → end: {} → {}, {} → {}; a foreign \
                 operand refused: {}",
                r.steps,
                r.checked,
                r.worst,
                r.live[0].0,
                r.live[0].1,
                r.live[1].0,
                r.live[1].1,
                r.refused
            );
            let grew = r.live.iter().any(|&(a, b)| b > a + 16);
            if r.worst > 1e-5 || grew {
                eprintln!("error: the loss drifted from the reference or buffers accumulated");
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
