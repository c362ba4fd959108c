//! The trainer: configuration, data and model set-up, the training step, checkpoints and logs.

pub mod config;
pub mod export;
pub mod live;
pub mod lock;
pub mod monitor;
pub mod output_folder;
pub mod time_monitor;

pub use crate::diffusion::Process;
pub use config::{DatasetKind, ObjectiveKind, TrainConfig, TrainOptions};
pub mod setup;
pub mod state;
pub mod stop;
pub mod trainer;

pub use trainer::{RecordCost, State, StepStats, Trainer};
mod jsonl;
pub mod ranks;
pub mod run;
mod run_dir;

pub use lock::FolderLock;
pub use output_folder::OutputKind;
pub use run_dir::RunDir;
