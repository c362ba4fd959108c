//! Diffusion processes: noise schedules.

mod schedule;

pub use schedule::DdpmSchedule;
