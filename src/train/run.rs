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
use crate::parallel::Collective;
use crate::report::save_samples;
use crate::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

pub use super::config::RESUMABLE;

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
    crate::files::write_atomic(path, kept.as_bytes())
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
    crate::parallel::enter_lockstep();
    let mut started = start(gpu, comm, opts, resume)?;
    match started.folder.take() {
        Some(folder) => lead(gpu, started, folder, progress),
        None => follow(&mut started.trainer, started.config),
    }
}

/// A run ready for its first step on this rank; rank 0 holds the locked run folder.
struct Started<'g> {
    trainer: Trainer<'g>,
    model: DitConfig,
    split: Split,
    config: TrainConfig,
    folder: Option<(RunDir, FolderLock)>,
}

/// Opens the run (rank 0), shares its config, prepares every rank and has them agree. Every
/// check that can refuse the run (batch size, device limits, the data) runs on every rank
/// before the first file is written; a refused new run leaves no folder behind.
fn start<'g>(
    gpu: &'g Gpu,
    comm: &'g dyn Collective,
    opts: TrainOptions,
    resume: Option<&Path>,
) -> Result<Started<'g>> {
    let opened = (comm.rank() == 0).then(|| open(opts, resume));
    let shared = ranks::share(comm, opened.as_ref(), |o| ranks::encode_config(&o.0));
    // Rank 0's refusal reached every rank with the config's broadcast.
    let agreed = |e| {
        crate::parallel::leave_lockstep();
        e
    };
    let (config, folder, saved) = match opened {
        Some(o) => {
            let (config, run, saved, lock) = o.map_err(agreed)?;
            shared?;
            (config, Some((run, lock)), saved)
        }
        None => (ranks::decode_config(&shared.map_err(agreed)?)?, None, None),
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
        }),
        Err(e) => {
            crate::parallel::leave_lockstep();
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
    (run, lock): (RunDir, FolderLock),
    progress: bool,
) -> Result<Outcome> {
    let Started {
        mut trainer,
        model,
        split,
        config,
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
                save_snapshot(&run, &model, &state)?;
            }
        }
        if let Some((signal, name)) = stop_requested(&trainer) {
            if !due {
                save_checkpoint(&run, &trainer, &trainer.state()?)?;
            }
            bar.finish();
            crate::parallel::leave_lockstep();
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
    crate::parallel::leave_lockstep();
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
fn follow(trainer: &mut Trainer, config: TrainConfig) -> Result<Outcome> {
    let (first_step, started) = (trainer.step, std::time::Instant::now());
    let stoppable = super::stop::Stoppable::new();
    let mut last = None;
    while trainer.step < config.steps {
        let stats = trainer.step()?;
        if let Some((signal, name)) = stop_requested(trainer) {
            crate::parallel::leave_lockstep();
            return Err(Error::Interrupted {
                signal,
                name,
                step: stats.step,
                what: "rank 0 wrote the checkpoint".into(),
            });
        }
        last = Some(stats);
    }
    crate::parallel::leave_lockstep();
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

/// Removes a folder that holds nothing but its lock file (made for a run that was refused).
fn remove_if_only_lock(dir: &Path) {
    let only_lock = std::fs::read_dir(dir).is_ok_and(|d| {
        d.filter_map(|e| e.ok())
            .all(|e| e.file_name() == super::lock::LOCK_FILE)
    });
    if only_lock {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Writes the run's checkpoint, keeping the one it replaces as the previous checkpoint (a
/// hard link, or a copy where links are not possible), so a latest checkpoint damaged later
/// costs at most `checkpoint_every` steps.
fn save_checkpoint(run: &RunDir, trainer: &Trainer, state: &State) -> Result<()> {
    let (latest, previous) = (run.checkpoint(), run.previous_checkpoint());
    if latest.exists() {
        let _ = std::fs::remove_file(&previous);
        if std::fs::hard_link(&latest, &previous).is_err() {
            std::fs::copy(&latest, &previous)
                .map_err(|e| Error::io(&previous, "cannot keep the previous checkpoint", e))?;
        }
    }
    trainer.save(&latest, state)
}

/// Keeps the EMA model of `state`'s step under snapshots/ (written atomically).
fn save_snapshot(run: &RunDir, model: &DitConfig, state: &State) -> Result<()> {
    let path = run.snapshot(state.step);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(dir, "cannot create the snapshot folder", e))?;
    }
    crate::model::checkpoint::save(&path, model, &state.ema)
}

/// The resolved config, the run folder (locked) and, for a resume, its checkpoint. A resume
/// may only change the options in [`RESUMABLE`] and must use the checkpoint of the folder's
/// own run; a new run refuses a folder that holds one.
fn open(
    opts: TrainOptions,
    resume: Option<&Path>,
) -> Result<(TrainConfig, RunDir, Option<Saved>, FolderLock)> {
    let Some(dir) = resume else {
        let config = opts.resolve()?;
        let run = RunDir::new(&config.out);
        super::output_folder::check(run.root(), super::OutputKind::TrainRun)?;
        if config.dataset == super::DatasetKind::Folder {
            super::output_folder::check_outside_data(run.root(), Path::new(&config.data_path))?;
        }
        let lock = FolderLock::acquire(run.root())?;
        if run.has_run() {
            let d = run.root().display();
            return Err(Error::Config(format!(
                "{d} already holds a run; continue it with `--resume {d}` or choose another `--out`"
            )));
        }
        // A folder whose run never wrote a checkpoint holds no weights (a config and a log of
        // a killed start): a new run may start there. One with the exported model is a
        // finished run whose checkpoints were removed.
        if run.model().exists() {
            return Err(Error::Config(format!(
                "{} holds a finished run (model.safetensors) whose checkpoints are gone: a new \
                 run would overwrite it. Choose another `--out` (or remove that folder)",
                run.root().display()
            )));
        }
        return Ok((config, run, None, lock));
    };
    if let Some(out) = opts
        .out
        .as_deref()
        .filter(|o| !same_folder(Path::new(o), dir))
    {
        return Err(Error::Config(format!(
            "--resume {} continues that run in its own folder; --out {out} would be ignored. \
             Drop --out, or copy the folder to {out} and resume the copy",
            dir.display()
        )));
    }
    let run = RunDir::new(dir);
    if !run.root().is_dir() {
        return Err(Error::Config(format!(
            "--resume {}: no such folder; give the --out folder of an earlier `imba train`",
            dir.display()
        )));
    }
    let lock = FolderLock::acquire(run.root())?;
    let saved = run.load()?;
    check_identity(&run, &saved.config)?;
    check_log(&run, &saved.state)?;
    let base = TrainOptions::from_toml(&saved.config.to_toml())?;
    let mut config = opts.or(base).resolve()?;
    config.out = dir.display().to_string();
    let changed = config.run_differences(&saved.config);
    if !changed.is_empty() {
        return Err(Error::Config(format!(
            "a resumed run keeps its config; {changed:?} differ from the checkpoint's \
             (only {RESUMABLE:?} may change). Start a new run with --out instead"
        )));
    }
    Ok((config, run, Some(saved), lock))
}

/// Whether two paths name the same folder (the same text, or the same folder on disk).
fn same_folder(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// Refuses a checkpoint that does not belong to the folder's run: one whose config differs
/// from the folder's config.toml in an option a resume may not change (a checkpoint copied
/// from another run).
fn check_identity(run: &RunDir, saved: &TrainConfig) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(run.config()) else {
        return Ok(());
    };
    let own = TrainConfig::from_toml(&text).map_err(|e| {
        Error::Config(format!(
            "{} is not a valid run config ({e}); restore it, or start a new run",
            run.config().display()
        ))
    })?;
    let differ = own.run_differences(saved);
    if differ.is_empty() {
        return Ok(());
    }
    Err(Error::checkpoint(
        &run.checkpoint(),
        format!(
            "does not belong to the run in {}: its {differ:?} differ from {} (a checkpoint \
             copied from another run?). Put back this run's own checkpoint, or start a new run",
            run.root().display(),
            run.config().display()
        ),
    ))
}

/// Refuses a checkpoint whose run is not the one of the folder's step log: the log's line
/// of the checkpoint's step must hold the loss the checkpoint recorded (a checkpoint copied
/// in from another run, with or without its config, would mix two runs in one log). A log
/// without that step, or a checkpoint of an older version without the loss, is not checked.
fn check_log(run: &RunDir, state: &State) -> Result<()> {
    let Some(loss) = state.last_loss else {
        return Ok(());
    };
    let Some(line) = run.read_log().into_iter().find(|s| s.step == state.step) else {
        return Ok(());
    };
    if line.loss.to_bits() == loss.to_bits() {
        return Ok(());
    }
    Err(Error::checkpoint(
        &run.checkpoint(),
        format!(
            "does not belong to the run whose log is in {}: the log's step {} has loss {}, the \
             checkpoint's run had {loss} (a checkpoint copied from another run?). Put back this \
             run's own checkpoint, or start a new run",
            run.root().display(),
            state.step,
            line.loss
        ),
    ))
}

/// The checkpoint's state, once it is known to belong to these data, this model and a step
/// count that leaves steps to train.
fn check_saved(s: Saved, config: &TrainConfig, data: &Dataset, model: &DitConfig) -> Result<State> {
    if s.fingerprint != data.fingerprint() {
        return Err(Error::Data(format!(
            "the data differ from those the checkpoint was trained on (fingerprint \
             {:016x} vs {:016x}); resume with the same data",
            data.fingerprint(),
            s.fingerprint
        )));
    }
    if s.model != *model {
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
    Ok(s.state)
}

/// The run folder with its config and split.
fn write_header(run: &RunDir, config: &TrainConfig, split: &impl serde::Serialize) -> Result<()> {
    let root = run.root();
    std::fs::create_dir_all(root)
        .map_err(|e| Error::io(root, "cannot create the run folder", e))?;
    crate::error::write_file(&run.config(), config.to_toml())?;
    crate::error::write_json(&run.split(), split)
}

/// A divergence names the checkpoint that survives it.
fn name_last_checkpoint(e: Error, run: &RunDir) -> Error {
    match e {
        Error::Diverged(m) => {
            let kept = if run.has_run() {
                format!("the last good checkpoint is {}", run.checkpoint().display())
            } else {
                "no checkpoint was written yet".into()
            };
            Error::Diverged(format!("{m}; {kept}"))
        }
        e => e,
    }
}

/// The step log and, for IMBA, the D monitor's log; a resume cuts both back to its step.
struct Logs {
    log_path: PathBuf,
    log: std::fs::File,
    d_path: PathBuf,
    d_log: Option<std::fs::File>,
    t_path: PathBuf,
    t_log: std::fs::File,
}

impl Logs {
    fn open(run: &RunDir, config: &TrainConfig, first_step: u32) -> Result<Self> {
        let open = |path: &Path| -> Result<std::fs::File> {
            if first_step > 0 {
                truncate_log(path, first_step)?;
            } else {
                let _ = std::fs::remove_file(path);
            }
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| Error::io(path, "cannot open the log", e))
        };
        let (log_path, d_path) = (run.log(), run.d_log());
        // The D monitor runs for IMBA only: elsewhere D is 1 or absent.
        let d_log = match config.objective {
            super::Objective::Imba => Some(open(&d_path)?),
            _ => None,
        };
        let t_path = run.t_log();
        Ok(Self {
            log: open(&log_path)?,
            log_path,
            d_path,
            d_log,
            t_log: open(&t_path)?,
            t_path,
        })
    }

    fn append(
        &mut self,
        stats: &StepStats,
        trainer: &Trainer,
        d_tokens: &[Vec<u32>],
    ) -> Result<()> {
        let line = serde_json::to_string(stats).expect("serialisable");
        writeln!(self.log, "{line}")
            .map_err(|e| Error::io(&self.log_path, "cannot append to the log", e))?;
        if let Some(f) = self.d_log.as_mut() {
            let line = monitor::attribute(
                stats.step,
                &trainer.data,
                d_tokens,
                &trainer.last_batch,
                &trainer.last_d,
            );
            writeln!(f, "{}", serde_json::to_string(&line).expect("serialisable"))
                .map_err(|e| Error::io(&self.d_path, "cannot append to the D log", e))?;
        }
        let t = &trainer.last_time;
        let line = time_monitor::line(
            stats.step,
            (t, &trainer.last_batch, &trainer.last_conditional),
            &trainer.last_mse,
            &trainer.last_d,
        );
        writeln!(
            self.t_log,
            "{}",
            serde_json::to_string(&line).expect("serialisable")
        )
        .map_err(|e| Error::io(&self.t_path, "cannot append to the timestep log", e))?;
        Ok(())
    }
}

/// A progress bar on a terminal, a line every 5% elsewhere; and the loop's wall time.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    start: std::time::Instant,
    every_line: u32,
}

impl Progress {
    fn new(show: bool, steps: u32, first_step: u32) -> Self {
        let bar = show.then(|| {
            let b = indicatif::ProgressBar::new(steps as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} {wide_bar} {pos}/{len} {msg} ETA {eta}",
                )
                .expect("valid template"),
            );
            b.set_position(first_step as u64);
            b
        });
        Self {
            bar,
            start: std::time::Instant::now(),
            every_line: (steps / 20).max(1),
        }
    }

    fn show(&self, stats: &StepStats, steps: u32, first_step: u32) {
        let Some(b) = &self.bar else { return };
        let rate = (stats.step - first_step) as f64 / self.start.elapsed().as_secs_f64();
        b.set_position(stats.step as u64);
        b.set_message(format!(
            "loss {:.4} D {:.3} {rate:.2} steps/s",
            stats.loss, stats.mean_d
        ));
        if b.is_hidden() && stats.step.is_multiple_of(self.every_line) {
            eprintln!(
                "step {}/{steps} loss {:.4} mean D {:.3} grad norm {:.3} {rate:.2} steps/s",
                stats.step, stats.loss, stats.mean_d, stats.grad_norm
            );
        }
    }

    /// Seconds since the loop started.
    fn finish(&self) -> f64 {
        if let Some(b) = &self.bar {
            b.finish();
        }
        self.start.elapsed().as_secs_f64()
    }
}

/// The end of a run: the last checkpoint (unless the loop just wrote it), the exported model,
/// the loss curve, the D summary and the samples, from one read-back of the final state.
fn finish(
    gpu: &Gpu,
    run: &RunDir,
    trainer: &Trainer,
    model: &DitConfig,
    trained: bool,
    monitored: bool,
) -> Result<(Vec<PathBuf>, Option<EndSamples>)> {
    let config = &trainer.config;
    let st = trainer.state()?;
    let just_saved =
        config.checkpoint_every > 0 && trainer.step.is_multiple_of(config.checkpoint_every);
    if trained && !just_saved {
        save_checkpoint(run, trainer, &st)?;
        if config.snapshots {
            save_snapshot(run, model, &st)?;
        }
    }
    let mut written = vec![run.checkpoint(), run.log(), run.model(), run.loss_plot()];
    crate::model::checkpoint::save(&run.model(), model, &st.ema)?;
    let log_all = run.read_log();
    crate::report::plot::loss_curve(
        &run.loss_plot(),
        &format!(
            "{} on {} ({})",
            config.objective.name(),
            trainer.data.name,
            run.root().display()
        ),
        &log_all.iter().map(|s| s.step).collect::<Vec<_>>(),
        &[
            ("loss", log_all.iter().map(|s| s.loss).collect()),
            (
                "unweighted conditional MSE",
                log_all
                    .iter()
                    .map(|s| s.mse_c.unwrap_or(f32::NAN))
                    .collect(),
            ),
        ],
    )?;
    if trained {
        time_monitor::finish(run, config.steps, &trainer.data)?;
        written.extend([run.t_summary(), run.mse_t_plot()]);
        if monitored {
            written.push(run.d_t_plot());
        }
    }
    if monitored {
        let data = &trainer.data;
        monitor::finish(run, config.steps, &data.label_names, &data.label_counts())?;
        written.extend([run.d_summary(), run.d_plot()]);
    }
    let mut samples = None;
    if config.sample_count > 0 {
        let (files, s) = end_samples(gpu, run, trainer, model, &st.ema)?;
        written.extend(files);
        samples = Some(s);
    }
    Ok((written, samples))
}

/// Samples of every label (or of the data's concept lists) from the final EMA weights.
fn end_samples(
    gpu: &Gpu,
    run: &RunDir,
    trainer: &Trainer,
    model: &DitConfig,
    ema: &[f32],
) -> Result<(Vec<PathBuf>, EndSamples)> {
    let config = &trainer.config;
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
    let spec = SampleSpec {
        model,
        params: ema,
        process: config.process,
        sampler,
        guidance: config.guidance,
        seed: config.seed,
        batch: 64,
        delta: None,
    };
    let images = generate(gpu, &spec, &labels)?;
    let centres = if config.dataset == DatasetKind::Toy2d {
        crate::data::toy2d_means(config.classes, crate::data::Toy2dSpec::default().radius)
    } else {
        Vec::new()
    };
    let names = &trainer.data.label_names;
    let written = save_samples(
        &run.samples(),
        model,
        &images,
        &labels,
        names,
        cols,
        &centres,
    )?;
    let data = &trainer.data;
    if data.slots == 1 && crate::report::images::drawable(model.channels) {
        // One row per label, named with its training images, so the grid shows the tail.
        let counts = data.label_counts();
        let rows: Vec<String> = (0..data.num_labels() as usize)
            .map(|l| format!("{} ({} images)", names[l], counts[l]))
            .collect();
        let scale = (64 / model.height.max(model.width)).clamp(1, 8);
        let (c, h, w) = (model.channels, model.height, model.width);
        let grid = crate::report::images::grid(&images, c, h, w, cols, scale);
        crate::report::plot::labelled_grid(&run.samples().join("grid.png"), &grid, &rows)?;
    }
    let samples = EndSamples {
        labels,
        images,
        data: trainer.data.clone(),
    };
    Ok((written, samples))
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
