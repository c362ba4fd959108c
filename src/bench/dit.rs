//! `imba bench dit`: wall-clock time of the DiT's forward and of a whole IMBA training step
//! (dual forward, fused loss, backward, gradient norm, AdamW, EMA) for one config and batch.

use crate::gpu::Gpu;
use crate::kernels::optim::AdamW;
use crate::kernels::{AdamWArgs, EmaArgs, GradNormArgs};
use crate::kernels::{ImbaParams, LossKernels, OptimKernels, Region, Target};
use crate::model::{Activations, Dit, DitConfig, ParamLayout};
use crate::objectives::DualLoss;
use crate::Result;
use std::time::Instant;

/// Median times of one config.
pub struct DitStepReport {
    pub config: DitConfig,
    pub batch: u32,
    pub forward_ms: f64,
    pub step_ms: f64,
}

impl DitStepReport {
    pub fn markdown(&self) -> String {
        let c = &self.config;
        format!(
            "| model | images | batch (dual rows) | dual forward, ms | training step, ms | samples/s |\n\
             |---|---|---|---|---|---|\n\
             | depth {}, D {}, {} heads, p {} | {}×{}×{} | {} ({}) | {:.1} | {:.1} | {:.1} |",
            c.depth,
            c.dim,
            c.heads,
            c.patch,
            c.height,
            c.width,
            c.channels,
            self.batch,
            2 * self.batch,
            self.forward_ms,
            self.step_ms,
            self.batch as f64 / (self.step_ms / 1000.0)
        )
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Times `reps` forwards and `reps` whole steps after `warmup` steps.
pub fn dit_step(
    gpu: &Gpu,
    cfg: &DitConfig,
    batch: u32,
    warmup: usize,
    reps: usize,
) -> Result<DitStepReport> {
    let dev = &gpu.device;
    let layout = ParamLayout::new(cfg);
    let dit = Dit::new(dev, cfg.clone(), &layout.init_all_nonzero(1))?;
    let acts = Activations::new(dev, cfg, batch, 2)?;
    let mut labels: Vec<u32> = (0..batch * cfg.label_slots)
        .map(|i| i % cfg.num_labels.max(1))
        .collect();
    labels.extend((0..batch * cfg.label_slots).map(|i| {
        if i % cfg.label_slots == 0 {
            cfg.null_label()
        } else {
            crate::kernels::NO_LABEL
        }
    }));
    let t: Vec<f32> = (0..batch).map(|i| (i * 37 % 1000) as f32).collect();
    acts.set_conditions(&gpu.queue, cfg, &t, &labels)?;
    let e = (batch * cfg.tokens() * cfg.token_dim()) as usize;
    let patches: Vec<f32> = (0..e)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    let target: Vec<f32> = (0..e)
        .map(|i| ((i * 104_729 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    let (pb, tb) = (
        gpu.upload("patches", &patches),
        gpu.upload("target", &target),
    );
    let loss = LossKernels::new(dev)?;
    let dual = DualLoss::new(dev, &loss, cfg, batch)?;
    let optim = OptimKernels::new(dev)?;
    let n = layout.total as u64;
    let (m, v, ema) = (
        gpu.zeros("m", 4 * n),
        gpu.zeros("v", 4 * n),
        gpu.zeros("ema", 4 * n),
    );
    let norm = gpu.zeros("norm", 16);
    let h = AdamW {
        lr: 1e-4,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    let forward = || -> Result<f64> {
        let start = Instant::now();
        let mut enc = gpu.encoder();
        dit.record_forward(dev, &mut enc, &acts, &pb, None)?;
        gpu.submit_and_wait(enc)?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    };
    let mut step_no = 0;
    let mut step = || -> Result<f64> {
        step_no += 1;
        let start = Instant::now();
        let mut enc = gpu.encoder();
        dit.record_forward(dev, &mut enc, &acts, &pb, None)?;
        dual.record(
            dev,
            &mut enc,
            &loss,
            &acts,
            Target::Explicit(&tb),
            &ImbaParams::default(),
        )?;
        dit.record_backward(dev, &mut enc, &acts, &pb, &dual.dout, None)?;
        optim.record_grad_norm(
            dev,
            &mut enc,
            &GradNormArgs {
                n: n as u32,
                grads: (&dit.grads).into(),
                max_norm: 1.0,
                norm: (&norm).into(),
            },
        )?;
        optim.record_adamw(
            dev,
            &mut enc,
            &AdamWArgs {
                n: n as u32,
                h,
                step: step_no,
                params: (&dit.params).into(),
                grads: (&dit.grads).into(),
                m: (&m).into(),
                v: (&v).into(),
                norm: Some(Region::from(&norm)),
            },
        )?;
        optim.record_ema(
            dev,
            &mut enc,
            &EmaArgs {
                n: n as u32,
                decay: 0.9999,
                params: (&dit.params).into(),
                ema: (&ema).into(),
            },
        )?;
        gpu.submit_and_wait(enc)?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    };
    for _ in 0..warmup {
        step()?;
    }
    let steps = (0..reps.max(1))
        .map(|_| step())
        .collect::<Result<Vec<_>>>()?;
    let forwards = (0..reps.max(1))
        .map(|_| forward())
        .collect::<Result<Vec<_>>>()?;
    Ok(DitStepReport {
        config: cfg.clone(),
        batch,
        forward_ms: median(forwards),
        step_ms: median(steps),
    })
}
