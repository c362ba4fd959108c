//! What a run writes as it goes: the step, D and timestep logs, and the progress bar.

use super::*;
use crate::train::jsonl::truncate_log;

/// The step log and, for IMBA, the D monitor's log; a resume cuts both back to its step.
pub(super) struct Logs {
    log_path: PathBuf,
    log: std::fs::File,
    d_path: PathBuf,
    pub(super) d_log: Option<std::fs::File>,
    t_path: PathBuf,
    t_log: std::fs::File,
}

impl Logs {
    pub(super) fn open(run: &RunDir, config: &TrainConfig, first_step: u32) -> Result<Self> {
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
        // The D monitor's log, for objectives whose D is IMBA's: elsewhere D is 1 or absent.
        let d_log = if config.objective.registration().logs_d {
            Some(open(&d_path)?)
        } else {
            None
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

    pub(super) fn append(
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
                &trainer.last.batch,
                &trainer.last.d,
            );
            writeln!(f, "{}", serde_json::to_string(&line).expect("serialisable"))
                .map_err(|e| Error::io(&self.d_path, "cannot append to the D log", e))?;
        }
        let t = &trainer.last.time;
        let line = time_monitor::line(
            stats.step,
            t,
            &trainer.last.batch,
            &trainer.last.conditional,
            &trainer.last.mse,
            &trainer.last.d,
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
pub(super) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    start: std::time::Instant,
    every_line: u32,
}

impl Progress {
    pub(super) fn new(show: bool, steps: u32, first_step: u32) -> Self {
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

    pub(super) fn show(&self, stats: &StepStats, steps: u32, first_step: u32) {
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
    pub(super) fn finish(&self) -> f64 {
        if let Some(b) = &self.bar {
            b.finish();
        }
        self.start.elapsed().as_secs_f64()
    }
}
