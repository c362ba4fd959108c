//! The DiT of docs/design.md#the-dit: configuration, the flat parameter layout with the reference's
//! tensor names, safetensors checkpoints, the GPU model (forward and backward as sequences of
//! kernel launches) and its memory report.

pub mod checkpoint;
pub mod config;
pub mod dit;
mod dual_loss;
pub mod memory;
pub mod pair_loss;
pub mod params;
pub mod sincos;
pub mod tokens;

pub use config::DitConfig;
pub use dit::{Activations, Dit, DitKernels, Tap};
pub use dual_loss::DualLoss;
pub use memory::MemoryReport;
pub use pair_loss::{PairKind, PairLoss};
pub use params::{ParamLayout, Tensor};
