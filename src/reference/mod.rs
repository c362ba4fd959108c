//! CPU references: plain loops, written for reading, that the tests compare every kernel
//! with. The RNG replicates the WGSL operation by operation in f32; everything else is f64.

pub mod activation;
pub mod adaln;
pub mod attention;
pub mod contrastive;
pub mod dit;
pub mod embed;
pub mod loss;
pub mod matmul;
pub mod noise;
pub mod optim;
pub mod pair;
