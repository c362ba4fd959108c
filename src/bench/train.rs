//! `imba bench train`: steps/s of whole training steps (data, noise, forward, loss, backward,
//! clip, AdamW, EMA, the loss read back) for each objective on one config, and what recording
//! one step costs the host alone (the step's launches recorded, not submitted).

use crate::gpu::Gpu;
use crate::objectives::ObjectiveKind;
use crate::train::{setup, TrainOptions, Trainer};
use crate::Result;

/// One objective's timing.
pub struct TrainRow {
    pub objective: ObjectiveKind,
    /// Images per step.
    pub batch: u32,
    /// Forward rows per step (2·batch for the dual objectives).
    pub rows: u32,
    pub median_ms: f64,
    pub min_ms: f64,
    /// Host time to record one step without submitting it (median), ms.
    pub record_ms: f64,
    /// Dispatches one step records.
    pub dispatches: u64,
    /// GPU objects the launches of a steady step create (median over the recorded steps).
    pub objects: u64,
}

/// Times `reps` steps per objective after `warmup` steps; the data and model come from `opts`.
pub fn train_steps(
    gpu: &Gpu,
    opts: &TrainOptions,
    objectives: &[ObjectiveKind],
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
        // Steps the run has not reached: each records what a new step records.
        let ahead = t.step + 1000;
        let mut costs: Vec<_> = (0..reps.max(1) as u32)
            .map(|k| t.record_only(ahead + k))
            .collect::<Result<_>>()?;
        costs.sort_by(|a, b| a.ms.total_cmp(&b.ms));
        let middle = costs[costs.len() / 2];
        let mut objects: Vec<u64> = costs.iter().map(|c| c.objects).collect();
        objects.sort_unstable();
        rows.push(TrainRow {
            objective,
            batch: config.batch,
            rows: config.batch * objective.repeats(),
            median_ms: ms[ms.len() / 2],
            min_ms: ms[0],
            record_ms: middle.ms,
            dispatches: middle.dispatches,
            objects: objects[objects.len() / 2],
        });
    }
    Ok((header, rows))
}

/// The timings as a Markdown table.
pub fn markdown(header: &str, rows: &[TrainRow]) -> String {
    let mut s = format!(
        "{header}\n\n| objective | forward rows per step | ms/step (median) | ms/step (min) | steps/s | images/s | host ms to record a step | dispatches | host µs per dispatch | objects created per step |\n|---|---|---|---|---|---|---|---|---|---|\n"
    );
    for r in rows {
        s += &format!(
            "| {} | {} | {:.1} | {:.1} | {:.2} | {:.1} | {:.2} | {} | {:.1} | {} |\n",
            r.objective.name(),
            r.rows,
            r.median_ms,
            r.min_ms,
            1000.0 / r.median_ms,
            r.batch as f64 * 1000.0 / r.median_ms,
            r.record_ms,
            r.dispatches,
            1000.0 * r.record_ms / r.dispatches.max(1) as f64,
            r.objects
        );
    }
    s
}
