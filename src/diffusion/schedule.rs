//! The DDPM noise schedule (docs/design.md#the-forward-process-and-samplers), computed in f64.

use crate::{Error, Result};

/// A discrete DDPM schedule: β_t and ᾱ_t = Π_{s ≤ t} (1 − β_s) for t = 0..T−1.
#[derive(Clone, Debug)]
pub struct DdpmSchedule {
    /// β_t for t = 0..T−1.
    pub betas: Vec<f64>,
    /// ᾱ_t = Π_{s ≤ t} (1 − β_s) for t = 0..T−1.
    pub alpha_bars: Vec<f64>,
}

impl DdpmSchedule {
    /// Linear β from `beta_start` to `beta_end` over `steps` steps.
    pub fn linear(steps: u32, beta_start: f64, beta_end: f64) -> Result<Self> {
        if steps < 2 {
            return Err(Error::Param(format!(
                "a DDPM schedule needs at least 2 steps, got {steps}"
            )));
        }
        if !(0.0 < beta_start && beta_start <= beta_end && beta_end < 1.0) {
            return Err(Error::Param(format!(
                "β must satisfy 0 < β_start ≤ β_end < 1, got {beta_start}..{beta_end}"
            )));
        }
        let betas: Vec<f64> = (0..steps)
            .map(|i| beta_start + (beta_end - beta_start) * i as f64 / (steps - 1) as f64)
            .collect();
        let mut alpha_bars = Vec::with_capacity(betas.len());
        let mut acc = 1.0;
        for b in &betas {
            acc *= 1.0 - b;
            alpha_bars.push(acc);
        }
        Ok(Self { betas, alpha_bars })
    }

    /// The DiT/ADM default: T = 1000, β linear from 1e-4 to 0.02.
    pub fn default_linear() -> Self {
        Self::linear(1000, 1e-4, 0.02).expect("valid constants")
    }

    /// Number of steps T.
    pub fn steps(&self) -> u32 {
        self.betas.len() as u32
    }

    /// (√ᾱ_t, √(1−ᾱ_t)) per step, the table the noise kernel reads.
    pub fn coefficients(&self) -> Vec<[f32; 2]> {
        self.alpha_bars
            .iter()
            .map(|&a| [a.sqrt() as f32, (1.0 - a).sqrt() as f32])
            .collect()
    }
}
