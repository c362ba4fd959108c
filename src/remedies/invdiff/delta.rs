//! The δ-model: its start, its training beside the frozen model with the group loss, and
//! sampling with both mixed.

use super::*;

/// A trained δ-model with its training log.
pub struct Trained {
    pub model: DitConfig,
    pub params: Vec<f32>,
    pub ema: Vec<f32>,
    /// (step, loss) every step.
    pub losses: Vec<f64>,
    pub seconds: f64,
}

/// The frozen (biased) model: its run's config, its shape and its weights.
#[derive(Clone, Copy)]
pub struct Base<'a> {
    pub config: &'a TrainConfig,
    pub model: &'a DitConfig,
    pub params: &'a [f32],
}

/// Trains the δ-model against the frozen base with the group loss.
pub fn train_delta(
    gpu: &Gpu,
    base: &Base,
    data: &Dataset,
    groups: &[f64],
    o: &Options,
) -> Result<Trained> {
    o.validate()?;
    let start = std::time::Instant::now();
    let (g, b) = (o.groups as usize, o.batch as usize);
    if groups.len() != data.len() * g {
        return Err(Error::Shape(format!(
            "{} group weights for {} images of {g} groups",
            groups.len(),
            data.len()
        )));
    }
    if b > data.len() {
        return Err(Error::Config(format!(
            "the batch {b} is larger than the data set ({} images)",
            data.len()
        )));
    }
    let dev = &gpu.device;
    let (dm, params) = delta_start(base.model, base.params, o)?;
    let frozen = Dit::with_paths(dev, base.model.clone(), base.params, gpu.paths)?;
    let delta = Dit::with_paths(dev, dm.clone(), &params, gpu.paths)?;
    let frozen_acts = Activations::new(dev, base.model, b as u32, 1)?;
    let acts = Activations::new(dev, &dm, b as u32, 1)?;
    let image = data.image_len();
    let patches = gpu.zeros("invdiff_patches", (4 * b * image) as u64);
    let dout = gpu.zeros("invdiff_dout", (4 * b * image) as u64);
    // The frozen run's AdamW, clip and EMA settings with the δ learning rate.
    let opt = Optimizer::fresh(gpu, base.config.optimizer_settings(), &params)?;
    let geometry = dm.geometry(b as u32);
    let mut order = EpochOrder::new(data.len(), o.seed, 0x4000_0000);
    let mut losses = Vec::with_capacity(o.steps as usize);
    for s in 0..o.steps {
        let idx = order.batch(s, b as u32);
        let (xt, model_t, target, labels) = draw_batch(base.config, &dm, data, &idx, o.seed, s);
        frozen_acts.set_conditions(&gpu.queue, base.model, &model_t, &labels)?;
        acts.set_conditions(&gpu.queue, &dm, &model_t, &labels)?;
        let tokens_in = tokens::patchify(&xt, &geometry);
        gpu.queue
            .write_buffer(&patches, 0, bytemuck::cast_slice(&tokens_in));
        let mut enc = gpu.encoder();
        frozen.record_forward(dev, &mut enc, &frozen_acts, &patches, None)?;
        delta.record_forward(dev, &mut enc, &acts, &patches, None)?;
        gpu.submit(enc);
        let eb = tokens::unpatchify(&gpu.read(&frozen_acts.out, b * image)?, &geometry);
        let ed = tokens::unpatchify(&gpu.read(&acts.out, b * image)?, &geometry);
        let w: Vec<f64> = idx
            .iter()
            .flat_map(|&i| groups[i * g..(i + 1) * g].iter().copied())
            .collect();
        let (loss, grad) = mixed_group_loss(&eb, &ed, &target, &w, o);
        let grad_tokens = tokens::output_tokens(&grad, &geometry);
        gpu.queue
            .write_buffer(&dout, 0, bytemuck::cast_slice(&grad_tokens));
        let mut enc = gpu.encoder();
        delta.record_backward(dev, &mut enc, &acts, &patches, &dout, None)?;
        let at = crate::model::StepAt {
            s,
            lr: o.lr_at(s),
            step_values: None,
        };
        opt.record_step(dev, &mut enc, &delta.params, &delta.grads, at)?;
        gpu.submit_and_wait(enc)?;
        if !loss.is_finite() {
            return Err(Error::Diverged(format!(
                "InvDiff step {} gave loss {loss}; lower the learning rate",
                s + 1
            )));
        }
        losses.push(loss);
    }
    Ok(Trained {
        params: gpu.read(&delta.params, params.len())?,
        ema: gpu.read(&opt.ema, params.len())?,
        model: dm,
        losses,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// One δ step's batch on the host: x_t, the model's timesteps, the target and the label
/// rows (dropped to ∅ as the frozen run's training did), from Philox (seed, step).
fn draw_batch(
    base_config: &TrainConfig,
    dm: &DitConfig,
    data: &Dataset,
    idx: &[usize],
    seed: u32,
    s: u32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<u32>) {
    let (b, image) = (idx.len(), data.image_len());
    let schedule = DdpmSchedule::default_linear();
    let process = base_config.process;
    let x0: Vec<f32> = idx
        .iter()
        .flat_map(|&i| data.image(i).iter().copied())
        .collect();
    let t: Vec<f32> = (0..b as u32)
        .map(|j| timestep(process, seed, s, j, schedule.steps()))
        .collect();
    let eps = noise_range(seed, s, 0, b * image);
    let (xt, model_t, target) = noised(process, &schedule, &x0, &t, &eps);
    let threshold = crate::kernels::noise::dropout_threshold(base_config.label_dropout);
    let null_row = crate::objectives::null_row(dm.null_label(), dm.label_slots as usize);
    let rows = idx.iter().map(|&i| data.labels_of(i));
    let dropped = |j| crate::rng::dropped(seed, s, j, threshold);
    let labels = crate::objectives::labels_or_null(rows, &null_row, dropped);
    (xt, model_t, target, labels)
}

/// The group loss of the mixed prediction r·ε_δ + (1 − r)·ε and its gradient with respect
/// to ε_δ (images layout): ∂loss/∂l_i · 2(pred − target)/image · r.
fn mixed_group_loss(
    eb: &[f32],
    ed: &[f32],
    target: &[f32],
    w: &[f64],
    o: &Options,
) -> (f64, Vec<f32>) {
    let image = eb.len() / o.batch as usize;
    let r = o.r as f64;
    let diff: Vec<f64> = (0..eb.len())
        .map(|k| r * ed[k] as f64 + (1.0 - r) * eb[k] as f64 - target[k] as f64)
        .collect();
    let l: Vec<f64> = diff
        .chunks(image)
        .map(|c| c.iter().map(|d| d * d).sum::<f64>() / image as f64)
        .collect();
    let (loss, dl) = group_loss(&l, w, o.groups as usize, o.var_weight);
    let grad = diff
        .iter()
        .enumerate()
        .map(|(k, d)| (dl[k / image] * 2.0 * d / image as f64 * r) as f32)
        .collect();
    (loss, grad)
}

/// The δ-model's config and starting weights (output exactly 0 either way).
pub fn delta_start(
    base_model: &DitConfig,
    base_params: &[f32],
    o: &Options,
) -> Result<(DitConfig, Vec<f32>)> {
    match o.delta_init {
        DeltaInit::Copy => {
            let layout = ParamLayout::new(base_model);
            if base_params.len() != layout.total {
                return Err(Error::Shape(format!(
                    "{} base parameters for a model of {}",
                    base_params.len(),
                    layout.total
                )));
            }
            let mut p = base_params.to_vec();
            for t in &layout.tensors {
                if t.name.starts_with("final_layer.linear") {
                    p[t.offset..t.offset + t.len()].fill(0.0);
                }
            }
            Ok((base_model.clone(), p))
        }
        DeltaInit::Scratch { depth } => {
            let mut dm = base_model.clone();
            dm.depth = depth;
            let p = ParamLayout::new(&dm).init(o.seed as u64);
            Ok((dm, p))
        }
    }
}

/// Samples with the base and the δ-model mixed with weight `r` (DDIM η = 0 or Euler, CFG).
pub fn sample_mixed(
    gpu: &Gpu,
    base: &Base,
    delta: &Trained,
    r: f32,
    o: &crate::eval::EvalOptions,
    labels: &[u32],
) -> Result<Vec<f32>> {
    let Base {
        config: base_config,
        model: base_model,
        params: base_params,
    } = *base;
    let sampler = crate::diffusion::Sampler::deterministic(base_config.process, o.steps);
    generate(
        gpu,
        &SampleSpec {
            model: base_model,
            params: base_params,
            process: base_config.process,
            sampler,
            guidance: o.guidance,
            seed: o.seed,
            batch: 128,
            // r = 0 is the frozen model alone: no δ forward.
            delta: (r != 0.0).then_some(Delta {
                model: &delta.model,
                params: if o.ema { &delta.ema } else { &delta.params },
                r,
            }),
        },
        labels,
    )
}
