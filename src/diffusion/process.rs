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

impl Process {
    /// The name a config and a model file's metadata use (`ddpm`, `flow`).
    pub fn name(self) -> &'static str {
        match self {
            Process::Ddpm => "ddpm",
            Process::Flow => "flow",
        }
    }

    /// The process [`Self::name`] names, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        [Process::Ddpm, Process::Flow]
            .into_iter()
            .find(|p| p.name() == name)
    }
}

/// The model's timestep input for flow time t ∈ [0, 1) is 1000·t.
pub const FLOW_TIME_SCALE: f32 = 1000.0;

#[cfg(test)]
mod name_tests {
    use super::Process;

    /// The names are the ones a config's serde form uses, and they read back.
    #[test]
    fn names_match_the_config_form_and_read_back() {
        for p in [Process::Ddpm, Process::Flow] {
            let serde = serde_json::to_string(&p).unwrap();
            assert_eq!(serde, format!("\"{}\"", p.name()));
            assert_eq!(Process::from_name(p.name()), Some(p));
        }
        assert_eq!(Process::from_name("vp"), None);
    }
}
