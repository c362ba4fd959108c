//! The range of every value of a config, checked before anything runs; each refusal names
//! the key and what it accepts.

use super::{bad, DatasetKind, TrainConfig};
use crate::Result;

impl TrainConfig {
    /// Checks every value's range, naming the key.
    pub fn validate(&self) -> Result<()> {
        self.check_sizes()?;
        self.check_optimiser()?;
        self.check_objectives()?;
        self.check_data()
    }

    /// The budget, the batch, the images and the end-of-run sampling within their bounds.
    fn check_sizes(&self) -> Result<()> {
        let c = self;
        if c.steps == 0 {
            return Err(bad("steps", "must be at least 1".into()));
        }
        if c.batch == 0 {
            return Err(bad("batch", "must be at least 1".into()));
        }
        use crate::bounds::{self, at_most};
        at_most("steps", c.steps, bounds::MAX_STEPS)?;
        at_most("batch", c.batch, bounds::MAX_BATCH)?;
        at_most("image_size", c.image_size, bounds::MAX_IMAGE_SIZE)?;
        at_most("head_count", c.head_count as u64, bounds::MAX_HEAD_COUNT)?;
        at_most("sample_count", c.sample_count, bounds::MAX_SAMPLES)?;
        at_most("sample_steps", c.sample_steps, bounds::MAX_SAMPLER_STEPS)?;
        Ok(())
    }

    /// The optimiser's settings and the label dropout.
    fn check_optimiser(&self) -> Result<()> {
        let c = self;
        use crate::bounds;
        if !(c.lr > 0.0 && c.lr <= bounds::MAX_LR) {
            return Err(bad(
                "lr",
                format!("must be in (0, {}], got {}", bounds::MAX_LR, c.lr),
            ));
        }
        if !(c.weight_decay >= 0.0 && c.weight_decay.is_finite()) {
            return Err(bad(
                "weight_decay",
                format!("must be ≥ 0, got {}", c.weight_decay),
            ));
        }
        for (k, v) in [("beta1", c.beta1), ("beta2", c.beta2), ("ema", c.ema)] {
            if !(0.0..1.0).contains(&v) {
                return Err(bad(k, format!("must be in [0, 1), got {v}")));
            }
        }
        if !(c.clip >= 0.0 && c.clip.is_finite()) {
            return Err(bad(
                "clip",
                format!("must be ≥ 0 (0 = off), got {}", c.clip),
            ));
        }
        if !(0.0..=1.0).contains(&c.label_dropout) {
            return Err(bad(
                "label_dropout",
                format!("must be in [0, 1], got {}", c.label_dropout),
            ));
        }
        Ok(())
    }

    /// The objectives' own settings: CBDM's, CCUA's, the guidance, IMBA's and its time buckets.
    fn check_objectives(&self) -> Result<()> {
        let c = self;
        use crate::bounds;
        for (k, v) in [
            ("cbdm_tau", c.cbdm_tau),
            ("ccua_alpha", c.ccua_alpha),
            ("ccua_gamma", c.ccua_gamma),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(bad(k, format!("must be a finite number ≥ 0, got {v}")));
            }
        }
        if !(0.0..=1.0).contains(&c.cbdm_uncond) {
            return Err(bad(
                "cbdm_uncond",
                format!("must be in [0, 1], got {}", c.cbdm_uncond),
            ));
        }
        if !(c.ccua_tau > 0.0 && c.ccua_tau.is_finite()) {
            return Err(bad(
                "ccua_tau",
                format!("must be a finite number > 0, got {}", c.ccua_tau),
            ));
        }
        let settings = self.objective_settings();
        (c.objective.registration().check)(&settings, c.batch)?;
        bounds::guidance("guidance", c.guidance)?;
        settings.imba.validate()?;
        let max = crate::kernels::MAX_TIME_BUCKETS;
        if !(1..=max).contains(&c.time_buckets) {
            return Err(bad(
                "time_buckets",
                format!("must be in 1..={max}, got {}", c.time_buckets),
            ));
        }
        if !(0.0..1.0).contains(&c.time_decay) {
            return Err(bad(
                "time_decay",
                format!("must be in [0, 1), got {}", c.time_decay),
            ));
        }
        Ok(())
    }

    /// The data set's settings and the end-of-run sampling.
    fn check_data(&self) -> Result<()> {
        let c = self;
        if !(c.imbalance >= 1.0 && c.imbalance.is_finite()) {
            return Err(bad(
                "imbalance",
                format!(
                    "must be a finite ratio ≥ 1 (1 = balanced), got {}",
                    c.imbalance
                ),
            ));
        }
        if c.head_count == 0 && !matches!(c.dataset, DatasetKind::Folder | DatasetKind::Idx) {
            return Err(bad("head_count", "must be at least 1".into()));
        }
        if c.channels != 1 && c.channels != 3 {
            return Err(bad(
                "channels",
                format!("must be 1 or 3, got {}", c.channels),
            ));
        }
        if c.classes < 2 || c.classes > 1024 {
            return Err(bad(
                "classes",
                format!("must be in 2..=1024, got {}", c.classes),
            ));
        }
        if c.dataset == DatasetKind::Folder && c.data_path.is_empty() {
            return Err(bad(
                "data_path",
                "is needed for folder data: a folder with one sub-folder of images per label"
                    .into(),
            ));
        }
        if c.sample_count > 0 && c.sample_steps == 0 {
            return Err(bad("sample_steps", "must be at least 1".into()));
        }
        Ok(())
    }
}
