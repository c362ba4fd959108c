//! A launch that fails inside wgpu — here an operand made on another device, which wgpu's
//! default error handler turns into a panic — leaves the kernel family usable: its caches
//! are not poisoned, and the next launch runs and is correct.

use crate::common::{assert_close, gpu};
use imba::kernels::{Activation, ActivationArgs, ActivationKernels};
use std::panic::{catch_unwind, AssertUnwindSafe};

#[test]
fn a_panic_inside_a_launch_leaves_the_family_usable() {
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
            x: &x,
            y,
        };
        k.record_forward(&g.device, &mut enc, &args).map(|_| enc)
    };
    // Refused with an error, or a panic from wgpu's handler: either way, not the end.
    let failed = catch_unwind(AssertUnwindSafe(|| launch(&foreign).is_err()));
    assert!(failed.unwrap_or(true), "a foreign operand was accepted");
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
