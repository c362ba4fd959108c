//! Making a trainer: what is checked before anything is allocated (the data against the
//! model, the device's limits and memory, what a data-parallel job can split), the fresh or
//! restored state, and the configured objective.

use super::{State, TrainConfig};
use crate::data::Dataset;
use crate::gpu::Gpu;
use crate::kernels::LossKernels;
use crate::model::{DitConfig, OptimizerState, ParamLayout};
use crate::objectives;
use crate::parallel::Shard;
use crate::{Error, Result};

/// Refuses a config, model and data that cannot train together on `gpu`, naming the problem:
/// a batch larger than the data, a model whose images or labels are not the data's, a model
/// over the device's storage binding or (CPU adapters) the host's memory, a data-parallel
/// split the objective cannot take.
pub(super) fn check_setup(
    gpu: &Gpu,
    config: &TrainConfig,
    model: &DitConfig,
    data: &Dataset,
    shard: Shard,
) -> Result<()> {
    if shard.ranks > 1 {
        check_parallel(config, model, shard)?;
    }
    if (config.batch as usize) > data.len() {
        return Err(Error::Config(format!(
            "`batch` {} is larger than the data set ({} images after the split); lower \
             the batch or raise `head_count`",
            config.batch,
            data.len()
        )));
    }
    if data.channels != model.channels
        || data.height != model.height
        || data.width != model.width
        || data.slots != model.label_slots
        || data.num_labels() != model.num_labels
    {
        return Err(Error::Config(
            "the model's image shape or labels do not match the data set".into(),
        ));
    }
    let total = ParamLayout::new(model).total;
    let limit = gpu.device.limits().max_storage_buffer_binding_size;
    if total as u64 * 4 > limit {
        return Err(Error::Limit(format!(
            "the model has {total} parameters ({} bytes), over this device's {limit}-byte \
             storage binding; use a smaller model",
            total * 4
        )));
    }
    check_memory(gpu, model, config, shard.len)
}

/// The state a run starts from: `state` (a checkpoint's, checked against the model) or a
/// fresh one (the DiT initialisation of `seed`, zero moments, the EMA at the weights).
pub(super) fn start_state(layout: &ParamLayout, seed: u32, state: Option<State>) -> Result<State> {
    let state = match state {
        Some(s) => s,
        None => {
            let params = layout.init(seed as u64);
            State {
                step: 0,
                ema: params.clone(),
                m: vec![0.0; layout.total],
                v: vec![0.0; layout.total],
                params,
                objective: Vec::new(),
                last_loss: None,
            }
        }
    };
    for (name, v) in [("ema", &state.ema), ("m", &state.m), ("v", &state.v)] {
        if v.len() != layout.total {
            return Err(Error::Shape(format!(
                "optimiser state `{name}` has {} values for a model of {}",
                v.len(),
                layout.total
            )));
        }
    }
    Ok(state)
}

/// Writes a checkpoint's objective state into the objective. A fresh run (step 0) starts
/// from zeros; a resumed one must bring exactly the state the objective carries.
pub(super) fn restore_objective_state(
    gpu: &Gpu,
    objective: &mut dyn objectives::Objective,
    state: &State,
) -> Result<()> {
    if objective.host_state().is_some() {
        if state.step == 0 && state.objective.is_empty() {
            return Ok(());
        }
        return objective.restore_host_state(&state.objective);
    }
    match objective.carried_state() {
        Some((buffer, len)) if state.objective.len() == len => {
            gpu.queue
                .write_buffer(buffer, 0, bytemuck::cast_slice(&state.objective));
            Ok(())
        }
        Some(_) if state.step == 0 && state.objective.is_empty() => Ok(()),
        Some((_, len)) => Err(Error::Shape(format!(
            "the checkpoint holds {} values of objective state but this objective carries {len} \
             (the t-bucket normalisation's running means); resume with the config it was \
             written with",
            state.objective.len()
        ))),
        None if state.objective.is_empty() => Ok(()),
        None => Err(Error::Shape(format!(
            "the checkpoint holds {} values of objective state but this objective carries none",
            state.objective.len()
        ))),
    }
}

/// The configured objective for this model, batch and data.
pub(super) fn build_objective(
    dev: &wgpu::Device,
    loss: &LossKernels,
    config: &TrainConfig,
    b: u32,
    model: &DitConfig,
    data: &Dataset,
) -> Result<Box<dyn objectives::Objective>> {
    let args = objectives::registry::BuildArgs {
        device: dev,
        loss,
        model,
        batch: b,
        settings: &config.objective_settings(),
        labels: data,
    };
    (config.objective.registration().build)(&args)
}

/// Refuses a model and batch whose training state would not fit: on a CPU adapter its memory
/// is the host's, checked before anything is allocated. (wgpu does not tell a GPU's memory
/// size; there an allocation that does not fit fails with the device's own error.)
pub(super) fn check_memory(
    gpu: &Gpu,
    model: &DitConfig,
    config: &TrainConfig,
    batch: u32,
) -> Result<()> {
    if gpu.info.device_type != wgpu::DeviceType::Cpu {
        return Ok(());
    }
    let report = crate::model::MemoryReport::new(model, batch, config.objective.repeats());
    crate::bounds::host_memory(
        &format!(
            "training this model at batch {} (parameters, moments, activations; see `imba \
             info --model`)",
            batch
        ),
        report.total_bytes(),
    )
}

/// What a data-parallel job cannot split: losses that couple the samples of a batch beyond a
/// sum (CCUA's contrastive negatives, IMBA's batch-mean D), and shards that would not start on
/// a Philox quad.
pub(super) fn check_parallel(config: &TrainConfig, model: &DitConfig, shard: Shard) -> Result<()> {
    let registration = config.objective.registration();
    if let Some(no) = (registration.unsplittable)(&config.objective_settings()) {
        return Err(Error::Config(format!(
            "{}, which a data-parallel job does not split over ranks; {}",
            no.why, no.fix
        )));
    }
    let geometry = model.geometry(shard.len);
    crate::kernels::shard_quad_base(geometry, shard.first())
        .map(|_| ())
        .map_err(|e| Error::Config(format!("{e} (here: batch/ranks = {})", shard.len)))
}

/// The optimiser's part of a checkpoint's state.
pub(super) fn optimizer_state(s: &State) -> OptimizerState<'_> {
    OptimizerState {
        m: &s.m,
        v: &s.v,
        ema: &s.ema,
    }
}
