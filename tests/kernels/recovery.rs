//! A launch that wgpu refuses — here an operand made on another device, which wgpu's default
//! error handler would turn into a panic — comes back as an error with wgpu's reason, and
//! leaves the kernel family usable: the next launch runs and is correct.

use crate::common::{assert_close, gpu};
use imba::kernels::{Activation, ActivationArgs, ActivationKernels};
use std::panic::{catch_unwind, AssertUnwindSafe};

#[test]
fn a_launch_wgpu_refuses_is_an_error_and_leaves_the_family_usable() {
    let g = gpu();
    let k = ActivationKernels::new(&g.device).unwrap();
    let other = crate::limits::device_with(|_| {});
    let foreign = other.create_buffer(&wgpu::BufferDescriptor {
        label: Some("foreign"),
        size: 64,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let x = g.upload("x", &[0.5f32, -1.0, 2.0, 0.0]);
    let launch = |y: &wgpu::Buffer| {
        let mut enc = g.encoder();
        let args = ActivationArgs {
            act: Activation::Silu,
            n: 4,
            x: (&x).into(),
            y: y.into(),
        };
        k.record_forward(&g.device, &mut enc, &args).map(|_| enc)
    };
    let refused = catch_unwind(AssertUnwindSafe(|| launch(&foreign).err()))
        .expect("a foreign operand panicked instead of returning an error");
    match refused {
        // wgpu's own reason, naming the operand by its label.
        Some(imba::Error::Launch(m)) => assert!(m.contains("'foreign'"), "{m}"),
        other => panic!("a foreign operand: {other:?}"),
    }
    let y = g.poisoned("y", 4);
    let enc = launch(&y).expect("the family works after the failed launch");
    g.submit_and_wait(enc).unwrap();
    let want: Vec<f64> = [0.5f64, -1.0, 2.0, 0.0]
        .iter()
        .map(|&v| v / (1.0 + (-v).exp()))
        .collect();
    assert_close(
        "silu after a failed launch",
        &g.read(&y, 4).unwrap(),
        &want,
        1e-6,
        1e-5,
    );
}

/// Kernels made on one device and launched with another (its buffers and encoder all of that
/// other device): an error naming the mismatch, no panic, and the kernels still work on
/// their own device.
#[test]
fn kernels_launched_on_another_device_are_an_error() {
    let g = gpu();
    let k = ActivationKernels::new(&g.device).unwrap();
    // A device with its queue kept (an encoder needs the queue alive).
    let (other, _queue) = pollster::block_on(g.adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: imba::kernels::required_limits(),
        ..Default::default()
    }))
    .unwrap();
    let make = |label: &str| {
        other.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: 64,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        })
    };
    let (x, y) = (make("x"), make("y"));
    let mut enc = other.create_command_encoder(&Default::default());
    let args = ActivationArgs {
        act: Activation::Gelu,
        n: 16,
        x: (&x).into(),
        y: (&y).into(),
    };
    let before = imba::kernels::dispatches_recorded();
    let refused = catch_unwind(AssertUnwindSafe(|| {
        k.record_forward(&other, &mut enc, &args).err()
    }))
    .expect("kernels of another device panicked instead of returning an error");
    assert!(
        matches!(refused, Some(imba::Error::Launch(_))),
        "kernels of another device: {refused:?}"
    );
    assert_eq!(
        imba::kernels::dispatches_recorded(),
        before,
        "recorded after refusing"
    );
    let (x, y) = (g.upload("x", &[1.0f32; 16]), g.poisoned("y", 16));
    let mut enc = g.encoder();
    let args = ActivationArgs {
        x: (&x).into(),
        y: (&y).into(),
        ..args
    };
    k.record_forward(&g.device, &mut enc, &args).unwrap();
    g.submit_and_wait(enc).unwrap();
    assert!(g.read::<f32>(&y, 16).unwrap().iter().all(|v| v.is_finite()));
}

/// An engine that makes fresh tensors every step: the cached bind groups keep the dropped
/// buffers alive until `release_unused_bindings` drops the groups no launch used since its
/// last call; with a call per step the live buffers stay bounded, and launches that repeat
/// keep their groups.
#[test]
fn released_bindings_free_the_buffers_an_engine_dropped() {
    if imba::capture::enabled() || std::env::var_os("IMBA_CASES_DIR").is_some() {
        // Capturing (IMBA_CASES_DIR) keeps every bound buffer for its replay file.
        crate::common::skip(
            "released_bindings_free_the_buffers_an_engine_dropped",
            "kernel cases are being captured (IMBA_CASES_DIR), which holds every bound buffer",
        );
        return;
    }
    // A device of its own, so that the live-buffer count is this test's alone.
    let g = imba::gpu::Gpu::open(&imba::gpu::GpuOptions::from_env().unwrap()).unwrap();
    let live = || {
        g.instance
            .generate_report()
            .expect("wgpu's native backends report")
            .hub
            .buffers
            .num_allocated
    };
    let k = ActivationKernels::new(&g.device).unwrap();
    let n = 256 * 1024;
    let step = |release: bool| {
        let (x, y) = (g.zeros("x", 4 * n as u64), g.zeros("y", 4 * n as u64));
        let mut enc = g.encoder();
        let args = ActivationArgs {
            act: Activation::Gelu,
            n,
            x: (&x).into(),
            y: (&y).into(),
        };
        k.record_forward(&g.device, &mut enc, &args).unwrap();
        g.submit_and_wait(enc).unwrap();
        if release {
            imba::kernels::release_unused_bindings();
        }
    };
    step(true);
    imba::kernels::release_unused_bindings();
    let base = live();
    for _ in 0..24 {
        step(false);
    }
    let kept = live() - base;
    assert!(
        kept >= 24 * 2,
        "the cache held {kept} buffers of 48 dropped ones"
    );
    imba::kernels::release_unused_bindings();
    imba::kernels::release_unused_bindings();
    for _ in 0..24 {
        step(true);
    }
    let after = live();
    assert!(
        after <= base + 4,
        "{} buffers alive beyond the start after 24 released steps",
        after - base
    );
    // A launch that repeats keeps its group: nothing new is made for it after a release.
    let (x, y) = (g.zeros("x", 64), g.zeros("y", 64));
    let args = ActivationArgs {
        act: Activation::Gelu,
        n: 16,
        x: (&x).into(),
        y: (&y).into(),
    };
    let mut enc = g.encoder();
    k.record_forward(&g.device, &mut enc, &args).unwrap();
    imba::kernels::release_unused_bindings();
    let made = imba::kernels::launch_objects_created();
    k.record_forward(&g.device, &mut enc, &args).unwrap();
    assert_eq!(
        imba::kernels::launch_objects_created(),
        made,
        "a used group was dropped"
    );
    g.submit_and_wait(enc).unwrap();
}
