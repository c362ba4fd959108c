//! The trainer: configuration, data and model set-up, the training step, checkpoints and logs.

pub mod config;
pub mod monitor;

pub use config::{DatasetKind, Objective, Process, TrainConfig, TrainOptions};
pub mod setup;
pub mod state;
pub mod trainer;

pub use trainer::{State, StepStats, Trainer};
pub mod run;
