//! The DiT of docs/design.md#the-dit: configuration, the flat parameter layout with the reference's
//! tensor names, safetensors checkpoints, the GPU model (forward and backward as sequences of
//! kernel launches) and its memory report.

pub mod checkpoint;
pub mod checksum;
pub mod config;
pub mod dit;
pub mod memory;
pub mod optimizer;
pub mod params;
pub mod roofline;
pub mod sincos;
pub mod state_dict;
pub mod tokens;

pub use config::DitConfig;
pub use dit::{Activations, Dit, DitKernels, LossPass, Tap};
pub use memory::MemoryReport;
pub use optimizer::{Optimizer, OptimizerSettings, OptimizerState, StepAt};
pub use params::{ParamLayout, Tensor};
pub use roofline::{Peaks, Roofline};
