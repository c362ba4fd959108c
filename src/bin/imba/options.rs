//! Options shared by several commands: evaluation sampling, a TOML file under the flags.

use clap::Args;
use imba::eval::EvalOptions;
use imba::train::TrainOptions;
use std::path::Path;

/// How evaluation samples are drawn.
#[derive(Args)]
pub struct EvalSampling {
    /// Samples per label (per prompt for shapes concepts; 0 = toy2d 100, shapes 16, all 256
    /// concept prompts once, digits 50).
    #[arg(long, default_value_t = 0)]
    pub eval_per_label: u32,
    /// DDIM (or Euler) steps of the evaluation samples.
    #[arg(long, default_value_t = 50)]
    pub eval_steps: u32,
    /// Classifier-free guidance of the evaluation samples.
    #[arg(long, default_value_t = 1.5)]
    pub eval_guidance: f32,
    /// Noise seed of the evaluation samples.
    #[arg(long, default_value_t = 1000)]
    pub eval_seed: u32,
}

impl From<&EvalSampling> for EvalOptions {
    fn from(s: &EvalSampling) -> Self {
        EvalOptions {
            per_label: s.eval_per_label,
            steps: s.eval_steps,
            guidance: s.eval_guidance,
            seed: s.eval_seed,
            ema: true,
        }
    }
}

/// Command-line options over those of a TOML file.
pub fn with_file(opts: TrainOptions, file: Option<&Path>) -> imba::Result<TrainOptions> {
    Ok(match file {
        Some(f) => opts.or(TrainOptions::from_toml_file(f)?),
        None => opts,
    })
}
