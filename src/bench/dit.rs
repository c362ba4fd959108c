//! `imba bench dit`: wall-clock time of the DiT's forward and of a whole IMBA training step
//! (dual forward, fused loss, backward, gradient norm, AdamW, EMA) for one config and batch.

use crate::gpu::Gpu;
use crate::kernels::{ImbaParams, LossKernels, Target};
use crate::model::{Activations, Dit, DitConfig, ParamLayout};
use crate::model::{Optimizer, OptimizerSettings};
use crate::objectives::DualLoss;
use crate::Result;
use std::time::Instant;

/// Median times of one config.
pub struct DitStepReport {
    pub config: DitConfig,
    pub batch: u32,
    pub forward_ms: f64,
    pub step_ms: f64,
    /// Compute dispatches one training step records.
    pub dispatches: u64,
}

impl DitStepReport {
    pub fn markdown(&self) -> String {
        let c = &self.config;
        format!(
            "| model | images | batch (dual rows) | dual forward, ms | training step, ms | samples/s | dispatches per step |\n\
             |---|---|---|---|---|---|---|\n\
             | depth {}, D {}, {} heads, p {} | {}×{}×{} | {} ({}) | {:.1} | {:.1} | {:.1} | {} |",
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
            self.batch as f64 / (self.step_ms / 1000.0),
            self.dispatches
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
    let mut bench = StepBench::new(gpu, cfg, batch)?;
    for _ in 0..warmup {
        bench.step_ms()?;
    }
    let before = crate::kernels::dispatches_recorded();
    bench.step_ms()?;
    let dispatches = crate::kernels::dispatches_recorded() - before;
    let steps = (0..reps.max(1))
        .map(|_| bench.step_ms())
        .collect::<Result<Vec<_>>>()?;
    let forwards = (0..reps.max(1))
        .map(|_| bench.forward_ms())
        .collect::<Result<Vec<_>>>()?;
    Ok(DitStepReport {
        config: cfg.clone(),
        batch,
        forward_ms: median(forwards),
        step_ms: median(steps),
        dispatches,
    })
}

/// A model, a batch and an optimiser's state, ready to time forwards and whole IMBA steps
/// (dual forward, fused loss, backward, gradient norm, AdamW, EMA) one at a time.
pub struct StepBench<'g> {
    gpu: &'g Gpu,
    dit: Dit,
    acts: Activations,
    patches: wgpu::Buffer,
    target: wgpu::Buffer,
    loss: LossKernels,
    dual: DualLoss,
    optim: Optimizer,
    step_no: u32,
}

impl<'g> StepBench<'g> {
    /// Non-zero weights, fixed inputs, labels cycling through the vocabulary.
    pub fn new(gpu: &'g Gpu, cfg: &DitConfig, batch: u32) -> Result<Self> {
        let dev = &gpu.device;
        let layout = ParamLayout::new(cfg);
        let dit = Dit::with_paths(dev, cfg.clone(), &layout.init_all_nonzero(1), gpu.paths)?;
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
        let fill = |mul: usize| -> Vec<f32> {
            (0..e)
                .map(|i| ((i * mul % 1000) as f32 / 500.0) - 1.0)
                .collect()
        };
        let loss = LossKernels::new(dev)?;
        let dual = DualLoss::new(dev, &loss, cfg, batch)?;
        let settings = OptimizerSettings {
            beta1: 0.9,
            beta2: 0.999,
            weight_decay: 0.0,
            clip: 1.0,
            ema: 0.9999,
        };
        Ok(Self {
            patches: gpu.upload("patches", &fill(7919)),
            target: gpu.upload("target", &fill(104_729)),
            optim: Optimizer::fresh(gpu, settings, &layout.init_all_nonzero(1))?,
            gpu,
            dit,
            acts,
            loss,
            dual,
            step_no: 0,
        })
    }

    /// Wall milliseconds of one dual forward, submitted and waited for.
    pub fn forward_ms(&self) -> Result<f64> {
        let start = Instant::now();
        let mut enc = self.gpu.encoder();
        self.dit
            .record_forward(&self.gpu.device, &mut enc, &self.acts, &self.patches, None)?;
        self.gpu.submit_and_wait(enc)?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    }

    /// Wall milliseconds of one whole training step, submitted and waited for.
    pub fn step_ms(&mut self) -> Result<f64> {
        self.step_no += 1;
        let start = Instant::now();
        let mut enc = self.gpu.encoder();
        self.record_model(&mut enc)?;
        self.record_optimiser(&mut enc)?;
        self.gpu.submit_and_wait(enc)?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    }

    fn record_model(&self, enc: &mut wgpu::CommandEncoder) -> Result<()> {
        let dev = &self.gpu.device;
        let (dit, acts, pb) = (&self.dit, &self.acts, &self.patches);
        let pass = crate::model::LossPass {
            tap: None,
            dout: &self.dual.dout,
            inject: None,
        };
        let target = Target::Explicit((&self.target).into());
        let how = crate::objectives::ComputedWeights {
            target,
            params: &ImbaParams::default(),
            time: None,
            across: None,
        };
        dit.record_with_loss(dev, enc, acts, pb, pass, |enc| {
            self.dual.record(dev, enc, &self.loss, acts, how)
        })
    }

    fn record_optimiser(&self, enc: &mut wgpu::CommandEncoder) -> Result<()> {
        let (dev, dit) = (&self.gpu.device, &self.dit);
        let s = self.step_no - 1;
        self.optim.record_step(
            dev,
            enc,
            &dit.params,
            &dit.grads,
            crate::model::StepAt {
                s,
                lr: 1e-4,
                step_values: None,
            },
        )
    }
}
