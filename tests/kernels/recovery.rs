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
            x: &x,
            y,
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
