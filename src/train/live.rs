//! Training and sampling as a live view shows them, without blocking: a run in steps the view
//! awaits, with the loss history and D against each label's training frequency, and grids of
//! samples from the current EMA weights or from a checkpoint held in memory. What the browser
//! page runs (web/), and natively the reference it is compared with (`examples/live.rs`).

use super::{export, monitor, setup, state, StepStats, TrainConfig, TrainOptions, Trainer};
use crate::diffusion::{generate_async, Process, SampleSpec, Sampler};
use crate::gpu::Gpu;
use crate::model::DitConfig;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// How to sample a grid: every label `per_label` times (concept data: that many label rows
/// of the training data per label), with the sampler of the model's process.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
pub struct GridOptions {
    pub per_label: u32,
    /// The noise seed (sample i of the grid draws from (seed, i)).
    pub seed: u32,
    /// Classifier-free guidance w.
    pub guidance: f32,
    /// DDIM (DDPM models) or Euler (flow models) steps.
    pub steps: u32,
}

/// A grid of samples: images (n, C, H, W) in [−1, 1], one row of `cols` per label.
#[derive(Clone, Debug, Serialize)]
pub struct Grid {
    pub images: Vec<f32>,
    /// The label row of each sample (`label_slots` entries each).
    pub labels: Vec<u32>,
    pub cols: u32,
    pub channels: u32,
    pub height: u32,
    pub width: u32,
}

/// One label's mean D so far against its training frequency.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LabelD {
    pub name: String,
    /// Training images carrying the label.
    pub count: usize,
    /// Mean D over the tokens credited to the label (None before any was).
    pub mean_d: Option<f64>,
}

/// The run `imba train --config` would make of a TOML file's text: the options it sets,
/// the data set's defaults for the rest (empty text: the default run).
pub fn config_from_toml(text: &str) -> Result<TrainConfig> {
    TrainOptions::from_toml(text)?.resolve()
}

/// Refuses an empty grid and one of more samples than a sampling command draws.
fn check_grid(per_label: u32, labels: u32) -> Result<()> {
    if per_label == 0 {
        return Err(Error::Config(
            "a grid of 0 samples per label: ask for at least 1".into(),
        ));
    }
    let total = per_label as u64 * labels as u64;
    crate::bounds::at_most(
        "samples per label × labels",
        total,
        crate::bounds::MAX_SAMPLES,
    )
}

/// Samples a grid from `params` (usually EMA weights) of `model`.
async fn sample_grid(
    gpu: &Gpu,
    model: &DitConfig,
    params: &[f32],
    process: Process,
    labels: Vec<u32>,
    cols: u32,
    o: GridOptions,
) -> Result<Grid> {
    let spec = SampleSpec {
        model,
        params,
        process,
        sampler: Sampler::deterministic(process, o.steps),
        guidance: o.guidance,
        seed: o.seed,
        batch: 64,
        delta: None,
    };
    let images = generate_async(gpu, &spec, &labels).await?;
    Ok(Grid {
        images,
        labels,
        cols,
        channels: model.channels,
        height: model.height,
        width: model.width,
    })
}

/// A model to sample from, read from memory: a run's `checkpoint.safetensors` (its EMA
/// weights) or its exported `model.safetensors`; both name the model's shape, process and
/// labels in their metadata.
pub struct Checkpoint {
    /// The model, process, labels, EMA weights and step (of a training checkpoint: what its
    /// export holds).
    pub exported: export::Exported,
    /// The run's training config (a training checkpoint's; an exported model has none).
    pub config: Option<TrainConfig>,
}

impl Checkpoint {
    /// Reads the bytes of a checkpoint or an exported model; `name` names it in errors.
    pub fn from_bytes(name: &str, bytes: &[u8]) -> Result<Self> {
        let path = std::path::Path::new(name);
        if !training_state(bytes) {
            let exported = export::from_bytes(path, bytes)?;
            return Ok(Self {
                exported,
                config: None,
            });
        }
        let saved = state::from_bytes(path, bytes)?;
        let exported = export::Exported {
            model: saved.model,
            process: saved.config.process,
            label_names: saved.label_names,
            weights: saved.state.ema,
            step: Some(saved.state.step),
            of_steps: Some(saved.config.steps),
        };
        Ok(Self {
            exported,
            config: Some(saved.config),
        })
    }

    /// A grid of every label from the EMA weights (label rows of one slot: a concept model's
    /// grid needs its training data, so it is refused).
    pub async fn sample(&self, gpu: &Gpu, o: GridOptions) -> Result<Grid> {
        let e = &self.exported;
        let m = &e.model;
        if m.label_slots != 1 {
            return Err(Error::Config(format!(
                "this model takes {} labels per sample; a grid from a checkpoint alone is drawn \
                 for one-label models (sample concept lists with `imba sample --concepts`)",
                m.label_slots
            )));
        }
        let per = o.per_label;
        check_grid(per, m.num_labels)?;
        let labels = (0..m.num_labels)
            .flat_map(|l| std::iter::repeat_n(l, per as usize))
            .collect();
        sample_grid(gpu, m, &e.weights, e.process, labels, per, o).await
    }
}

/// Whether `bytes` are a training checkpoint (its metadata names a training state); garbage
/// is left to the exported model's reader to name.
fn training_state(bytes: &[u8]) -> bool {
    let Ok((_, meta)) = safetensors::SafeTensors::read_metadata(bytes) else {
        return false;
    };
    meta.metadata()
        .as_ref()
        .is_some_and(|m| m.contains_key("imba.kind"))
}

/// A training run stepped by a view: the trainer, the loss history and D per label.
pub struct LiveRun<'g> {
    pub trainer: Trainer<'g>,
    pub history: Vec<StepStats>,
    /// For each label slot, the tokens that show it (the D monitor's attribution).
    slot_tokens: Vec<Vec<u32>>,
    d_sum: Vec<f64>,
    d_tokens: Vec<u64>,
}

impl<'g> LiveRun<'g> {
    /// A fresh run of `config` (its data drawn or loaded as `imba train` does).
    pub fn new(gpu: &'g Gpu, config: TrainConfig) -> Result<Self> {
        config.validate()?;
        let (data, _) = setup::load_data(&config)?;
        let model = setup::model_config(&config, &data)?;
        let slot_tokens = monitor::slot_tokens(&data, &model);
        let labels = data.num_labels() as usize;
        let trainer = Trainer::new(gpu, config, model, data, None)?;
        Ok(Self {
            trainer,
            history: Vec::new(),
            slot_tokens,
            d_sum: vec![0.0; labels],
            d_tokens: vec![0; labels],
        })
    }

    /// Runs `n` steps (fewer where the run reaches its configured total), awaiting each
    /// step's read-back; returns their stats.
    pub async fn steps(&mut self, n: u32) -> Result<Vec<StepStats>> {
        let mut out = Vec::new();
        let end = self.trainer.config.steps;
        while out.len() < n as usize && self.trainer.step < end {
            let s = self.trainer.step_async().await?;
            self.credit_d();
            self.history.push(s);
            out.push(s);
        }
        Ok(out)
    }

    /// Adds the last step's D to each label's sums (objectives without D add nothing).
    fn credit_d(&mut self) {
        let last = &self.trainer.last;
        if last.d.is_empty() {
            return;
        }
        let data = &self.trainer.data;
        let line = monitor::attribute(0, data, &self.slot_tokens, &last.batch, &last.d);
        for (l, (s, t)) in line.sum.iter().zip(&line.tokens).enumerate() {
            self.d_sum[l] += s;
            self.d_tokens[l] += *t as u64;
        }
    }

    /// Mean D per label so far, with each label's training count.
    pub fn d_by_label(&self) -> Vec<LabelD> {
        let data = &self.trainer.data;
        let counts = data.label_counts();
        (0..data.num_labels() as usize)
            .map(|l| LabelD {
                name: data.label_names[l].clone(),
                count: counts[l],
                mean_d: (self.d_tokens[l] > 0).then(|| self.d_sum[l] / self.d_tokens[l] as f64),
            })
            .collect()
    }

    /// A grid from the current EMA weights: the rows `imba train` draws at its end.
    pub async fn sample(&self, o: GridOptions) -> Result<Grid> {
        let (t, per) = (&self.trainer, o.per_label);
        check_grid(per, t.data.num_labels())?;
        let (labels, cols) = super::run::sample_labels(&t.data, per * t.data.num_labels());
        let ema = t.ema_async().await?;
        sample_grid(t.gpu(), &t.model, &ema, t.config.process, labels, cols, o).await
    }
}
