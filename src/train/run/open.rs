//! Opening a run folder: a new run's header files, a resumed run's identity, log and
//! checkpoint checked against what it was started with.

use super::*;

/// Removes a folder that holds nothing but its lock file (made for a run that was refused).
pub(super) fn remove_if_only_lock(dir: &Path) {
    let only_lock = std::fs::read_dir(dir).is_ok_and(|d| {
        d.filter_map(|e| e.ok())
            .all(|e| e.file_name() == crate::train::lock::LOCK_FILE)
    });
    if only_lock {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The resolved config, the run folder (locked) and, for a resume, its checkpoint. A resume
/// may only change the options in [`RESUMABLE`] and must use the checkpoint of the folder's
/// own run; a new run refuses a folder that holds one.
pub(super) fn open(
    opts: TrainOptions,
    resume: Option<&Path>,
) -> Result<(TrainConfig, RunDir, Option<Saved>, FolderLock)> {
    let Some(dir) = resume else {
        let config = opts.resolve()?;
        let run = RunDir::new(&config.out);
        crate::train::output_folder::check(run.root(), crate::train::OutputKind::TrainRun)?;
        if config.dataset == crate::train::DatasetKind::Folder {
            crate::train::output_folder::check_outside_data(
                run.root(),
                Path::new(&config.data_path),
            )?;
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
pub(super) fn same_folder(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// Refuses a checkpoint that does not belong to the folder's run: one whose config differs
/// from the folder's config.toml in an option a resume may not change (a checkpoint copied
/// from another run).
pub(super) fn check_identity(run: &RunDir, saved: &TrainConfig) -> Result<()> {
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
pub(super) fn check_log(run: &RunDir, state: &State) -> Result<()> {
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
pub(super) fn check_saved(
    s: Saved,
    config: &TrainConfig,
    data: &Dataset,
    model: &DitConfig,
) -> Result<State> {
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
pub(super) fn write_header(
    run: &RunDir,
    config: &TrainConfig,
    split: &impl serde::Serialize,
) -> Result<()> {
    let root = run.root();
    std::fs::create_dir_all(root)
        .map_err(|e| Error::io(root, "cannot create the run folder", e))?;
    crate::files::write_file(&run.config(), config.to_toml())?;
    crate::files::write_json(&run.split(), split)
}

/// A divergence names the checkpoint that survives it.
pub(super) fn name_last_checkpoint(e: Error, run: &RunDir) -> Error {
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
