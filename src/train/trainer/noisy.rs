//! The batch on the device and what noises it: the clean images x0, the timesteps, and the
//! x_t tokens the noise kernel writes (ε is regenerated from Philox, never stored).

use crate::data::Dataset;
use crate::diffusion::{DdpmSchedule, Process};
use crate::gpu::Gpu;
use crate::kernels::{
    ImageGeometry as Geometry, NoiseArgs, NoiseKernels, Schedule, StepValues, Target, TargetKind,
};
use crate::objectives::StepInputs;
use crate::Result;

/// One process's batch buffers and the noise kernels.
pub(super) struct NoisyBatch {
    noise: NoiseKernels,
    /// The clean images (B, C, H, W).
    x0: wgpu::Buffer,
    /// The process's time per sample.
    timesteps: wgpu::Buffer,
    /// x_t as patch tokens: the model's input.
    pub(super) tokens: wgpu::Buffer,
    /// DDPM's (√ᾱ, √(1−ᾱ)) table.
    table: wgpu::Buffer,
    schedule: DdpmSchedule,
    /// The step's [`StepValues`]: the Philox step of the noise and target, AdamW's and the
    /// EMA's values; written once per step, so that the launches' bind groups repeat.
    pub(super) step_values: wgpu::Buffer,
}

/// Where a shard's noise and target come from: the run's seed and process, the step, and
/// the shard's first sample of the whole batch (0 in one process).
pub(super) struct NoiseDraw {
    pub(super) seed: u32,
    pub(super) process: Process,
    pub(super) step: u32,
    pub(super) geometry: Geometry,
    pub(super) first_sample: u32,
}

impl NoisyBatch {
    /// Buffers for `samples` images of `image_len` values and `tokens_len` token values.
    pub(super) fn new(gpu: &Gpu, samples: u32, image_len: usize, tokens_len: u64) -> Result<Self> {
        let schedule = DdpmSchedule::default_linear();
        Ok(Self {
            noise: NoiseKernels::new(&gpu.device)?,
            step_values: StepValues::buffer(&gpu.device),
            x0: gpu.zeros("x0", 4 * samples as u64 * image_len as u64),
            timesteps: gpu.zeros("t_noise", 4 * samples as u64),
            tokens: gpu.zeros("patches", 4 * tokens_len),
            table: gpu.upload("ddpm_table", &schedule.coefficients()),
            schedule,
        })
    }

    /// DDPM's steps: the range of its integer timesteps.
    pub(super) fn ddpm_steps(&self) -> u32 {
        self.schedule.steps()
    }

    /// Writes the batch's images and timesteps.
    pub(super) fn upload(&self, queue: &wgpu::Queue, data: &Dataset, inputs: &StepInputs) {
        let mut x0 = Vec::with_capacity(inputs.indices.len() * data.image_len());
        for &i in &inputs.indices {
            x0.extend_from_slice(data.image(i));
        }
        queue.write_buffer(&self.x0, 0, bytemuck::cast_slice(&x0));
        queue.write_buffer(&self.timesteps, 0, bytemuck::cast_slice(&inputs.timesteps));
    }

    /// Records x_t = a·x0 + s·ε into the tokens and returns the loss's target (ε for DDPM,
    /// the velocity for flow), both continuing the whole batch's Philox stream at the
    /// shard's first sample.
    pub(super) fn record_noise(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        draw: &NoiseDraw,
    ) -> Result<Target<'_>> {
        let (schedule, kind) = match draw.process {
            Process::Ddpm => (
                Schedule::Ddpm {
                    table: (&self.table).into(),
                    steps: self.schedule.steps(),
                },
                TargetKind::Epsilon,
            ),
            Process::Flow => (Schedule::Flow, TargetKind::Velocity),
        };
        let noise = NoiseArgs {
            geometry: draw.geometry,
            seed: draw.seed,
            step: draw.step,
            schedule,
            x0: (&self.x0).into(),
            timesteps: (&self.timesteps).into(),
            out_tokens: (&self.tokens).into(),
            first_sample: draw.first_sample,
            step_values: Some(&self.step_values),
        };
        self.noise.record_noise_to_tokens(device, encoder, &noise)?;
        Ok(Target::Philox {
            seed: draw.seed,
            step: draw.step,
            geometry: draw.geometry,
            first_sample: draw.first_sample,
            kind,
            x0: Some((&self.x0).into()),
            step_values: Some(&self.step_values),
        })
    }
}
