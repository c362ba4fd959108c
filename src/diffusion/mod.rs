//! Diffusion processes: the process (DDPM or rectified flow), noise schedules, samplers and
//! sampling from a trained model.

pub mod generate;
mod process;
mod sampler;
mod schedule;

pub use generate::{generate, generate_async, Delta, Generator, SampleSpec};
pub use process::{Process, FLOW_TIME_SCALE};
pub use sampler::{SampleStep, Sampler};
pub use schedule::DdpmSchedule;
