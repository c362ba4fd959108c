//! `imba train` as a library call: the output folder, the data split, the loop with its log,
//! progress and checkpoints, and the end-of-run model, loss curve and samples.

use super::{monitor, setup, state, DatasetKind, StepStats, TrainConfig, TrainOptions, Trainer};
use crate::diffusion::generate::{generate, SampleSpec};
use crate::diffusion::Sampler;
use crate::gpu::Gpu;
use crate::report::save_samples;
use crate::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The checkpoint's file name inside a run folder.
pub const CHECKPOINT: &str = "checkpoint.safetensors";
/// Options that may change when a run is resumed.
pub const RESUMABLE: [&str; 6] = [
    "steps",
    "checkpoint_every",
    "sample_count",
    "sample_steps",
    "guidance",
    "out",
];

/// How a run ended.
pub struct Outcome {
    pub out: PathBuf,
    pub config: TrainConfig,
    pub last: Option<StepStats>,
    /// Steps done in this call and their wall time, s.
    pub steps_run: u32,
    pub seconds: f64,
    /// Files written at the end (model, curve, samples).
    pub written: Vec<PathBuf>,
}

/// An I/O error naming the file and what could not be done with it.
pub(crate) fn io(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.display().to_string(),
        problem: format!("{what} ({e})"),
    }
}

/// Keeps the lines of a JSONL log whose `step` is ≤ `step` (a resume redoes the later ones).
fn truncate_log(path: &Path, step: u32) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("step")?.as_u64())
                .is_some_and(|s| s <= step as u64)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(path, kept).map_err(|e| io(path, "cannot rewrite the log", e))
}

/// Reads the lines of a JSONL file that parse as `T` (none if the file is missing).
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Reads a run's step log.
pub fn read_log(path: &Path) -> Vec<StepStats> {
    read_jsonl(path)
}

/// Trains from `opts` (a new run) or continues the run in `resume`. `progress` draws a
/// progress bar (or, off a terminal, a line every 5%) on stderr.
pub fn train(
    gpu: &Gpu,
    opts: TrainOptions,
    resume: Option<&Path>,
    progress: bool,
) -> Result<Outcome> {
    let (config, out, saved) = match resume {
        Some(dir) => {
            let saved = state::load(&dir.join(CHECKPOINT))?;
            let base = TrainOptions::from_toml(&saved.config.to_toml())?;
            let mut config = opts.or(base).resolve()?;
            config.out = dir.display().to_string();
            let changed: Vec<_> = config
                .differences(&saved.config)
                .into_iter()
                .filter(|k| !RESUMABLE.contains(k))
                .collect();
            if !changed.is_empty() {
                return Err(Error::Config(format!(
                    "a resumed run keeps its config; {changed:?} differ from the checkpoint's \
                     (only {RESUMABLE:?} may change). Start a new run with --out instead"
                )));
            }
            (config, dir.to_path_buf(), Some(saved))
        }
        None => {
            let config = opts.resolve()?;
            let out = PathBuf::from(&config.out);
            if out.join(CHECKPOINT).exists() {
                return Err(Error::Config(format!(
                    "{} already holds a run; continue it with `--resume {}` or choose another \
                     `--out`",
                    out.display(),
                    out.display()
                )));
            }
            (config, out, None)
        }
    };
    let (data, split) = setup::load_data(&config)?;
    let model = setup::model_config(&config, &data)?;
    let saved_state = match saved {
        Some(s) => {
            if s.fingerprint != data.fingerprint() {
                return Err(Error::Data(format!(
                    "the data differ from those the checkpoint was trained on (fingerprint \
                     {:016x} vs {:016x}); resume with the same data",
                    data.fingerprint(),
                    s.fingerprint
                )));
            }
            if s.model != model {
                return Err(Error::Config(
                    "the checkpoint's model differs from the one its config gives".into(),
                ));
            }
            if s.state.step > config.steps {
                return Err(Error::Config(format!(
                    "the checkpoint is at step {} but `steps` is {}; raise `steps` to train on",
                    s.state.step, config.steps
                )));
            }
            Some(s.state)
        }
        None => None,
    };
    let first_step = saved_state.as_ref().map_or(0, |s| s.step);
    // Everything that can refuse the run (batch size, device limits) is checked before the
    // first file is written.
    let mut trainer = Trainer::new(gpu, config.clone(), model.clone(), data, saved_state)?;
    std::fs::create_dir_all(&out).map_err(|e| io(&out, "cannot create the run folder", e))?;
    std::fs::write(out.join("config.toml"), config.to_toml())
        .map_err(|e| io(&out, "cannot write config.toml", e))?;
    std::fs::write(
        out.join("split.json"),
        serde_json::to_string_pretty(&split).expect("serialisable"),
    )
    .map_err(|e| io(&out, "cannot write split.json", e))?;
    if progress {
        eprint!("{}", split.table());
        eprintln!(
            "model: depth {}, D {}, {} heads, patch {} ({} tokens of {}), objective {}, {:?}",
            model.depth,
            model.dim,
            model.heads,
            model.patch,
            model.tokens(),
            model.token_dim(),
            config.objective.name(),
            config.process
        );
    }
    let open_log = |path: &Path| -> Result<std::fs::File> {
        if first_step > 0 {
            truncate_log(path, first_step)?;
        } else {
            let _ = std::fs::remove_file(path);
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| io(path, "cannot open the log", e))
    };
    let log_path = out.join("log.jsonl");
    let mut log = open_log(&log_path)?;
    // The D monitor (IMBA only: elsewhere D is 1 or absent).
    let d_path = out.join(monitor::D_LOG);
    let mut d_log = match config.objective {
        super::Objective::Imba => Some(open_log(&d_path)?),
        _ => None,
    };
    let d_tokens = monitor::slot_tokens(&trainer.data, &model);
    let ckpt = out.join(CHECKPOINT);
    let bar = progress.then(|| {
        let b = indicatif::ProgressBar::new(config.steps as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} {wide_bar} {pos}/{len} {msg} ETA {eta}",
            )
            .expect("valid template"),
        );
        b.set_position(first_step as u64);
        b
    });
    let start = std::time::Instant::now();
    let mut last = None;
    let every_line = (config.steps / 20).max(1);
    while trainer.step < config.steps {
        let stats = match trainer.step() {
            Ok(s) => s,
            Err(Error::Diverged(m)) => {
                let kept = if ckpt.exists() {
                    format!("the last good checkpoint is {}", ckpt.display())
                } else {
                    "no checkpoint was written yet".into()
                };
                return Err(Error::Diverged(format!("{m}; {kept}")));
            }
            Err(e) => return Err(e),
        };
        writeln!(
            log,
            "{}",
            serde_json::to_string(&stats).expect("serialisable")
        )
        .map_err(|e| io(&log_path, "cannot append to the log", e))?;
        if let Some(f) = d_log.as_mut() {
            let line = monitor::attribute(
                stats.step,
                &trainer.data,
                &d_tokens,
                &trainer.last_batch,
                &trainer.last_d,
            );
            writeln!(f, "{}", serde_json::to_string(&line).expect("serialisable"))
                .map_err(|e| io(&d_path, "cannot append to the D log", e))?;
        }
        let done = (stats.step - first_step) as f64;
        let rate = done / start.elapsed().as_secs_f64();
        if let Some(b) = &bar {
            b.set_position(stats.step as u64);
            b.set_message(format!(
                "loss {:.4} D {:.3} {rate:.2} steps/s",
                stats.loss, stats.mean_d
            ));
            if b.is_hidden() && stats.step % every_line == 0 {
                eprintln!(
                    "step {}/{} loss {:.4} mean D {:.3} grad norm {:.3} {rate:.2} steps/s",
                    stats.step, config.steps, stats.loss, stats.mean_d, stats.grad_norm
                );
            }
        }
        if config.checkpoint_every > 0 && stats.step % config.checkpoint_every == 0 {
            trainer.save(&ckpt, &trainer.state()?)?;
        }
        last = Some(stats);
    }
    if let Some(b) = &bar {
        b.finish();
    }
    let seconds = start.elapsed().as_secs_f64();
    // One read-back of the final state serves the last checkpoint (unless the loop just wrote
    // it), the exported model and the samples.
    let st = trainer.state()?;
    let just_saved = config.checkpoint_every > 0 && trainer.step % config.checkpoint_every == 0;
    if last.is_some() && !just_saved {
        trainer.save(&ckpt, &st)?;
    }
    let mut written = vec![ckpt.clone(), log_path.clone()];
    let model_file = out.join("model.safetensors");
    crate::model::checkpoint::save(&model_file, &model, &st.ema)?;
    written.push(model_file);
    let log_all = read_log(&log_path);
    let curve = out.join("loss.png");
    crate::report::plot::loss_curve(
        &curve,
        &format!(
            "{} on {} ({})",
            config.objective.name(),
            trainer.data.name,
            out.display()
        ),
        &log_all.iter().map(|s| s.step).collect::<Vec<_>>(),
        &log_all.iter().map(|s| s.loss).collect::<Vec<_>>(),
    )?;
    written.push(curve);
    if d_log.is_some() {
        monitor::finish(
            &out,
            config.steps,
            &trainer.data.label_names,
            &trainer.data.label_counts(),
        )?;
        written.push(out.join("d_monitor.json"));
        written.push(out.join("d_vs_frequency.png"));
    }
    if config.sample_count > 0 {
        let (labels, cols) = sample_labels(&trainer.data, config.sample_count);
        let sampler = match config.process {
            super::Process::Ddpm => Sampler::Ddim {
                steps: config.sample_steps,
                eta: 0.0,
            },
            super::Process::Flow => Sampler::Euler {
                steps: config.sample_steps,
            },
        };
        let images = generate(
            gpu,
            &SampleSpec {
                model: &model,
                params: &st.ema,
                process: config.process,
                sampler,
                guidance: config.guidance,
                seed: config.seed,
                batch: 64,
                delta: None,
            },
            &labels,
        )?;
        let centres = if config.dataset == DatasetKind::Toy2d {
            crate::data::toy2d_means(config.classes, crate::data::Toy2dSpec::default().radius)
        } else {
            Vec::new()
        };
        written.extend(save_samples(
            &out.join("samples"),
            &model,
            &images,
            &labels,
            &trainer.data.label_names,
            cols,
            &centres,
        )?);
    }
    Ok(Outcome {
        out,
        config,
        last,
        steps_run: trainer.step - first_step,
        seconds,
        written,
    })
}

/// Labels for `count` samples: for class labels, every label in turn (a grid row per label);
/// for concept lists, the rows of the first images of a seeded shuffle of the data.
pub fn sample_labels(data: &crate::data::Dataset, count: u32) -> (Vec<u32>, u32) {
    if data.slots == 1 {
        let per = count.div_ceil(data.num_labels()).max(1);
        (crate::data::class_labels(data, per), per)
    } else {
        let order = crate::data::shuffled(data.len(), 1, 1);
        let labels = order
            .iter()
            .cycle()
            .take(count as usize)
            .flat_map(|&i| data.labels_of(i).to_vec())
            .collect();
        (labels, (count as f64).sqrt().ceil() as u32)
    }
}
