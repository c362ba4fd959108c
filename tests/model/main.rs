//! The whole DiT: the GPU model against the f64 reference and finite differences, PyTorch
//! goldens (forward, gradients, checkpoints), and every training objective's gradients.

#[path = "../common/mod.rs"]
mod common;

mod dit;
mod dit_goldens;
mod objectives;
mod optimizer;
mod roofline;
