//! What a run shows a person: line, bar and scatter plots, image grids and sample sets.

pub mod images;
pub mod plot;
mod samples;

pub use samples::save_samples;
