//! Device limits: every family fits WebGPU's defaults, and a device that allows fewer
//! bindings than a family needs is refused by name, with the limit, before wgpu reports an
//! invalid layout.

use crate::common::{assert_error_mentions, gpu};
use imba::kernels::*;

/// A second device on the test adapter with the kernels' stated requirements (WebGPU's
/// default limits), less `lower`.
pub fn device_with(lower: impl FnOnce(&mut wgpu::Limits)) -> wgpu::Device {
    let adapter = &gpu().adapter;
    let mut limits = imba::kernels::required_limits().or_worse_values_from(&adapter.limits());
    lower(&mut limits);
    let (device, _) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: limits,
        required_features: adapter.features() & imba::gpu::OPTIONAL_FEATURES,
        ..Default::default()
    }))
    .unwrap();
    device
}

/// Every family's kernels are made on a device with WebGPU's default limits.
#[test]
fn every_family_fits_webgpu_default_limits() {
    let d = &device_with(|_| {});
    assert_eq!(d.limits().max_storage_buffers_per_shader_stage, 8);
    NoiseKernels::new(d).unwrap();
    ActivationKernels::new(d).unwrap();
    LossKernels::new(d).unwrap();
    ReduceKernel::new(d).unwrap();
    MatmulKernels::new(d).unwrap();
    AdaLnKernels::new(d).unwrap();
    AttentionKernels::new(d).unwrap();
    EmbedKernels::new(d).unwrap();
    OptimKernels::new(d).unwrap();
    PairKernels::new(d).unwrap();
    ContrastiveKernels::new(d).unwrap();
}

/// The loss family binds 8 storage buffers: on a device that allows 7 it is refused with the
/// limit named, not with wgpu's "invalid bind group layout".
#[test]
fn a_family_over_the_binding_limit_is_refused_by_name() {
    let d = &device_with(|l| l.max_storage_buffers_per_shader_stage = 7);
    assert_error_mentions(LossKernels::new(d), "max_storage_buffers_per_shader_stage");
    assert_error_mentions(LossKernels::new(d), "bind 8 storage buffers");
    // Families that bind fewer are made.
    ActivationKernels::new(d).unwrap();
}

/// A device below WebGPU's compute defaults is refused by the limit's name when a family is
/// made, and the stated requirements are exactly what every family above was made with.
#[test]
fn a_device_below_the_stated_compute_limits_is_refused_by_name() {
    assert_eq!(imba::kernels::required_limits(), wgpu::Limits::default());
    let d = &device_with(|l| l.max_compute_workgroup_storage_size = 8192);
    assert_error_mentions(
        ActivationKernels::new(d),
        "max_compute_workgroup_storage_size ≥ 16384",
    );
    assert_error_mentions(LossKernels::new(d), "required_limits()");
}
