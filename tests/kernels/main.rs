//! Every kernel family against its f64 CPU reference (randomized, odd sizes, poisoned
//! outputs), the references against finite differences, bad input, and naga translation.
//! One device for the whole binary.

#[path = "../common/mod.rs"]
mod common;

mod activation;
mod adaln;
mod aliasing;
mod attention;
mod embeddings;
mod examples;
mod layering;
mod limits;
mod loss;
mod matmul;
mod noise;
mod optim;
mod pair_contrastive;
mod paths;
mod recovery;
mod reduce;
mod rng;
mod shaders_translate;
mod shard;
mod step_values;
mod time_norm;
