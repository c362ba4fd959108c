//! Embedding the fused IMBA loss in an engine that owns its wgpu device, buffers and command
//! encoder. Nothing here goes through `imba::gpu`: the engine creates everything, and imba
//! only records its dispatches into the engine's encoder.
//!
//! Run: `cargo run --release --example embed`; it needs only the kernel library:
//! `cargo run --release --no-default-features --features vulkan --example embed`.

use imba::kernels::{ImbaLossArgs, ImbaParams, LossKernels, Target, TokenShape};
// The wgpu imba is built against, re-exported: the engine's device and buffers are of the
// same version as the launchers' parameters.
use imba::wgpu;
use wgpu::util::DeviceExt;

/// What the example computed, for the test that runs it (tests/kernels/examples.rs).
pub struct EmbedRun {
    pub shape: TokenShape,
    pub pred_cond: Vec<f32>,
    pub pred_uncond: Vec<f32>,
    pub noise: Vec<f32>,
    /// [L, L_c, L_u, mean D]
    pub scalars: [f32; 4],
}

pub fn run() -> Result<EmbedRun, Box<dyn std::error::Error>> {
    // 1. The engine's own device.
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("engine"),
        required_limits: imba::kernels::required_limits(),
        ..Default::default()
    }))?;

    // 2. The engine's own buffers: model outputs for 2 samples × 4 tokens × 8 values, and the
    //    noise the engine drew itself (explicit-noise mode, token layout).
    let shape = TokenShape::new(2, 4, 8);
    let n = shape.elements() as usize;
    let noise: Vec<f32> = (0..n).map(|i| ((i * 37 % 17) as f32 - 8.0) / 5.0).collect();
    let pred_cond: Vec<f32> = noise
        .iter()
        .enumerate()
        .map(|(i, e)| e + 0.1 * ((i % 5) as f32 - 2.0))
        .collect();
    let pred_uncond: Vec<f32> = noise
        .iter()
        .enumerate()
        .map(|(i, e)| e + 0.05 * (1 + i / 8) as f32 * ((i % 3) as f32 - 1.0))
        .collect();
    let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
    let init = |label: &str, data: &[f32]| {
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::cast_slice(data),
            usage: storage,
        })
    };
    let empty = |label: &str, len: usize| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (len * 4) as u64,
            usage: storage,
            mapped_at_creation: false,
        })
    };
    let pc = init("pred_cond", &pred_cond);
    let pu = init("pred_uncond", &pred_uncond);
    let eps = init("noise", &noise);
    let weights = empty("D", shape.rows() as usize);
    let grad_cond = empty("grad_cond", n);
    let grad_uncond = empty("grad_uncond", n);
    let scalars = empty("scalars", 4);

    // 3. imba's pipelines (once per device) and scratch (once per shape).
    let kernels = LossKernels::new(&device)?;
    let workspace = kernels.workspace(&device, shape)?;

    // 4. Record into the engine's encoder, next to the engine's own work.
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("engine step"),
    });
    let args = ImbaLossArgs {
        shape,
        pred_cond: (&pc).into(),
        pred_uncond: (&pu).into(),
        target: Target::Explicit((&eps).into()),
        weights: (&weights).into(),
        grad_cond: (&grad_cond).into(),
        grad_uncond: (&grad_uncond).into(),
        scalars: (&scalars).into(),
        workspace: &workspace,
    };
    kernels.record_imba(&device, &mut encoder, &args, &ImbaParams::default())?;
    // ... the engine would record its backward pass here, reading grad_cond / grad_uncond ...
    let readback = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: 16,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    encoder.copy_buffer_to_buffer(&scalars, 0, &readback, 0, 16);
    queue.submit(Some(encoder.finish()));

    // 5. Read the loss.
    readback
        .slice(..)
        .map_async(wgpu::MapMode::Read, |r| r.expect("map failed"));
    device.poll(wgpu::PollType::wait_indefinitely())?;
    let view = readback.slice(..).get_mapped_range()?;
    let s: [f32; 4] = bytemuck::pod_read_unaligned(&view[..16]);
    drop(view);
    Ok(EmbedRun {
        shape,
        pred_cond,
        pred_uncond,
        noise,
        scalars: s,
    })
}

#[allow(dead_code)]
fn main() {
    match run() {
        Ok(r) => println!(
            "IMBA loss recorded into the engine's encoder: L = {:.6}, L_c = {:.6}, L_u = {:.6}, mean D = {:.6}",
            r.scalars[0], r.scalars[1], r.scalars[2], r.scalars[3]
        ),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
