//! `imba train` as a library call: the output folder, the data split, the loop with its log,
//! progress and checkpoints, and the end-of-run model, loss curve and samples.

use super::state::Saved;
use super::{
    monitor, ranks, setup, time_monitor, DatasetKind, FolderLock, RunDir, State, StepStats,
    TrainConfig, TrainOptions, Trainer,
};
use crate::data::{Dataset, Split};
use crate::diffusion::generate::{generate, SampleSpec};
use crate::diffusion::Sampler;
use crate::gpu::Gpu;
use crate::model::DitConfig;
use crate::parallel::{Collective, Lockstep};
use crate::report::save_samples;
use crate::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

pub use super::config::RESUMABLE;
pub use super::jsonl::read_jsonl;
pub use finish::sample_labels;

mod finish;
mod logs;
mod open;
use finish::*;
use logs::*;
use open::*;

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
    /// The end-of-run samples with their labels and the training split (for an oracle).
    pub end_samples: Option<EndSamples>,
}

/// A run's end-of-run samples: label rows, images (n, C, H, W) and the data they were
/// trained on.
pub struct EndSamples {
    pub labels: Vec<u32>,
    pub images: Vec<f32>,
    pub data: Dataset,
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
    train_parallel(gpu, &crate::parallel::Single, opts, resume, progress)
}

/// [`train`] as one rank of a data-parallel job (every rank calls it with the same options):
/// rank 0 opens and writes the run folder (config, logs, checkpoints, the end-of-run model
/// and samples) and sends the config and any checkpoint's state to the others; every rank
/// trains on its shard of each batch.
pub fn train_parallel<'g>(
    gpu: &'g Gpu,
    comm: &'g dyn Collective,
    opts: TrainOptions,
    resume: Option<&Path>,
    progress: bool,
) -> Result<Outcome> {
    let lockstep = Lockstep::enter();
    let mut started = start(gpu, comm, opts, resume, lockstep)?;
    match started.folder.take() {
        Some(folder) => lead(gpu, started, folder.0, folder.1, progress),
        None => follow(started),
    }
}

/// A run ready for its first step on this rank; rank 0 holds the locked run folder.
struct Started<'g> {
    trainer: Trainer<'g>,
    model: DitConfig,
    split: Split,
    config: TrainConfig,
    folder: Option<(RunDir, FolderLock)>,
    lockstep: Lockstep,
}

/// Opens the run (rank 0), shares its config, prepares every rank and has them agree. Every
/// check that can refuse the run (batch size, device limits, the data) runs on every rank
/// before the first file is written; a refused new run leaves no folder behind.
fn start<'g>(
    gpu: &'g Gpu,
    comm: &'g dyn Collective,
    opts: TrainOptions,
    resume: Option<&Path>,
    lockstep: Lockstep,
) -> Result<Started<'g>> {
    let opened = (comm.rank() == 0).then(|| open(opts, resume));
    let shared = ranks::share(comm, opened.as_ref(), |o| ranks::encode_config(&o.0));
    // Rank 0's refusal reached every rank with the config's broadcast.
    let (config, folder, saved) = match (opened, shared) {
        (Some(Err(e)), _) | (None, Err(e)) => return Err(lockstep.agreed(e)),
        (Some(Ok((config, run, saved, lock))), shared) => {
            shared?;
            (config, Some((run, lock)), saved)
        }
        (None, Ok(bytes)) => (ranks::decode_config(&bytes)?, None, None),
    };
    let prepared = prepare(gpu, comm, &config, saved);
    let fingerprint = prepared.as_ref().map_or(0, |p| p.0.fingerprint);
    match ranks::agree(comm, prepared, fingerprint) {
        Ok((trainer, model, split)) => Ok(Started {
            trainer,
            model,
            split,
            config,
            folder,
            lockstep,
        }),
        Err(e) => {
            let e = lockstep.agreed(e);
            if let Some((run, lock)) = folder {
                let created = lock.created();
                drop(lock);
                if created {
                    remove_if_only_lock(run.root());
                }
            }
            Err(e)
        }
    }
}

/// Every rank: the data, the model, rank 0's checkpoint state (sent to all), the trainer.
fn prepare<'g>(
    gpu: &'g Gpu,
    comm: &'g dyn Collective,
    config: &TrainConfig,
    saved: Option<Saved>,
) -> Result<(Trainer<'g>, DitConfig, Split)> {
    let loaded = setup::load_data(config).and_then(|(data, split)| {
        let model = setup::model_config(config, &data)?;
        Ok((data, split, model))
    });
    let state = match (&loaded, saved) {
        (Ok((data, _, model)), Some(s)) => check_saved(s, config, data, model).map(Some),
        // No checkpoint, or data that failed to load: that error is reported instead.
        _ => Ok(None),
    };
    let lead = comm.rank() == 0;
    let shared = ranks::share(comm, lead.then_some(&state), ranks::encode_state);
    let (data, split, model) = loaded?;
    let state = match lead {
        true => state?,
        false => ranks::decode_state(&shared?)?,
    };
    let trainer = Trainer::new_parallel(gpu, comm, config.clone(), model.clone(), data, state)?;
    Ok((trainer, model, split))
}

/// Rank 0 (or a single process): trains, writing the run folder as it goes.
fn lead(
    gpu: &Gpu,
    started: Started,
    run: RunDir,
    lock: FolderLock,
    progress: bool,
) -> Result<Outcome> {
    let Started {
        mut trainer,
        model,
        split,
        config,
        lockstep,
        ..
    } = started;
    let first_step = trainer.step;
    let _lock = lock;
    write_header(&run, &config, &split)?;
    if progress {
        describe(&split, &model, &config, &trainer);
    }
    let mut logs = Logs::open(&run, &config, first_step)?;
    let d_tokens = monitor::slot_tokens(&trainer.data, &model);
    let bar = Progress::new(progress, config.steps, first_step);
    let mut last = None;
    let stoppable = super::stop::Stoppable::new();
    while trainer.step < config.steps {
        let stats = trainer.step().map_err(|e| name_last_checkpoint(e, &run))?;
        logs.append(&stats, &trainer, &d_tokens)?;
        bar.show(&stats, config.steps, first_step);
        let due = config.checkpoint_every > 0 && stats.step % config.checkpoint_every == 0;
        if due {
            let state = trainer.state()?;
            save_checkpoint(&run, &trainer, &state)?;
            if config.snapshots {
                save_snapshot(&run, &trainer, &state)?;
            }
        }
        if let Some((signal, name)) = stop_requested(&trainer) {
            if !due {
                save_checkpoint(&run, &trainer, &trainer.state()?)?;
            }
            bar.finish();
            lockstep.leave();
            return Err(Error::Interrupted {
                signal,
                name,
                step: stats.step,
                what: format!(
                    "its checkpoint is {}; continue with `imba train --resume {}` (or rerun \
                     the same `imba compare`)",
                    run.checkpoint().display(),
                    run.root().display()
                ),
            });
        }
        last = Some(stats);
    }
    lockstep.leave();
    drop(stoppable);
    let seconds = bar.finish();
    let (written, end_samples) = finish(
        gpu,
        &run,
        &trainer,
        &model,
        last.is_some(),
        logs.d_log.is_some(),
    )?;
    Ok(Outcome {
        out: run.root().to_path_buf(),
        config,
        last,
        steps_run: trainer.step - first_step,
        seconds,
        written,
        end_samples,
    })
}

/// The split, the model and (data-parallel) the ranks, on stderr.
fn describe(split: &Split, model: &DitConfig, config: &TrainConfig, trainer: &Trainer) {
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
    if trainer.shard.ranks > 1 {
        eprintln!(
            "data-parallel: {} ranks, {} of each batch of {} per rank",
            trainer.shard.ranks, trainer.shard.len, config.batch
        );
    }
}

/// The stop signal this step ends on: this process's own, or (data-parallel) any rank's,
/// shared at the step's exchange so that every rank stops after the same step.
fn stop_requested(trainer: &Trainer) -> Option<(i32, &'static str)> {
    if trainer.shard.ranks == 1 {
        return super::stop::requested();
    }
    trainer
        .peer_stop
        .then(|| super::stop::requested().unwrap_or(super::stop::SIGTERM))
}

/// A rank other than 0: trains in step with rank 0 and writes nothing.
fn follow(started: Started) -> Result<Outcome> {
    let Started {
        mut trainer,
        config,
        lockstep,
        ..
    } = started;
    let (first_step, started) = (trainer.step, std::time::Instant::now());
    let stoppable = super::stop::Stoppable::new();
    let mut last = None;
    while trainer.step < config.steps {
        let stats = trainer.step()?;
        if let Some((signal, name)) = stop_requested(&trainer) {
            lockstep.leave();
            return Err(Error::Interrupted {
                signal,
                name,
                step: stats.step,
                what: "rank 0 wrote the checkpoint".into(),
            });
        }
        last = Some(stats);
    }
    lockstep.leave();
    drop(stoppable);
    Ok(Outcome {
        out: PathBuf::from(&config.out),
        config,
        last,
        steps_run: trainer.step - first_step,
        seconds: started.elapsed().as_secs_f64(),
        written: Vec::new(),
        end_samples: None,
    })
}
