//! What a step draws on the host: the batch, its timesteps and its label rows, each a Philox
//! function of (seed, step), so a resumed run redraws exactly what it would have drawn; and
//! this process's shard of them in a data-parallel job.

use super::TrainConfig;
use crate::data::{Dataset, EpochOrder};
use crate::diffusion::Process;
use crate::model::DitConfig;
use crate::objectives::{self, Objective, StepInputs};
use crate::parallel::Shard;

/// Philox stream of the per-sample timesteps (0 is the noise, 1 the label dropout).
const STREAM_TIMESTEP: u32 = 2;

/// The draws of every step of one run.
pub(super) struct BatchSource {
    /// The epochs' shuffles of the data set.
    order: EpochOrder,
    seed: u32,
    batch: u32,
    process: Process,
    /// DDPM's steps: the range of its integer timesteps.
    ddpm_steps: u32,
    /// The label-dropout threshold (see [`crate::rng::dropped`]).
    dropout_threshold: u32,
    /// ∅ in every label slot of a row.
    null_row: Vec<u32>,
}

impl BatchSource {
    pub(super) fn new(
        config: &TrainConfig,
        model: &DitConfig,
        data: &Dataset,
        ddpm_steps: u32,
    ) -> Self {
        Self {
            order: EpochOrder::new(data.len(), config.seed, 0x8000_0000),
            seed: config.seed,
            batch: config.batch,
            process: config.process,
            ddpm_steps,
            dropout_threshold: crate::kernels::noise::dropout_threshold(config.label_dropout),
            null_row: objectives::null_row(model.null_label(), model.label_slots as usize),
        }
    }

    /// The images of step `s`'s batch: positions s·B .. s·B+B of an endless sequence of
    /// epochs, each a Philox shuffle of the data set keyed by (seed, epoch).
    pub(super) fn indices(&mut self, s: u32) -> Vec<usize> {
        self.order.batch(s, self.batch)
    }

    /// Step `s`'s timesteps: DDPM integers in 0..T, or flow times in [0, 1).
    pub(super) fn timesteps(&self, s: u32) -> Vec<f32> {
        let key = objectives::PhiloxStream {
            seed: self.seed,
            step: s,
            stream: STREAM_TIMESTEP,
        };
        objectives::draw_timesteps(self.process, self.ddpm_steps, key, self.batch)
    }

    /// The label rows of step `s` for the batch `idx`: B rows, then the objective's second
    /// half. A first-half row is ∅ on a whole-batch unconditional step, or where the objective
    /// drops labels and the sample's Philox draw (stream 1, counter b) drops it.
    pub(super) fn label_rows(
        &self,
        s: u32,
        idx: &[usize],
        data: &Dataset,
        objective: &dyn Objective,
        unconditional: bool,
    ) -> Vec<u32> {
        let (seed, threshold) = (self.seed, self.dropout_threshold);
        let drops = objective.drops_labels();
        let dropped = |b| unconditional || (drops && crate::rng::dropped(seed, s, b, threshold));
        let batch = idx.iter().map(|&i| data.labels_of(i));
        let mut rows = objectives::labels_or_null(batch, &self.null_row, dropped);
        rows.extend(objective.second_half(s, idx.len() as u32, &self.null_row));
        rows
    }

    /// Step `s`'s inputs: the batch, its timesteps and label rows.
    pub(super) fn inputs(
        &mut self,
        s: u32,
        data: &Dataset,
        objective: &dyn Objective,
    ) -> StepInputs {
        let indices = self.indices(s);
        let timesteps = self.timesteps(s);
        // Drawn once: it sets the label rows and whether the regulariser runs.
        let unconditional = objective.whole_batch_unconditional(s);
        StepInputs {
            step: s,
            labels: self.label_rows(s, &indices, data, objective, unconditional),
            time_fractions: objectives::time_fractions(self.process, self.ddpm_steps, &timesteps),
            indices,
            timesteps,
            unconditional,
        }
    }
}

/// This rank's part of a step's inputs (`slots` labels per row): its samples, their
/// timesteps and label rows.
pub(super) fn shard_of(inputs: &StepInputs, shard: &Shard, slots: usize) -> StepInputs {
    let range = shard.range();
    let batch = inputs.indices.len();
    let rows = |half: usize| {
        let first = (half * batch + range.start) * slots;
        &inputs.labels[first..first + range.len() * slots]
    };
    let halves = inputs.labels.len() / (batch * slots);
    StepInputs {
        step: inputs.step,
        indices: inputs.indices[range.clone()].to_vec(),
        timesteps: inputs.timesteps[range.clone()].to_vec(),
        time_fractions: inputs.time_fractions[range.clone()].to_vec(),
        labels: (0..halves).flat_map(|h| rows(h).to_vec()).collect(),
        unconditional: inputs.unconditional,
    }
}
