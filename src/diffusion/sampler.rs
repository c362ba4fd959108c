//! Samplers (docs/design.md#the-forward-process-and-samplers): DDPM ancestral, DDIM (steps, η) and rectified-flow Euler, as
//! update rules on host vectors given the model's (guided) prediction.

use super::DdpmSchedule;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// A sampler and its number of model evaluations.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Sampler {
    /// DDPM ancestral sampling over all T steps, variance "fixed large" (σ² = β_t).
    Ddpm,
    /// DDIM over `steps` evenly strided timesteps; η = 0 is deterministic, η = 1 is DDPM-like.
    Ddim {
        /// Model evaluations (timesteps visited).
        steps: u32,
        /// η in 0..=1: the share of DDPM's posterior noise added at each step.
        eta: f32,
    },
    /// Euler steps of the rectified-flow ODE from t = 1 (noise) to t = 0.
    Euler {
        /// Model evaluations (equal steps in t).
        steps: u32,
    },
}

/// One model evaluation of a sampling chain: the model's time input and how to update x.
#[derive(Clone, Copy, Debug)]
pub struct SampleStep {
    /// DDPM timestep (0..T) or flow time in (0, 1].
    pub t: f64,
    /// The previous point of the chain (DDPM/DDIM: a timestep, −1 meaning x0; flow: time).
    pub prev: f64,
}

impl Sampler {
    /// The deterministic sampler of a process with `steps` model evaluations: DDIM (η = 0)
    /// for DDPM models, Euler for flow models. What training's end, evaluation, the remedies
    /// and the live view sample with.
    pub fn deterministic(process: super::Process, steps: u32) -> Self {
        match process {
            super::Process::Ddpm => Sampler::Ddim { steps, eta: 0.0 },
            super::Process::Flow => Sampler::Euler { steps },
        }
    }

    /// The chain's steps, first to last.
    pub fn steps(&self, schedule: &DdpmSchedule) -> Result<Vec<SampleStep>> {
        let t_max = schedule.steps();
        match *self {
            Sampler::Ddpm => Ok((0..t_max)
                .rev()
                .map(|t| SampleStep {
                    t: t as f64,
                    prev: t as f64 - 1.0,
                })
                .collect()),
            Sampler::Ddim { steps, eta } => {
                if steps == 0 || steps > t_max {
                    return Err(Error::Config(format!(
                        "DDIM steps must be in 1..={t_max}, got {steps}"
                    )));
                }
                if !(0.0..=1.0).contains(&eta) {
                    return Err(Error::Config(format!(
                        "DDIM η must be in [0, 1], got {eta}"
                    )));
                }
                // ADM/DiT "ddimN" respacing: timesteps 0, s, 2s, … with stride s = T/N.
                let stride = t_max as f64 / steps as f64;
                let ts: Vec<f64> = (0..steps).map(|i| (i as f64 * stride).round()).collect();
                Ok((0..steps as usize)
                    .rev()
                    .map(|i| SampleStep {
                        t: ts[i],
                        prev: if i == 0 { -1.0 } else { ts[i - 1] },
                    })
                    .collect())
            }
            Sampler::Euler { steps } => {
                if steps == 0 {
                    return Err(Error::Config("Euler steps must be at least 1".into()));
                }
                Ok((0..steps)
                    .map(|i| SampleStep {
                        t: 1.0 - i as f64 / steps as f64,
                        prev: 1.0 - (i + 1) as f64 / steps as f64,
                    })
                    .collect())
            }
        }
    }

    /// Whether a step draws fresh noise z (DDPM at t > 0, DDIM with η > 0 before the last).
    pub fn needs_noise(&self, step: &SampleStep) -> bool {
        match *self {
            Sampler::Ddpm => step.t > 0.0,
            Sampler::Ddim { eta, .. } => eta > 0.0 && step.prev >= 0.0,
            Sampler::Euler { .. } => false,
        }
    }

    /// x ← the chain's next point, given the model's prediction `pred` (ε for DDPM/DDIM, the
    /// velocity ε − x0 for flow) and noise `z` (used only where [`Self::needs_noise`]).
    pub fn update(
        &self,
        schedule: &DdpmSchedule,
        step: &SampleStep,
        x: &mut [f32],
        pred: &[f32],
        z: &[f32],
    ) {
        match *self {
            Sampler::Ddpm => {
                let t = step.t as usize;
                let beta = schedule.betas[t];
                let ab = schedule.alpha_bars[t];
                let a = 1.0 - beta;
                let coef = beta / (1.0 - ab).sqrt();
                let sigma = if t > 0 { beta.sqrt() } else { 0.0 };
                for i in 0..x.len() {
                    let mean = (x[i] as f64 - coef * pred[i] as f64) / a.sqrt();
                    let noise = if t > 0 { sigma * z[i] as f64 } else { 0.0 };
                    x[i] = (mean + noise) as f32;
                }
            }
            Sampler::Ddim { eta, .. } => {
                let ab = schedule.alpha_bars[step.t as usize];
                let ab_prev = if step.prev < 0.0 {
                    1.0
                } else {
                    schedule.alpha_bars[step.prev as usize]
                };
                let sigma = eta as f64
                    * ((1.0 - ab_prev) / (1.0 - ab)).sqrt()
                    * (1.0 - ab / ab_prev).max(0.0).sqrt();
                let dir = (1.0 - ab_prev - sigma * sigma).max(0.0).sqrt();
                for i in 0..x.len() {
                    let e = pred[i] as f64;
                    let x0 = (x[i] as f64 - (1.0 - ab).sqrt() * e) / ab.sqrt();
                    let noise = if sigma > 0.0 {
                        sigma * z[i] as f64
                    } else {
                        0.0
                    };
                    x[i] = (ab_prev.sqrt() * x0 + dir * e + noise) as f32;
                }
            }
            Sampler::Euler { .. } => {
                let dt = step.t - step.prev;
                for i in 0..x.len() {
                    x[i] = (x[i] as f64 - dt * pred[i] as f64) as f32;
                }
            }
        }
    }
}
