//! The end of a run and its checkpoints: the exported model, curves and samples.

use super::*;

/// Writes the run's checkpoint, keeping the one it replaces as the previous checkpoint (a
/// hard link, or a copy where links are not possible), so a latest checkpoint damaged later
/// costs at most `checkpoint_every` steps.
pub(super) fn save_checkpoint(run: &RunDir, trainer: &Trainer, state: &State) -> Result<()> {
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
pub(super) fn save_snapshot(run: &RunDir, trainer: &Trainer, state: &State) -> Result<()> {
    let path = run.snapshot(state.step);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(dir, "cannot create the snapshot folder", e))?;
    }
    trainer.export(&path, state)
}

/// The end of a run: the last checkpoint (unless the loop just wrote it), the exported model,
/// the loss curve, the D summary and the samples, from one read-back of the final state.
pub(super) fn finish(
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
            save_snapshot(run, trainer, &st)?;
        }
    }
    let mut written = vec![run.checkpoint(), run.log(), run.model(), run.loss_plot()];
    trainer.export(&run.model(), &st)?;
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
pub(super) fn end_samples(
    gpu: &Gpu,
    run: &RunDir,
    trainer: &Trainer,
    model: &DitConfig,
    ema: &[f32],
) -> Result<(Vec<PathBuf>, EndSamples)> {
    let config = &trainer.config;
    let (labels, cols) = sample_labels(&trainer.data, config.sample_count);
    let sampler = Sampler::deterministic(config.process, config.sample_steps);
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
