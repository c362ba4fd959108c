//! Diffusion processes: noise schedules and samplers.

mod sampler;
mod schedule;

pub use sampler::{SampleStep, Sampler};
pub use schedule::DdpmSchedule;
