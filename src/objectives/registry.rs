//! The objectives a run can name. Each objective's file describes it once, in a
//! [`Registration`]: its name, how many label sets its forward runs, which options it reads,
//! what it refuses, whether D is read back, and how it is built. [`REGISTERED`] lists them;
//! adding an objective is its file and one line there. The trainer, the config and the
//! command line ask the registration and name no objective.

use super::{CbdmPrior, CcuaSpec, Objective, WeightRule};
use crate::kernels::{ImbaParams, LossKernels};
use crate::model::DitConfig;
use crate::{Error, Result};

/// The options of a run that objectives read (keys of the training config of the same
/// names), gathered so that objectives do not depend on the trainer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// IMBA's γ, λ, form of D, normalisation and granularity, as configured.
    pub imba: ImbaParams,
    /// Timestep buckets of the t-bucket normalisation and of the D-learning weight rules.
    pub time_buckets: u32,
    /// Decay of each bucket's running mean.
    pub time_decay: f32,
    /// The reweighted objective's rule.
    pub weight_rule: WeightRule,
    /// CBDM's τ, prior of y' and probability of an unconditional batch.
    pub cbdm_tau: f32,
    /// CBDM's distribution of the extra label y'.
    pub cbdm_prior: CbdmPrior,
    /// CBDM's probability that a whole batch trains unconditionally.
    pub cbdm_uncond: f32,
    /// CCUA's α, γ and τ.
    pub ccua: CcuaSpec,
    /// The run's seed.
    pub seed: u32,
}

/// The options [`Settings`] holds, by their config keys: what [`Registration::reads`] is
/// asked about.
pub const OPTIONS: [&str; 15] = [
    "gamma",
    "lambda",
    "d_form",
    "normalize",
    "granularity",
    "time_buckets",
    "time_decay",
    "weight_rule",
    "label_dropout",
    "cbdm_tau",
    "cbdm_prior",
    "cbdm_uncond",
    "ccua_alpha",
    "ccua_gamma",
    "ccua_tau",
];

/// The labels of the training data, as objectives need them.
pub trait LabelSource {
    /// Images per label.
    fn label_counts(&self) -> Vec<usize>;
    /// Each training image's label row.
    fn image_label_rows(&self) -> Vec<Vec<u32>>;
    /// The distinct label rows present in the data.
    fn distinct_label_rows(&self) -> Vec<Vec<u32>>;
}

/// What an objective is built from.
pub struct BuildArgs<'a> {
    /// The device the objective's buffers live on.
    pub device: &'a wgpu::Device,
    /// The loss kernels it records with.
    pub loss: &'a LossKernels,
    /// The model it trains.
    pub model: &'a DitConfig,
    /// Samples per step (a rank's shard in a data-parallel job).
    pub batch: u32,
    /// The run's objective options.
    pub settings: &'a Settings,
    /// The training data's labels.
    pub labels: &'a dyn LabelSource,
}

/// Why a data-parallel job cannot split an objective, and what to do instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unsplittable {
    /// What couples the batch's samples.
    pub why: &'static str,
    /// What to do instead.
    pub fix: &'static str,
}

/// One objective, described once.
pub struct Registration {
    /// The name in configs and on the command line.
    pub name: &'static str,
    /// One line for `--help`.
    pub about: &'static str,
    /// Label sets per sample the forward runs: 1, or 2 for the dual forwards.
    pub repeats: u32,
    /// Whether it reads the objective option `key` (one of [`OPTIONS`]) under `settings`.
    pub reads: fn(settings: &Settings, key: &str) -> bool,
    /// Refusals that involve the batch (checked with the config).
    pub check: fn(settings: &Settings, batch: u32) -> Result<()>,
    /// Whether the run writes the D monitor's per-label log.
    pub logs_d: bool,
    /// Why a data-parallel job cannot split it under `settings`; `None` where it can.
    pub unsplittable: fn(settings: &Settings) -> Option<Unsplittable>,
    /// The objective for one model and batch.
    pub build: fn(args: &BuildArgs) -> Result<Box<dyn Objective>>,
}

/// Every objective a run can name, in the order `--help` lists them.
pub const REGISTERED: &[ObjectiveKind] = &[
    ObjectiveKind(&super::baseline::REGISTRATION),
    ObjectiveKind(&super::imba::REGISTRATION),
    ObjectiveKind(&super::imba::DUAL_BASELINE),
    ObjectiveKind(&super::cbdm::REGISTRATION),
    ObjectiveKind(&super::ccua::REGISTRATION),
    ObjectiveKind(&super::reweighted::REGISTRATION),
];

/// A registered objective, as a config value: written and read by its name.
#[derive(Clone, Copy)]
pub struct ObjectiveKind(&'static Registration);

impl ObjectiveKind {
    /// The objective registered as `name`.
    pub fn named(name: &str) -> Result<Self> {
        REGISTERED
            .iter()
            .find(|k| k.0.name == name)
            .copied()
            .ok_or_else(|| {
                let known: Vec<&str> = REGISTERED.iter().map(|k| k.0.name).collect();
                Error::Config(format!(
                    "unknown objective `{name}`; known: {}",
                    known.join(", ")
                ))
            })
    }
    /// The objective's name in configs and on the command line.
    pub fn name(self) -> &'static str {
        self.0.name
    }
    /// Label sets per sample the forward runs.
    pub fn repeats(self) -> u32 {
        self.0.repeats
    }
    /// The objective's description.
    pub fn registration(self) -> &'static Registration {
        self.0
    }
}

impl Default for ObjectiveKind {
    /// IMBA.
    fn default() -> Self {
        ObjectiveKind(&super::imba::REGISTRATION)
    }
}

// Registrations are compared by name: a `const` may be instantiated at more than one address.
impl PartialEq for ObjectiveKind {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}
impl Eq for ObjectiveKind {}

impl std::fmt::Debug for ObjectiveKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name)
    }
}

impl std::fmt::Display for ObjectiveKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name)
    }
}

impl std::str::FromStr for ObjectiveKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::named(s)
    }
}

impl serde::Serialize for ObjectiveKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.0.name)
    }
}

impl<'de> serde::Deserialize<'de> for ObjectiveKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Self::named(&name).map_err(|e| match e {
            Error::Config(m) => serde::de::Error::custom(m),
            e => serde::de::Error::custom(e.to_string()),
        })
    }
}

#[cfg(feature = "workflow")]
impl clap::ValueEnum for ObjectiveKind {
    fn value_variants<'a>() -> &'a [Self] {
        REGISTERED
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.0.name).help(self.0.about))
    }
}

/// For registrations: no refusal beyond the options' own ranges.
pub fn no_check(_: &Settings, _: u32) -> Result<()> {
    Ok(())
}

/// For registrations: a data-parallel job splits it.
pub fn splits(_: &Settings) -> Option<Unsplittable> {
    None
}
