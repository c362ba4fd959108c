//! imba: hand-written WGSL compute kernels, run through wgpu on any GPU vendor, for training
//! diffusion transformers on imbalanced data with the IMBA concept-balancing loss.
//!
//! Layers, from the bottom:
//! - [`shaders`]: the WGSL sources (public, with their includes resolved) and their naga
//!   translation to SPIR-V, MSL and HLSL.
//! - [`gpu`]: a device context (adapter choice, features, limits), buffer helpers and a
//!   timestamp timer.
//! - [`kernels`]: typed launchers that validate shapes and limits and record dispatches into a
//!   caller's `wgpu::CommandEncoder` — the embedding API.
//! - [`reference`]: plain CPU implementations of every kernel, the oracle of the tests.
//! - [`model`]: the DiT — config, flat parameters with named views, checkpoints, the GPU
//!   forward/backward and its memory report.
//! - [`diffusion`]: noise schedules.
//! - [`bench`]: the kernel benchmark shared by `cargo bench` and `imba bench kernels`.

pub mod bench;
pub mod compare;
pub mod data;
pub mod diffusion;
pub mod error;
pub mod eval;
pub mod generate;
pub mod gpu;
pub mod images;
pub mod invdiff;
pub mod kernels;
pub mod model;
pub mod plot;
pub mod reference;
pub mod seedselect;
pub mod shaders;
pub mod train;

pub use error::{Error, Result};
