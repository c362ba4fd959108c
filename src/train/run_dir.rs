//! A run folder and the files in it. Every command that reads or writes a run goes through
//! this type, so the file names live in one place.
//!
//! ```text
//! <run>/config.toml             the resolved training options
//!       split.json              the long-tailed split: images per label
//!       log.jsonl               one line per step (StepStats)
//!       .lock                   held by the process writing here (its PID and command)
//!       checkpoint.safetensors  model, EMA, AdamW moments, step, config (resume from it)
//!       checkpoint.prev.safetensors  the checkpoint before it (used if the latest is damaged)
//!       model.safetensors       the EMA weights under the reference DiT's names, with the
//!                               model's shape, process and label names in the metadata
//!       loss.png                the loss curve
//!       samples/                samples drawn at the end of training
//!       d_monitor.jsonl         IMBA's weight D per label and step (IMBA runs)
//!       d_monitor.json          its summary; d_vs_frequency.png its plot
//!       eval.json               `imba eval`'s scores
//!       result.json             `imba compare`'s evaluation of this run; eval_samples.png
//! ```

use super::state::{self, Saved};
use super::StepStats;
use crate::Result;
use std::path::{Path, PathBuf};

/// A run folder (it need not exist yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub fn config(&self) -> PathBuf {
        self.file("config.toml")
    }
    pub fn split(&self) -> PathBuf {
        self.file("split.json")
    }
    pub fn log(&self) -> PathBuf {
        self.file("log.jsonl")
    }
    pub fn checkpoint(&self) -> PathBuf {
        self.file("checkpoint.safetensors")
    }
    /// The checkpoint the latest one replaced, kept so that a damaged latest costs at most
    /// `checkpoint_every` steps.
    pub fn previous_checkpoint(&self) -> PathBuf {
        self.file("checkpoint.prev.safetensors")
    }
    pub fn model(&self) -> PathBuf {
        self.file("model.safetensors")
    }
    pub fn loss_plot(&self) -> PathBuf {
        self.file("loss.png")
    }
    pub fn samples(&self) -> PathBuf {
        self.file("samples")
    }
    pub fn d_log(&self) -> PathBuf {
        self.file("d_monitor.jsonl")
    }
    pub fn d_summary(&self) -> PathBuf {
        self.file("d_monitor.json")
    }
    pub fn d_plot(&self) -> PathBuf {
        self.file("d_vs_frequency.png")
    }
    pub fn t_log(&self) -> PathBuf {
        self.file("t_monitor.jsonl")
    }
    pub fn t_summary(&self) -> PathBuf {
        self.file("t_summary.json")
    }
    pub fn d_t_plot(&self) -> PathBuf {
        self.file("d_vs_t.png")
    }
    pub fn mse_t_plot(&self) -> PathBuf {
        self.file("mse_vs_t.png")
    }
    pub fn eval(&self) -> PathBuf {
        self.file("eval.json")
    }
    pub fn result(&self) -> PathBuf {
        self.file("result.json")
    }
    pub fn eval_samples(&self) -> PathBuf {
        self.file("eval_samples.png")
    }

    /// The EMA model kept at step `step` (`snapshots = true`), for learning curves.
    pub fn snapshot(&self, step: u32) -> PathBuf {
        self.root
            .join("snapshots")
            .join(format!("model-step{step:06}.safetensors"))
    }

    /// The steps of the snapshots kept, rising.
    pub fn snapshot_steps(&self) -> Vec<u32> {
        let mut v: Vec<u32> = std::fs::read_dir(self.root.join("snapshots"))
            .map(|d| {
                d.filter_map(|e| {
                    let name = e.ok()?.file_name().into_string().ok()?;
                    name.strip_prefix("model-step")?
                        .strip_suffix(".safetensors")?
                        .parse()
                        .ok()
                })
                .collect()
            })
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    /// Whether the folder holds a run (a checkpoint, the latest or the previous one).
    pub fn has_run(&self) -> bool {
        self.checkpoint().exists() || self.previous_checkpoint().exists()
    }

    /// The run's checkpoint: config, model shape, label names, step and tensors. A latest
    /// checkpoint that cannot be read (damaged, half-copied) falls back to the previous one,
    /// with a warning on stderr that names both.
    pub fn load(&self) -> Result<Saved> {
        let latest = state::load(&self.checkpoint());
        let Err(e) = latest else { return latest };
        let previous = self.previous_checkpoint();
        if !previous.exists() {
            return Err(e);
        }
        match state::load(&previous) {
            Ok(saved) => {
                eprintln!(
                    "warning: {e}\nwarning: using the previous checkpoint {} (step {}) instead",
                    previous.display(),
                    saved.state.step
                );
                Ok(saved)
            }
            Err(_) => Err(e),
        }
    }

    /// The step log (empty when there is none).
    pub fn read_log(&self) -> Vec<StepStats> {
        super::jsonl::read_jsonl(&self.log())
    }
}
