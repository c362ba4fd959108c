//! The trainer's configuration: every option of `imba train` is also a key of its TOML file
//! (`--config run.toml`); flags given on the command line override the file, the file
//! overrides the defaults. Unknown keys and out-of-range values are refused with the key named.

use crate::data::Profile;
use crate::diffusion::Process;
use crate::kernels::{DForm, Granularity, ImbaParams, Normalize};
use crate::objectives::WeightRule;
pub use crate::objectives::{CbdmPrior, ObjectiveKind};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

mod validate;

/// The data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    Toy2d,
    Shapes,
    Digits,
    Folder,
    /// MNIST-format files (Fashion-MNIST), `data_path` the folder.
    Idx,
}

impl DatasetKind {
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Toy2d => "toy2d",
            DatasetKind::Shapes => "shapes",
            DatasetKind::Digits => "digits",
            DatasetKind::Folder => "folder",
            DatasetKind::Idx => "idx",
        }
    }
}

/// Declares the options once: `TrainOptions` (every field optional: the command line and the
/// TOML file) and `TrainConfig` (every field resolved, with its default).
macro_rules! options {
    ($( $(#[$m:meta])* $field:ident : $ty:ty = $default:expr ),* $(,)?) => {
        /// Options of `imba train` (command line or TOML); `None` means "not given here".
        #[derive(Clone, Debug, Default, clap::Args, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct TrainOptions {
            $( $(#[$m])* #[arg(long)] #[serde(default, skip_serializing_if = "Option::is_none")]
               pub $field: Option<$ty>, )*
        }

        /// A resolved training configuration. Keys missing from a stored one (written
        /// before the key existed) take their defaults.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct TrainConfig {
            $( pub $field: $ty, )*
        }

        impl TrainOptions {
            /// These options where given, else `other`'s.
            pub fn or(self, other: TrainOptions) -> TrainOptions {
                TrainOptions { $( $field: self.$field.or(other.$field), )* }
            }
            /// Fills what is missing with the defaults (not yet validated).
            fn fill(self) -> TrainConfig {
                TrainConfig { $( $field: self.$field.unwrap_or_else(|| $default), )* }
            }
            /// These options with `names` unset (options that would change nothing are
            /// dropped rather than recorded).
            pub fn without(mut self, names: &[&str]) -> TrainOptions {
                $( if names.contains(&stringify!($field)) { self.$field = None; } )*
                self
            }
            /// The names of the options that are set.
            pub fn given(&self) -> Vec<&'static str> {
                let mut v = Vec::new();
                $( if self.$field.is_some() { v.push(stringify!($field)); } )*
                v
            }
        }

        impl Default for TrainConfig {
            fn default() -> Self {
                TrainOptions::default().fill()
            }
        }

        impl TrainConfig {
            /// Option names whose values differ between two configs.
            pub fn differences(&self, other: &TrainConfig) -> Vec<&'static str> {
                let mut v = Vec::new();
                $( if self.$field != other.$field { v.push(stringify!($field)); } )*
                v
            }
            /// An option's value as text, by name (empty for an unknown name).
            pub fn field(&self, name: &str) -> String {
                match name {
                    $( stringify!($field) => format!("{:?}", self.$field), )*
                    _ => String::new(),
                }
            }
        }
    };
}

options! {
    // ---- data ----
    /// Data set: toy2d (2-D Gaussian mixture), shapes (rendered shapes), digits (real 8×8
    /// handwritten digits), folder (your images, one sub-folder per label), idx (MNIST-format
    /// files, e.g. Fashion-MNIST); on the command line `idx:DIR` and `folder:DIR` name the
    /// folder too [default: shapes]
    dataset: DatasetKind = DatasetKind::Shapes,
    /// Folder of `folder` data (one sub-folder per label) or of `idx` files [default for idx:
    /// /usr/share/datasets/fashion-mnist]; for digits, an optional CSV in the
    /// same format as data/digits [default: none]
    data_path: String = String::new(),
    /// Image size: shapes renders at this size; folder images are resized to it (0 = keep
    /// their size, which must then be the same for all) [default: shapes 8 (concepts 16), 0
    /// otherwise]
    image_size: u32 = 0,
    /// Channels of folder images: 1 (grey) or 3 (RGB) [default: 3]
    channels: u32 = 3,
    /// toy2d: number of classes on the circle [default: 8]
    classes: u32 = 8,
    /// shapes: two objects with four concept tokens per image (slot shape and colour)
    /// instead of one object with one class label [default: false]
    #[arg(num_args = 0..=1, default_missing_value = "true")]
    concepts: bool = false,
    /// shapes: each image a draw of its class — random position, size and colour jitter —
    /// instead of one render repeated [default: true for shapes with one object, false for
    /// concepts]
    #[arg(num_args = 0..=1, default_missing_value = "true")]
    jitter: bool = false,
    /// A seeded (data_seed) permutation decides which label (shapes concepts: which shape and
    /// which colour) gets which frequency, so that rarity is not tied to one class; else the
    /// first label is the head [default: true for shapes with one object, false otherwise]
    #[arg(num_args = 0..=1, default_missing_value = "true")]
    permute_frequencies: bool = false,
    /// Images of the head label in the long-tailed split (shapes concepts mode: images =
    /// 4·head_count) [default: toy2d 1000, shapes 200, digits 100, folder 0 = all images of
    /// the first label, idx 0 = all images of the most frequent label]
    head_count: usize = 0,
    /// Imbalance ratio ρ = n_head / n_tail of the split (1 = balanced) [default: toy2d and idx
    /// 100 (the CIFAR-LT protocol), others 10]
    imbalance: f64 = 0.0,
    /// Shape of the long tail over labels [default: exponential]
    #[arg(value_enum)]
    profile: Profile = Profile::Exponential,
    /// Seed of the data set and of the split [default: 0]
    data_seed: u32 = 0,
    // ---- model ----
    /// DiT size: auto (a small model sized for the data set), tiny, or a preset S/B/L/XL with
    /// patch 2, 4 or 8 (e.g. S/2) [default: auto]
    model: String = "auto".into(),
    /// Override the model's depth (0 = the model's) [default: 0]
    depth: u32 = 0,
    /// Override the model's hidden size D (0 = the model's) [default: 0]
    dim: u32 = 0,
    /// Override the model's attention heads (0 = the model's) [default: 0]
    heads: u32 = 0,
    /// Override the patch size (0 = the model's) [default: 0]
    patch: u32 = 0,
    // ---- objective ----
    /// Training objective [default: imba]
    #[arg(value_enum)]
    objective: ObjectiveKind = ObjectiveKind::default(),
    /// IMBA exponent γ of D (0 gives D ≡ 1) [default: 0.8]
    gamma: f32 = 0.8,
    /// IMBA mix λ: L = λ·L_c + (1−λ)·L_u [default: 0.9]
    lambda: f32 = 0.9,
    /// Form of D from ε − ε_u [default: mean-abs-pow]
    #[arg(value_enum)]
    d_form: DForm = DForm::MeanAbsPow,
    /// Normalisation of D: none, batch-mean, or t-bucket (imba's extension: D divided by its
    /// running mean among samples of the same timestep bucket; `none` is the published
    /// IMBA) [default: t-bucket]
    #[arg(value_enum)]
    normalize: Normalize = Normalize::TBucket,
    /// t-bucket normalisation: buckets over the schedule (or flow time) [default: 10]
    time_buckets: u32 = 10,
    /// t-bucket normalisation: decay of each bucket's running mean of D [default: 0.99]
    time_decay: f32 = 0.99,
    /// D per token, or averaged per sample (the paper's ablation) [default: token]
    #[arg(value_enum)]
    granularity: Granularity = Granularity::Token,
    /// The reweighted objective's rule: class-mean-d (D's running mean per label and timestep
    /// bucket over the bucket's), inverse-frequency (N/(L·n_y)), shuffled-d (a placebo: the
    /// normalised D of a random earlier sample of the same bucket), time-mean-d (D's running
    /// mean in the sample's timestep bucket, unnormalised), mean-d (D's running mean over all
    /// samples, unnormalised) [default: class-mean-d]
    #[arg(value_enum)]
    weight_rule: WeightRule = WeightRule::ClassMeanD,
    /// Baseline and CCUA: probability that a label is dropped to ∅ [default: 0.1]
    label_dropout: f32 = 0.1,
    /// CBDM: weight τ of the regulariser [default: 1]
    cbdm_tau: f32 = 1.0,
    /// CBDM: distribution of the extra label y' [default: frequency]
    #[arg(value_enum)]
    cbdm_prior: CbdmPrior = CbdmPrior::Frequency,
    /// CBDM: probability that a whole batch trains unconditionally, without the regulariser
    /// [default: 0.1]
    cbdm_uncond: f32 = 0.1,
    /// CCUA: weight α of the unconditional contrastive loss [default: 0.05]
    ccua_alpha: f32 = 0.05,
    /// CCUA: weight γ of the conditional–unconditional alignment [default: 0.05]
    ccua_gamma: f32 = 0.05,
    /// CCUA: temperature τ of the contrastive loss [default: 0.1]
    ccua_tau: f32 = 0.1,
    /// Diffusion process: flow (rectified flow, velocity target) or ddpm (ε-prediction)
    /// [default: flow: on the built-in data it reaches recognisable samples in fewer steps]
    #[arg(value_enum)]
    process: Process = Process::Flow,
    // ---- optimisation ----
    /// Training steps (total, counting those before a resume) [default: 1500]
    steps: u32 = 1500,
    /// Batch size B (images per step) [default: 32]
    batch: u32 = 32,
    /// AdamW learning rate [default: 3e-3 for the built-in data sets, 1e-3 for folder]
    lr: f32 = 3e-3,
    /// Linear learning-rate warm-up steps [default: 100]
    warmup: u32 = 100,
    /// AdamW decoupled weight decay [default: 0]
    weight_decay: f32 = 0.0,
    /// AdamW β1 [default: 0.9]
    beta1: f32 = 0.9,
    /// AdamW β2 [default: 0.999]
    beta2: f32 = 0.999,
    /// Gradient clipping: the largest global gradient norm (0 = off) [default: 1]
    clip: f32 = 1.0,
    /// EMA decay of the weights, warmed up as min(ema, (1+s)/(10+s)) at step s [default:
    /// 0.999]
    ema: f32 = 0.999,
    /// Seed of the initial weights, batches, timesteps, noise and label dropout [default: 0]
    seed: u32 = 0,
    // ---- outputs ----
    /// Output folder [default: runs/DATASET-OBJECTIVE]
    out: String = String::new(),
    /// Write a checkpoint every N steps (0 = only at the end) [default: 500]
    checkpoint_every: u32 = 500,
    /// Keep the EMA model of every checkpoint as snapshots/model-stepN.safetensors, for
    /// learning curves (`imba compare` evaluates them) [default: false]
    #[arg(num_args = 0..=1, default_missing_value = "true")]
    snapshots: bool = false,
    /// Samples drawn with the EMA weights at the end of training, every label in turn, and
    /// scored on the data set's oracle (0 = none) [default: 128]
    sample_count: u32 = 128,
    /// DDIM (DDPM) or Euler (flow) steps of the end-of-training samples [default: 50]
    sample_steps: u32 = 50,
    /// Classifier-free guidance scale of the end-of-training samples [default: 1.5]
    guidance: f32 = 1.5,
}

impl TrainOptions {
    /// Reads a TOML file of options; unknown keys are refused.
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(path, "cannot read the config", e))?;
        Self::from_toml(&text).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            e => e,
        })
    }

    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::Config(e.to_string()))
    }

    /// Defaults filled in (dataset-dependent ones too) and every value checked.
    pub fn resolve(self) -> Result<TrainConfig> {
        self.refuse_explicit_zeros()?;
        let (jitter_set, permute_set) = (self.jitter.is_some(), self.permute_frequencies.is_some());
        let lr_set = self.lr.is_some();
        let mut c = self.fill();
        let ds = c.dataset;
        // One object at 8 px, each image a draw of its class, rarity a seeded draw: the setting
        // in which the classes are learned within the default run's minutes (at 16 px with
        // patch 4 the small model had learned no shape after 3,000 steps). Two objects need
        // 16 px, and jitter in their 8-pixel strips would leave them no room.
        if ds == DatasetKind::Shapes && !c.concepts {
            c.jitter |= !jitter_set;
            c.permute_frequencies |= !permute_set;
        }
        if c.image_size == 0 && ds == DatasetKind::Shapes {
            c.image_size = if c.concepts { 16 } else { 8 };
        }
        // The built-in sets train the small auto model, which 3e-3 suits; folder data may
        // train a preset many times larger.
        if !lr_set && ds == DatasetKind::Folder {
            c.lr = 1e-3;
        }
        if c.head_count == 0 {
            c.head_count = match ds {
                DatasetKind::Toy2d => 1000,
                DatasetKind::Shapes => 200,
                DatasetKind::Digits => 100,
                DatasetKind::Folder | DatasetKind::Idx => 0,
            };
        }
        if ds == DatasetKind::Idx && c.data_path.is_empty() {
            c.data_path = IDX_DEFAULT_PATH.into();
        }
        if c.imbalance == 0.0 {
            c.imbalance = if matches!(ds, DatasetKind::Toy2d | DatasetKind::Idx) {
                100.0
            } else {
                10.0
            };
        }
        if c.out.is_empty() {
            c.out = format!("runs/{}-{}", ds.name(), c.objective.name());
        }
        c.validate()?;
        Ok(c)
    }
}

impl TrainOptions {
    /// Refuses a given value that would silently mean "the default" (0 for the ratio and
    /// the head count, an empty folder name): the run would not be what was asked.
    fn refuse_explicit_zeros(&self) -> Result<()> {
        let folder = matches!(self.dataset, Some(DatasetKind::Folder | DatasetKind::Idx));
        let zero = if self.imbalance == Some(0.0) {
            Some("imbalance")
        } else if self.head_count == Some(0) && !folder {
            Some("head_count")
        } else {
            None
        };
        if let Some(name) = zero {
            return Err(Error::Config(format!(
                "`{name}` is 0; give a positive value, or leave it out for the data set's default"
            )));
        }
        if self.out.as_deref().is_some_and(|o| o.trim().is_empty()) {
            return Err(Error::Config(
                "`out` is empty; name a folder, or leave it out for runs/<dataset>-<objective>"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Where Debian's `dataset-fashion-mnist` package puts Fashion-MNIST: the `idx` data set's
/// default folder.
pub const IDX_DEFAULT_PATH: &str = "/usr/share/datasets/fashion-mnist";

/// Options that may change when a run is resumed (and that a comparison does not compare).
pub const RESUMABLE: [&str; 7] = [
    "steps",
    "checkpoint_every",
    "snapshots",
    "sample_count",
    "sample_steps",
    "guidance",
    "out",
];

fn bad(key: &str, why: String) -> Error {
    Error::Config(format!("`{key}` {why}"))
}

impl TrainConfig {
    /// The run's AdamW, clip and EMA settings.
    pub fn optimizer_settings(&self) -> crate::model::OptimizerSettings {
        crate::model::OptimizerSettings {
            beta1: self.beta1,
            beta2: self.beta2,
            weight_decay: self.weight_decay,
            clip: self.clip,
            ema: self.ema,
        }
    }

    /// The options that differ between two configs and decide the training up to a step:
    /// those in [`RESUMABLE`] (the budget, checkpoints, end-of-run sampling, the folder) and
    /// those the objective does not read (IMBA's γ for the baseline, the t-bucket means for
    /// the dual baseline, CBDM's τ for IMBA, ...) are left out, so a checkpoint, a resume and
    /// a reused comparison run are judged by what actually trained them.
    pub fn run_differences(&self, other: &TrainConfig) -> Vec<&'static str> {
        self.differences(other)
            .into_iter()
            .filter(|k| !RESUMABLE.contains(k) && (self.reads(k) || other.reads(k)))
            .collect()
    }

    /// The options given in `opts` that this config's data set or objective does not read:
    /// they change nothing (a command says so rather than ignore them silently).
    pub fn unread(&self, opts: &TrainOptions) -> Vec<&'static str> {
        opts.given()
            .into_iter()
            .filter(|name| !self.reads(name))
            .collect()
    }

    /// Whether this config's data set and objective read option `name`.
    pub fn reads(&self, name: &str) -> bool {
        let ds = self.dataset;
        if crate::objectives::registry::OPTIONS.contains(&name) {
            return (self.objective.registration().reads)(&self.objective_settings(), name);
        }
        match name {
            "classes" => ds == DatasetKind::Toy2d,
            "concepts" | "jitter" => ds == DatasetKind::Shapes,
            "channels" => ds == DatasetKind::Folder,
            "data_path" => matches!(
                ds,
                DatasetKind::Digits | DatasetKind::Folder | DatasetKind::Idx
            ),
            "image_size" => matches!(ds, DatasetKind::Shapes | DatasetKind::Folder),
            "permute_frequencies" => ds != DatasetKind::Toy2d,
            _ => true,
        }
    }

    /// What to change after a diverged step: the option furthest above its usual scale among
    /// those this objective reads, when one is more than 10× above it; else the step size.
    pub fn divergence_advice(&self) -> String {
        let usual: [(&str, f64, f64); 7] = [
            ("lr", self.lr as f64, 3e-3),
            ("weight_decay", self.weight_decay as f64, 0.05),
            ("gamma", self.gamma as f64, 0.8),
            ("cbdm_tau", self.cbdm_tau as f64, 1.0),
            ("ccua_alpha", self.ccua_alpha as f64, 0.05),
            ("ccua_gamma", self.ccua_gamma as f64, 0.05),
            ("clip", self.clip as f64, 1.0),
        ];
        let worst = usual
            .iter()
            .filter(|(name, _, _)| self.reads(name))
            .map(|&(name, v, u)| (name, v, u, v / u))
            .max_by(|a, b| a.3.total_cmp(&b.3));
        // Small and large values in exponent form: 1.0e30, not thirty digits.
        let compact = |x: f64| {
            if x != 0.0 && !(1e-3..1e4).contains(&x.abs()) {
                format!("{x:.1e}")
            } else {
                format!("{}", (x * 1e6).round() / 1e6)
            }
        };
        match worst {
            Some((name, v, u, ratio)) if ratio > 10.0 => format!(
                "`{name}` = {} is {}× its usual scale ({u}): lower it{}",
                compact(v),
                compact(ratio.round()),
                if name == "lr" { "" } else { " (or lower `lr`)" }
            ),
            _ if self.clip == 0.0 => "lower `lr`, or turn `clip` back on (it is 0)".into(),
            _ => "lower `lr`".into(),
        }
    }

    /// The options objectives read, as the objectives' registrations take them.
    pub fn objective_settings(&self) -> crate::objectives::Settings {
        crate::objectives::Settings {
            imba: ImbaParams {
                gamma: self.gamma,
                lambda: self.lambda,
                form: self.d_form,
                normalize: self.normalize,
                granularity: self.granularity,
            },
            time_buckets: self.time_buckets,
            time_decay: self.time_decay,
            weight_rule: self.weight_rule,
            cbdm_tau: self.cbdm_tau,
            cbdm_prior: self.cbdm_prior,
            cbdm_uncond: self.cbdm_uncond,
            ccua: crate::objectives::CcuaSpec {
                alpha: self.ccua_alpha,
                gamma: self.ccua_gamma,
                tau: self.ccua_tau,
            },
            seed: self.seed,
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a config serialises")
    }

    pub fn from_toml(text: &str) -> Result<Self> {
        let c: Self = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_options_the_objective_reads_make_runs_differ() {
        let dual = TrainConfig {
            objective: ObjectiveKind::named("dual-baseline").unwrap(),
            normalize: Normalize::None,
            ..TrainConfig::default()
        };
        let other = TrainConfig {
            normalize: Normalize::TBucket,
            gamma: 0.5,
            cbdm_tau: 2.0,
            ..dual.clone()
        };
        assert!(dual.run_differences(&other).is_empty());
        let lr = TrainConfig {
            lr: 0.1,
            ..other.clone()
        };
        assert_eq!(other.run_differences(&lr), ["lr"]);
        let imba = TrainConfig {
            objective: ObjectiveKind::named("imba").unwrap(),
            ..dual.clone()
        };
        let imba_t = TrainConfig {
            objective: ObjectiveKind::named("imba").unwrap(),
            ..other
        };
        assert_eq!(imba.run_differences(&imba_t), ["gamma", "normalize"]);
    }
}
