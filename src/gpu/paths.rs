//! Which kernels a device runs. Every family with more than one path (matmul, attention,
//! adaLN) asks [`Paths`] once, when its pipelines are made:
//! - [`Paths::Tiled`] for hardware GPUs (discrete or integrated): workgroup-memory tiles and
//!   coalesced loads;
//! - [`Paths::Texture`] for CPU adapters (llvmpipe): storage-texture operands and subgroup
//!   broadcasts, which is what a CPU's vector units run fast and the opposite of what a GPU
//!   wants;
//! - [`Paths::Portable`] for anything else: one invocation per output from storage buffers,
//!   correct everywhere, and the kernels the others are tested against.
//!
//! A family falls back to its portable kernel where the device lacks what the chosen path
//! needs (subgroups of 8 or 16 lanes for the texture matmul, 256 invocations per workgroup
//! for the tiles). `IMBA_PATHS=portable|texture|tiled` forces a choice for a whole process,
//! e.g. to run the GPU kernels on llvmpipe in tests.

use crate::{Error, Result};

/// The kernel paths a device runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paths {
    /// Kernels without workgroup memory or textures: run on any device.
    Portable,
    /// Kernels that read through textures (fast on llvmpipe).
    Texture,
    /// Workgroup-memory tiles and coalesced loads (fast on GPUs).
    Tiled,
}

/// The environment variable that forces [`Paths`] for every device of a process.
pub const PATHS_ENV: &str = "IMBA_PATHS";

impl Paths {
    /// The paths for an adapter of this kind: GPUs tile, CPU adapters use textures, others
    /// (virtual or unknown adapters) run the portable kernels.
    pub fn for_adapter(info: &wgpu::AdapterInfo) -> Self {
        match info.device_type {
            wgpu::DeviceType::DiscreteGpu | wgpu::DeviceType::IntegratedGpu => Paths::Tiled,
            wgpu::DeviceType::Cpu => Paths::Texture,
            _ => Paths::Portable,
        }
    }

    /// `IMBA_PATHS` if set, else [`Paths::for_adapter`] of `device`'s adapter.
    pub fn choose(device: &wgpu::Device) -> Result<Self> {
        match std::env::var(PATHS_ENV) {
            Ok(v) => v.parse().map_err(|e: Error| {
                Error::Config(format!(
                    "{PATHS_ENV}: {e} (or unset it to choose by adapter)"
                ))
            }),
            Err(_) => Ok(Self::for_adapter(&device.adapter_info())),
        }
    }
}

impl std::str::FromStr for Paths {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "portable" => Ok(Paths::Portable),
            "texture" => Ok(Paths::Texture),
            "tiled" => Ok(Paths::Tiled),
            other => Err(Error::Config(format!(
                "{other:?} is not a kernel path; use portable, texture or tiled"
            ))),
        }
    }
}
