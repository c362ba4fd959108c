//! What one step draws, shared by the trainer and the remedies: the batch, its timesteps and
//! its label rows. Every draw is a Philox function of (seed, step), so a resumed run redraws
//! exactly what it would have drawn.

use crate::diffusion::{Process, FLOW_TIME_SCALE};
use crate::rng::philox4x32_10;

/// One step's inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct StepInputs {
    /// The step, from 1 (Philox's second key word).
    pub step: u32,
    /// The batch: indices into the data set.
    pub indices: Vec<usize>,
    /// The process's time per sample: DDPM integers in 0..T, or flow times in [0, 1).
    pub timesteps: Vec<f32>,
    /// t/T per sample (flow: t): the weight of CBDM's and CCUA's regularisers.
    pub time_fractions: Vec<f32>,
    /// Label rows: repeats·B rows of `label_slots` labels.
    pub labels: Vec<u32>,
    /// CBDM's whole-batch unconditional step: the regulariser is skipped.
    pub unconditional: bool,
}

/// The batch a step's loss is recorded for: this process's inputs and, in a data-parallel
/// job, the exchange that adds up over the ranks what the loss needs from the whole batch
/// (IMBA's time-bucket sums). Objectives whose loss is a mean over samples need nothing from
/// it: their gradients are averaged over the ranks after the backward.
pub struct StepBatch<'a> {
    /// This process's inputs (its shard's, in a data-parallel job).
    pub inputs: &'a StepInputs,
    /// The exchange over the ranks; `None` in one process.
    pub across: Option<&'a mut dyn crate::kernels::ShardSum>,
}

/// Where a step's draws come from: Philox keyed by (seed, step), one stream per kind of draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhiloxStream {
    /// The run's seed (the key's first word).
    pub seed: u32,
    /// The step (the key's second word).
    pub step: u32,
    /// The stream (the counter's second word): timesteps, labels, CBDM's draws, ….
    pub stream: u32,
}

/// One timestep from `key`, counter `counter`: a DDPM integer in 0..steps, or a flow time in
/// [0, 1) with 24 bits.
pub fn draw_timestep(process: Process, steps: u32, key: PhiloxStream, counter: u32) -> f32 {
    let w = philox4x32_10([counter, key.stream, 0, 0], [key.seed, key.step])[0];
    match process {
        Process::Ddpm => ((w as u64 * steps as u64) >> 32) as f32,
        Process::Flow => (w >> 8) as f32 / (1u32 << 24) as f32,
    }
}

/// The timesteps of samples 0..batch ([`draw_timestep`] with counter b).
pub fn draw_timesteps(process: Process, steps: u32, key: PhiloxStream, batch: u32) -> Vec<f32> {
    (0..batch)
        .map(|b| draw_timestep(process, steps, key, b))
        .collect()
}

/// The model's timestep input: DDPM's t, or 1000·t for flow.
pub fn model_timesteps(process: Process, t: &[f32]) -> Vec<f32> {
    match process {
        Process::Ddpm => t.to_vec(),
        Process::Flow => t.iter().map(|v| v * FLOW_TIME_SCALE).collect(),
    }
}

/// t/T per sample (flow: t itself).
pub fn time_fractions(process: Process, steps: u32, t: &[f32]) -> Vec<f32> {
    match process {
        Process::Ddpm => t.iter().map(|&v| v / steps as f32).collect(),
        Process::Flow => t.to_vec(),
    }
}

/// The null label row of a model with `slots` label slots: ∅, then empty slots.
pub fn null_row(null_label: u32, slots: usize) -> Vec<u32> {
    let mut row = vec![null_label];
    row.extend(std::iter::repeat_n(crate::kernels::NO_LABEL, slots - 1));
    row
}

/// A batch's label rows, sample b's replaced by `null_row` where `dropped(b)`.
pub fn labels_or_null<'a>(
    rows: impl Iterator<Item = &'a [u32]>,
    null_row: &[u32],
    dropped: impl Fn(u32) -> bool,
) -> Vec<u32> {
    let mut out = Vec::new();
    for (b, row) in rows.enumerate() {
        out.extend_from_slice(if dropped(b as u32) { null_row } else { row });
    }
    out
}
