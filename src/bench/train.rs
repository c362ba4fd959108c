//! `imba bench train`: steps/s of whole training steps (data, noise, forward, loss, backward,
//! clip, AdamW, EMA, the loss read back) for each objective on one config.

use crate::gpu::Gpu;
use crate::train::{setup, Objective, TrainOptions, Trainer};
use crate::Result;

/// One objective's timing.
pub struct TrainRow {
    pub objective: Objective,
    /// Images per step.
    pub batch: u32,
    /// Forward rows per step (2·batch for the dual objectives).
    pub rows: u32,
    pub median_ms: f64,
    pub min_ms: f64,
}

/// Times `reps` steps per objective after `warmup` steps; the data and model come from `opts`.
pub fn train_steps(
    gpu: &Gpu,
    opts: &TrainOptions,
    objectives: &[Objective],
    warmup: usize,
    reps: usize,
) -> Result<(String, Vec<TrainRow>)> {
    let mut rows = Vec::new();
    let mut header = String::new();
    for &objective in objectives {
        let mut o = opts.clone();
        o.objective = Some(objective);
        let config = o.resolve()?;
        let (data, _) = setup::load_data(&config)?;
        let model = setup::model_config(&config, &data)?;
        header = format!(
            "{} ({} images {}×{}×{}), model depth {}, D {}, {} heads, patch {} ({} tokens), batch {}",
            data.name,
            data.len(),
            data.channels,
            data.height,
            data.width,
            model.depth,
            model.dim,
            model.heads,
            model.patch,
            model.tokens(),
            config.batch
        );
        let mut t = Trainer::new(gpu, config.clone(), model, data, None)?;
        for _ in 0..warmup {
            t.step()?;
        }
        let mut ms: Vec<f64> = (0..reps.max(1))
            .map(|_| t.step().map(|s| s.ms))
            .collect::<Result<_>>()?;
        ms.sort_by(f64::total_cmp);
        rows.push(TrainRow {
            objective,
            batch: config.batch,
            rows: config.batch * objective.repeats(),
            median_ms: ms[ms.len() / 2],
            min_ms: ms[0],
        });
    }
    Ok((header, rows))
}

/// The timings as a Markdown table.
pub fn markdown(header: &str, rows: &[TrainRow]) -> String {
    let mut s = format!(
        "{header}\n\n| objective | forward rows per step | ms/step (median) | ms/step (min) | steps/s | images/s |\n|---|---|---|---|---|---|\n"
    );
    for r in rows {
        s += &format!(
            "| {} | {} | {:.1} | {:.1} | {:.2} | {:.1} |\n",
            r.objective.name(),
            r.rows,
            r.median_ms,
            r.min_ms,
            1000.0 / r.median_ms,
            r.batch as f64 * 1000.0 / r.median_ms
        );
    }
    s
}
