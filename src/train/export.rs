//! The exported model (`model.safetensors` and the snapshots): the EMA weights under the
//! reference DiT's names, and in the metadata what sampling them needs without the run
//! folder: the model's shape (`imba.model`, TOML), the diffusion process (`imba.process`:
//! `ddpm` or `flow`) and the label names (`imba.label_names`, a JSON list), under the same
//! keys and in the same formats as the training checkpoint's metadata, and the step the
//! weights are of and the run's configured steps (`imba.step`, `imba.steps`). PyTorch reads the
//! tensors as before; the metadata is for readers that want the model's settings too.

use crate::diffusion::Process;
use crate::model::DitConfig;
use crate::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

const MODEL: &str = "imba.model";
const PROCESS: &str = "imba.process";
const LABEL_NAMES: &str = "imba.label_names";
const STEP: &str = "imba.step";
const STEPS: &str = "imba.steps";

/// A model exported by a run, read back.
pub struct Exported {
    pub model: DitConfig,
    pub process: Process,
    pub label_names: Vec<String>,
    /// The flat parameters (the run's EMA weights).
    pub weights: Vec<f32>,
    /// The training step the weights are of, and the steps the run was configured for
    /// (None where the file does not say).
    pub step: Option<u32>,
    pub of_steps: Option<u32>,
}

/// What a run's export says about its model besides the weights.
pub struct ExportInfo<'a> {
    pub process: Process,
    pub label_names: &'a [String],
    pub step: u32,
    pub of_steps: u32,
}

/// Writes `weights` of `model` with what `info` says, atomically and sealed.
pub fn save(path: &Path, model: &DitConfig, info: ExportInfo, weights: &[f32]) -> Result<()> {
    let mut meta = metadata(model, info.process, info.label_names);
    meta.insert(STEP.into(), info.step.to_string());
    meta.insert(STEPS.into(), info.of_steps.to_string());
    crate::model::checkpoint::save_with(path, model, weights, meta)
}

/// [`save`] for weights trained elsewhere (`imba import`): the process and the label names,
/// no training step.
pub fn save_imported(
    path: &Path,
    model: &DitConfig,
    process: Process,
    label_names: &[String],
    weights: &[f32],
) -> Result<()> {
    let meta = metadata(model, process, label_names);
    crate::model::checkpoint::save_with(path, model, weights, meta)
}

fn metadata(model: &DitConfig, process: Process, names: &[String]) -> BTreeMap<String, String> {
    let mut meta = describe(model, names);
    meta.insert(PROCESS.into(), process.name().into());
    meta
}

/// Reads an exported model from a file.
pub fn load(path: &Path) -> Result<Exported> {
    let bytes = std::fs::read(path).map_err(|e| {
        Error::checkpoint(
            path,
            format!("cannot read ({e}); give the model.safetensors of an `imba train` run"),
        )
        .with_source(e)
    })?;
    from_bytes(path, &bytes)
}

/// Reads an exported model from memory; `path` names it in errors. A model exported before
/// its metadata named the process (or a state dict saved by PyTorch) is refused by name.
pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Exported> {
    let (st, md) = crate::model::checkpoint::open(path, bytes)?;
    if md.contains_key("imba.kind") {
        return Err(Error::checkpoint(
            path,
            "this is a training checkpoint, not an exported model: sample its run folder \
             (`imba sample --run <folder>`), or give the run's model.safetensors",
        ));
    }
    let Some(process) = md.get(PROCESS) else {
        return Err(Error::checkpoint(
            path,
            "its metadata does not name the diffusion process and the labels (a model exported \
             by an older imba, or saved elsewhere); sample from the run's \
             checkpoint.safetensors instead, which holds them (`imba sample --run <folder>`; \
             on the page, choose that file)",
        ));
    };
    let process = Process::from_name(process).ok_or_else(|| {
        Error::checkpoint(
            path,
            format!("metadata `{PROCESS}` is `{process}`; expected `ddpm` or `flow`"),
        )
    })?;
    let model = model_of(path, &md)?;
    let label_names = label_names_of(path, &md, &model)?;
    let weights = crate::model::checkpoint::from_open(&st, path, &model)?;
    let number = |key: &str| -> Result<Option<u32>> {
        md.get(key)
            .map(|v| v.parse())
            .transpose()
            .map_err(|_| Error::checkpoint(path, format!("metadata `{key}` is not a number")))
    };
    Ok(Exported {
        model,
        process,
        label_names,
        weights,
        step: number(STEP)?,
        of_steps: number(STEPS)?,
    })
}

/// The model's shape and its label names as metadata (shared with training checkpoints).
pub(super) fn describe(model: &DitConfig, label_names: &[String]) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            MODEL.to_string(),
            toml::to_string(model).expect("serialisable"),
        ),
        (
            LABEL_NAMES.to_string(),
            serde_json::to_string(label_names).expect("serialisable"),
        ),
    ])
}

fn get<'m>(path: &Path, md: &'m HashMap<String, String>, key: &str) -> Result<&'m String> {
    md.get(key)
        .ok_or_else(|| Error::checkpoint(path, format!("metadata `{key}` is missing")))
}

/// The model's shape from the metadata, validated.
pub(super) fn model_of(path: &Path, md: &HashMap<String, String>) -> Result<DitConfig> {
    let model: DitConfig = toml::from_str(get(path, md, MODEL)?).map_err(|e| {
        Error::checkpoint(path, format!("metadata `{MODEL}` is not valid ({e})")).with_source(e)
    })?;
    model.validate().map_err(|e| {
        Error::checkpoint(path, format!("its model is not valid: {e}")).with_source(e)
    })?;
    Ok(model)
}

/// The label names from the metadata, one per label of `model`.
pub(super) fn label_names_of(
    path: &Path,
    md: &HashMap<String, String>,
    model: &DitConfig,
) -> Result<Vec<String>> {
    let names: Vec<String> = serde_json::from_str(get(path, md, LABEL_NAMES)?).map_err(|e| {
        Error::checkpoint(path, format!("metadata `{LABEL_NAMES}` is not valid ({e})"))
            .with_source(e)
    })?;
    if names.len() != model.num_labels as usize {
        return Err(Error::checkpoint(
            path,
            "label names and the model's label count differ",
        ));
    }
    Ok(names)
}
