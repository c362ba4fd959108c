//! The choice of kernel paths: by adapter type, and the forcing variable's values.

use imba::kernels::{Paths, PATHS_ENV};

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
        e.contains(PATHS_ENV) && e.contains("portable, texture or tiled"),
        "{e}"
    );
}
