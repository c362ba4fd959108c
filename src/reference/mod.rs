//! CPU references: plain loops, written for reading, that the tests compare every kernel
//! with. The RNG replicates the WGSL operation by operation in f32; the losses are f64.

pub mod activation;
pub mod loss;
pub mod matmul;
pub mod noise;
pub mod rng;
