//! Launcher of `shaders/optim.wgsl`: global gradient norm (with the clip factor), AdamW and
//! EMA over flat parameter buffers.

use super::common::{self, Family, Operand, Region};
use super::step_values::{PerStep, StepValues};
use crate::{Error, Result};

/// AdamW hyper-parameters.
#[derive(Clone, Copy, Debug)]
pub struct AdamW {
    /// Learning rate of this step (warm-up and schedule applied by the caller).
    pub lr: f64,
    /// β₁: decay of the first moment.
    pub beta1: f64,
    /// β₂: decay of the second moment.
    pub beta2: f64,
    /// ε added to the second moment's root.
    pub eps: f64,
    /// Decoupled weight decay (multiplied by `lr`).
    pub weight_decay: f64,
}

/// Most workgroups of the first gradient-norm pass (the second pass sums their partials).
const MAX_PARTIALS: u32 = 1024;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
pub(crate) struct OptimParams {
    pub(crate) n: u32,
    pub(crate) chunk: u32,
    pub(crate) partials: u32,
    pub(crate) groups_x: u32,
    pub(crate) beta1: f32,
    pub(crate) beta2: f32,
    pub(crate) eps: f32,
    pub(crate) weight_decay: f32,
    pub(crate) max_norm: f32,
    pub(crate) use_clip: u32,
    pub(crate) pad: [u32; 6],
}

const ENTRIES: [&str; 4] = ["sumsq_partials", "grad_norm", "adamw", "ema"];

/// Compiled optimizer pipelines for one device, with the scratch of the norm's partials.
pub struct OptimKernels {
    family: Family,
    partials: wgpu::Buffer,
}

/// One AdamW step over a flat buffer, the gradient scaled by the clip factor in `norm`.
#[derive(Clone, Copy)]
pub struct AdamWArgs<'a> {
    /// Values in the flat buffers.
    pub n: u32,
    /// The hyper-parameters.
    pub h: AdamW,
    /// The step count from 1 (for the bias corrections).
    pub step: u32,
    /// Input and output: the parameters, updated in place.
    pub params: Region<'a>,
    /// Input: the gradients.
    pub grads: Region<'a>,
    /// Input and output: the first moments.
    pub m: Region<'a>,
    /// Input and output: the second moments.
    pub v: Region<'a>,
    /// Input: the clip factor written by the gradient-norm launch, or none (no clipping).
    pub norm: Option<Region<'a>>,
    /// A uniform holding this step's [`StepValues`] with the learning rate and bias
    /// corrections of `h` and `step` ([`StepValues::with_adamw`]), written once per step by a
    /// trainer, or `None` (the launch then makes one from `h` and `step`).
    pub step_values: Option<&'a wgpu::Buffer>,
}

/// The global gradient norm and PyTorch's clip factor, kept on the GPU.
#[derive(Clone, Copy)]
pub struct GradNormArgs<'a> {
    /// Values in the flat gradient buffer.
    pub n: u32,
    /// Input: the gradients.
    pub grads: Region<'a>,
    /// The clipping threshold (0: no clipping; the norm is still computed).
    pub max_norm: f32,
    /// Output: [Σ g², ‖g‖, clip factor min(1, max_norm/‖g‖)] (3 f32).
    pub norm: Region<'a>,
}

/// ema = decay·ema + (1 − decay)·params.
#[derive(Clone, Copy)]
pub struct EmaArgs<'a> {
    /// Values in the flat buffers.
    pub n: u32,
    /// The decay (0.9999 in DiT).
    pub decay: f32,
    /// Input: the parameters.
    pub params: Region<'a>,
    /// Input and output: the running average, updated in place.
    pub ema: Region<'a>,
    /// A uniform holding this step's [`StepValues`] with `decay` as its `ema_decay`, written
    /// once per step by a trainer, or `None` (the launch then makes one from `decay`).
    pub step_values: Option<&'a wgpu::Buffer>,
}

impl OptimKernels {
    /// The optimiser pipelines for `device`.
    pub fn new(device: &wgpu::Device) -> Result<Self> {
        let partials = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("grad-norm-partials"),
            size: MAX_PARTIALS as u64 * 4,
            // COPY_SRC: a captured case reads it (see crate::capture).
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        Ok(Self {
            family: Family::new(device, "optim", &ENTRIES)?,
            partials,
        })
    }

    /// Writes [Σ g², ‖g‖, clip] to `norm` (3 f32) for the `n` gradients, clip =
    /// min(1, max_norm/(‖g‖ + 1e-6)) as PyTorch's `clip_grad_norm_` (1 when max_norm is 0).
    /// Deterministic: fixed chunks, fixed order.
    pub fn record_grad_norm<'a>(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &GradNormArgs<'a>,
    ) -> Result<()> {
        let GradNormArgs {
            n,
            grads,
            max_norm,
            norm,
        } = *args;
        if n == 0 {
            return Err(Error::Shape("gradient norm of 0 values".into()));
        }
        if !(max_norm >= 0.0 && max_norm.is_finite()) {
            return Err(Error::Param(format!(
                "max_norm must be finite and ≥ 0 (0 turns clipping off), got {max_norm}"
            )));
        }
        let chunk = n.div_ceil(MAX_PARTIALS).max(64);
        let partials = n.div_ceil(chunk);
        let p = OptimParams {
            n,
            chunk,
            partials,
            max_norm,
            ..Default::default()
        };
        let first = self.bind(
            device,
            p,
            partials as u64,
            &[
                Operand::buffer("input", grads, n as u64 * 4).called("grads"),
                Operand::buffer("out", &self.partials, partials as u64 * 4).called("partials"),
            ],
        )?;
        let second = self.bind(
            device,
            p,
            1,
            &[
                Operand::buffer("input", &self.partials, partials as u64 * 4).called("partials"),
                Operand::buffer("out", norm, 12).called("norm"),
            ],
        )?;
        let dispatches = [
            ("sumsq_partials", &first.0, first.1),
            ("grad_norm", &second.0, (1, 1)),
        ];
        self.family.record(encoder, &dispatches);
        Ok(())
    }

    /// One AdamW step (`step` counts from 1) over `n` parameters with moments `m`, `v`;
    /// gradients are multiplied by the clip factor in `norm` (from [`Self::record_grad_norm`])
    /// when given.
    pub fn record_adamw<'a>(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &AdamWArgs<'a>,
    ) -> Result<()> {
        let AdamWArgs {
            n,
            h,
            step,
            params,
            grads,
            m,
            v,
            norm,
            step_values,
        } = *args;
        if n == 0 {
            return Err(Error::Shape("AdamW over 0 parameters".into()));
        }
        if step == 0 {
            return Err(Error::Param("AdamW steps count from 1".into()));
        }
        let ok = |v: f64| v.is_finite();
        let valid = ok(h.lr)
            && h.lr >= 0.0
            && (0.0..1.0).contains(&h.beta1)
            && (0.0..1.0).contains(&h.beta2)
            && ok(h.eps)
            && h.eps > 0.0
            && ok(h.weight_decay)
            && h.weight_decay >= 0.0;
        if !valid {
            return Err(Error::Param(format!(
                "AdamW needs lr ≥ 0, 0 ≤ β < 1, eps > 0, weight decay ≥ 0; got {h:?}"
            )));
        }
        let p = OptimParams {
            n,
            beta1: h.beta1 as f32,
            beta2: h.beta2 as f32,
            eps: h.eps as f32,
            weight_decay: h.weight_decay as f32,
            use_clip: norm.is_some() as u32,
            ..Default::default()
        };
        let values = StepValues::default().with_adamw(&h, step);
        let bytes = n as u64 * 4;
        let bg = self.bind(
            device,
            p,
            (n as u64).div_ceil(64),
            &[
                Operand::buffer("input", grads, bytes).called("grads"),
                Operand::maybe("norm_in", norm.map(|r| (r, 12))).called("norm"),
                Operand::buffer("out", params, bytes).called("params"),
                Operand::buffer("m1", m, bytes).called("m"),
                Operand::buffer("m2", v, bytes).called("v"),
                Operand::step("S", PerStep::or_values(step_values, values)),
            ],
        )?;
        self.family.record(encoder, &[("adamw", &bg.0, bg.1)]);
        Ok(())
    }

    /// ema = decay·ema + (1 − decay)·params over `n` values.
    pub fn record_ema<'a>(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &EmaArgs<'a>,
    ) -> Result<()> {
        let EmaArgs {
            n,
            decay,
            params,
            ema,
            step_values,
        } = *args;
        if n == 0 {
            return Err(Error::Shape("EMA over 0 parameters".into()));
        }
        if !(0.0..=1.0).contains(&decay) {
            return Err(Error::Param(format!(
                "EMA decay must be in [0, 1], got {decay}"
            )));
        }
        let p = OptimParams {
            n,
            ..Default::default()
        };
        let values = StepValues::default().with_ema_decay(decay);
        let bytes = n as u64 * 4;
        let bg = self.bind(
            device,
            p,
            (n as u64).div_ceil(64),
            &[
                Operand::buffer("input", params, bytes).called("params"),
                Operand::buffer("out", ema, bytes).called("ema"),
                Operand::step("S", PerStep::or_values(step_values, values)),
            ],
        )?;
        self.family.record(encoder, &[("ema", &bg.0, bg.1)]);
        Ok(())
    }

    /// The bind group of `operands` and the grid of `groups` workgroups, whose width the
    /// parameters carry.
    fn bind(
        &self,
        device: &wgpu::Device,
        params: OptimParams,
        groups: u64,
        operands: &[Operand],
    ) -> Result<(wgpu::BindGroup, (u32, u32))> {
        let grid = common::grid(device, groups)?;
        let uniform = OptimParams {
            groups_x: grid.0,
            ..params
        };
        Ok((self.family.bind(device, &uniform, operands)?, grid))
    }
}
