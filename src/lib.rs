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
//! - [`capture`]: replayable cases of what the launchers dispatched, for running the same
//!   kernels on another WebGPU implementation (Dawn in Node or a browser).
//! - [`reference`](mod@reference): plain CPU implementations of every kernel, the oracle of the tests.
//! - [`model`]: the DiT — config, flat parameters with named views, checkpoints, the GPU
//!   forward/backward and its memory report.
//! - [`diffusion`]: noise schedules.
//! - `bench`: the kernel benchmark shared by `cargo bench` and `imba bench kernels`.
// Every public item of the lean library (what engines embed) is documented; the workflow
// modules (data, training, evaluation, comparisons) are documented in docs/.
#![cfg_attr(not(feature = "workflow"), warn(missing_docs))]

/// The README's code, compiled by `cargo test` so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

#[cfg(feature = "workflow")]
pub mod bench;
pub mod bounds;
pub mod capture;
#[cfg(feature = "workflow")]
pub mod compare;
#[cfg(feature = "workflow")]
pub mod data;
pub mod diffusion;
pub mod error;
#[cfg(feature = "workflow")]
pub mod eval;
pub mod files;
pub mod gpu;
pub mod kernels;
pub mod model;
pub mod objectives;
pub mod parallel;
pub mod reference;
#[cfg(feature = "workflow")]
pub mod remedies;
#[cfg(feature = "workflow")]
pub mod report;
pub mod rng;
pub mod shaders;
#[cfg(feature = "workflow")]
pub mod stats;
#[cfg(feature = "workflow")]
pub mod train;

pub use error::{Error, Result};

/// The naga this crate translates its shaders with.
pub use naga;
/// The wgpu this crate is built against: use it (`imba::wgpu`) so that your device, buffers and
/// encoders are of the same version as the launchers' parameters.
pub use wgpu;
