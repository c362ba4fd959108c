//! The two diffusion processes a run trains and samples with.

use serde::{Deserialize, Serialize};

/// The diffusion process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "workflow", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Process {
    /// DDPM ε-prediction, T = 1000, linear β 1e-4..0.02.
    Ddpm,
    /// Rectified flow, velocity ε − x0, t ~ U(0, 1) (the model sees 1000·t).
    Flow,
}

/// The model's timestep input for flow time t ∈ [0, 1) is 1000·t.
pub const FLOW_TIME_SCALE: f32 = 1000.0;
