//! The choice of kernel paths: by adapter type, and the forcing variable's values.

use imba::kernels::Paths;

fn adapter(device_type: wgpu::DeviceType) -> wgpu::AdapterInfo {
    wgpu::AdapterInfo::new(device_type, wgpu::Backend::Vulkan)
}

#[test]
fn gpus_tile_cpus_use_textures_others_are_portable() {
    use wgpu::DeviceType::*;
    assert_eq!(Paths::for_adapter(&adapter(DiscreteGpu)), Paths::Tiled);
    assert_eq!(Paths::for_adapter(&adapter(IntegratedGpu)), Paths::Tiled);
    assert_eq!(Paths::for_adapter(&adapter(Cpu)), Paths::Texture);
    assert_eq!(Paths::for_adapter(&adapter(VirtualGpu)), Paths::Portable);
    assert_eq!(Paths::for_adapter(&adapter(Other)), Paths::Portable);
}

#[test]
fn forcing_values_parse_and_bad_ones_name_the_choices() {
    assert_eq!(" Tiled".parse::<Paths>().unwrap(), Paths::Tiled);
    assert_eq!("texture".parse::<Paths>().unwrap(), Paths::Texture);
    assert_eq!("PORTABLE".parse::<Paths>().unwrap(), Paths::Portable);
    let e = "gpu".parse::<Paths>().unwrap_err().to_string();
    assert!(
        e.contains("\"gpu\"") && e.contains("portable, texture or tiled"),
        "{e}"
    );
}

/// A model built for the tiled paths runs the GPU kernel of every family that has one.
#[test]
fn a_model_on_the_tiled_paths_uses_every_gpu_kernel() {
    use imba::kernels::{AdaLnPath, AttentionPath, AttentionShape, Columns, MatmulPath};
    use imba::kernels::{Modulation, Stream};
    let g = crate::common::gpu();
    let dev = &g.device;
    let k = imba::model::DitKernels::with_paths(dev, Paths::Tiled).unwrap();
    assert!(matches!(
        k.matmul.path(dev, 512, 384, 384),
        MatmulPath::Tiled(_)
    ));
    let shape = AttentionShape {
        samples: 2,
        tokens: 256,
        heads: 6,
        head_dim: 64,
    };
    assert_eq!(k.attention.path(dev, shape), AttentionPath::Tiled);
    let buf = g.zeros("m", 4 * 6 * 384);
    let m = Modulation {
        region: (&buf).into(),
        stride: 6 * 384,
        shift: 0,
        scale: 384,
        gate: 768,
    };
    let s = Stream {
        rows: 512,
        dim: 384,
        tokens: 256,
    };
    assert_eq!(k.adaln.ln_path(s, &m), AdaLnPath::Workgroup);
    let cols = Columns::whole(&buf, 384);
    assert_eq!(
        k.adaln.segment_sums_path(384, &cols, None),
        AdaLnPath::Workgroup
    );
}
