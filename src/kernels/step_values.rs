//! The values that change from one training step to the next — the Philox step of the noise
//! and of the loss's regenerated target, AdamW's learning rate and bias corrections, the
//! EMA's decay — in a uniform of their own (`shaders/lib/step_values.wgsl`). A trainer writes
//! them once per step into one buffer ([`StepValues::buffer`], [`StepValues::write`]) and
//! passes it as the launches' `step_values`: their parameters and bind groups then repeat
//! from step to step and a steady step creates no GPU objects. A launch given no buffer gets
//! one made from its own arguments (and cached by its bytes), as before.

use super::optim::AdamW;

/// One step's values, as the shaders' `StepValues`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepValues {
    /// Philox's second key word: the step the noise and the regenerated target are drawn for.
    pub step: u32,
    /// AdamW's learning rate.
    pub lr: f32,
    /// AdamW's 1 − β1^t.
    pub bias_correction1: f32,
    /// AdamW's 1 − β2^t.
    pub bias_correction2: f32,
    /// The EMA's decay.
    pub ema_decay: f32,
    pub(crate) _pad: [u32; 3],
}

impl StepValues {
    /// The values of a step whose Philox step is `step` (the other fields zero).
    pub fn philox(step: u32) -> Self {
        Self {
            step,
            ..Self::default()
        }
    }

    /// These values with AdamW's learning rate and bias corrections for AdamW step `step`
    /// (from 1), computed exactly as [`OptimKernels::record_adamw`](super::OptimKernels::record_adamw)
    /// computes them from its arguments.
    pub fn with_adamw(self, h: &AdamW, step: u32) -> Self {
        Self {
            lr: h.lr as f32,
            bias_correction1: (1.0 - h.beta1.powi(step as i32)) as f32,
            bias_correction2: (1.0 - h.beta2.powi(step as i32)) as f32,
            ..self
        }
    }

    /// These values with the EMA's decay.
    pub fn with_ema_decay(self, decay: f32) -> Self {
        Self {
            ema_decay: decay,
            ..self
        }
    }

    /// A buffer for one step's values: a uniform the launches bind, written with
    /// [`Self::write`] (COPY_SRC lets a captured case read it, see [`crate::capture`]).
    pub fn buffer(device: &wgpu::Device) -> wgpu::Buffer {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step_values"),
            size: std::mem::size_of::<Self>() as u64,
            usage: wgpu::BufferUsages::UNIFORM
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    }

    /// Writes these values into `buffer` (made by [`Self::buffer`]). The write takes effect
    /// at the next submit, before its commands: record and submit one step's launches before
    /// writing the next step's values.
    pub fn write(&self, queue: &wgpu::Queue, buffer: &wgpu::Buffer) {
        queue.write_buffer(buffer, 0, bytemuck::bytes_of(self));
    }
}

/// Where a launch's per-step values come from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PerStep<'a> {
    /// The caller's buffer, written for this step.
    Buffer(&'a wgpu::Buffer),
    /// A buffer made from these values (cached by their bytes).
    Values(StepValues),
}

impl<'a> PerStep<'a> {
    /// The caller's buffer where given, else `values`.
    pub(crate) fn or_values(buffer: Option<&'a wgpu::Buffer>, values: StepValues) -> Self {
        match buffer {
            Some(b) => PerStep::Buffer(b),
            None => PerStep::Values(values),
        }
    }
}
