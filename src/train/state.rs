//! Training checkpoints: one safetensors file holding the model under the reference DiT's
//! names (so PyTorch's `load_state_dict(strict=False)` reads it), the EMA weights as
//! `ema.<name>`, the AdamW moments as flat `optim.m` / `optim.v`, and in the metadata the
//! step, the whole training config (TOML) and a fingerprint of the data.
//!
//! Written atomically: to `<file>.tmp` in the same folder, flushed to disk, then renamed over
//! the old checkpoint, so a crash at any moment leaves the previous checkpoint whole.

use super::{State, TrainConfig};
use crate::model::checkpoint::{params_from, pos_embed, POS_EMBED};
use crate::model::{DitConfig, ParamLayout};
use crate::{Error, Result};
use safetensors::{tensor::TensorView, Dtype};
use std::path::Path;

const KIND: &str = "imba-train-state-1";
/// The objective's carried state (t-bucket running means), present only where there is one.
const OBJECTIVE_STATE: &str = "objective.state";
/// The metadata key of the last step's loss (its f32 bits in hex).
const LAST_LOSS: &str = "imba.last_loss";

/// What a checkpoint holds besides the tensors.
pub struct Saved {
    pub config: TrainConfig,
    pub model: DitConfig,
    pub label_names: Vec<String>,
    pub fingerprint: u64,
    pub state: State,
}

/// Writes a checkpoint atomically.
pub fn save(
    path: &Path,
    config: &TrainConfig,
    model: &DitConfig,
    fingerprint: u64,
    label_names: &[String],
    state: &State,
) -> Result<()> {
    let layout = ParamLayout::new(model);
    fn view<'a>(path: &Path, shape: Vec<usize>, data: &'a [f32]) -> Result<TensorView<'a>> {
        TensorView::new(Dtype::F32, shape, bytemuck::cast_slice(data))
            .map_err(|e| Error::checkpoint(path, e.to_string()).with_source(e))
    }
    let mut views: Vec<(String, TensorView)> = Vec::new();
    for t in &layout.tensors {
        let r = t.offset..t.offset + t.len();
        views.push((
            t.name.clone(),
            view(path, t.shape.clone(), &state.params[r.clone()])?,
        ));
        views.push((
            format!("ema.{}", t.name),
            view(path, t.shape.clone(), &state.ema[r])?,
        ));
    }
    let pos = pos_embed(model);
    views.push((
        POS_EMBED.into(),
        view(
            path,
            vec![1, model.tokens() as usize, model.dim as usize],
            &pos,
        )?,
    ));
    views.push(("optim.m".into(), view(path, vec![state.m.len()], &state.m)?));
    views.push(("optim.v".into(), view(path, vec![state.v.len()], &state.v)?));
    if !state.objective.is_empty() {
        let o = &state.objective;
        views.push((OBJECTIVE_STATE.into(), view(path, vec![o.len()], o)?));
    }
    let mut meta = super::export::describe(model, label_names);
    meta.extend([
        ("format".to_string(), "pt".to_string()),
        ("imba.kind".to_string(), KIND.to_string()),
        ("imba.step".to_string(), state.step.to_string()),
        ("imba.config".to_string(), config.to_toml()),
        (
            "imba.data_fingerprint".to_string(),
            format!("{fingerprint:016x}"),
        ),
    ]);
    if let Some(loss) = state.last_loss {
        meta.insert(LAST_LOSS.into(), format!("{:08x}", loss.to_bits()));
    }
    let bytes = crate::model::checksum::serialize(path, views, meta)?;
    crate::files::write_atomic(path, &bytes)
}

/// Reads a checkpoint: config, model shape, label names, step, data fingerprint and tensors.
pub fn load(path: &Path) -> Result<Saved> {
    let data = std::fs::read(path).map_err(|e| {
        Error::checkpoint(
            path,
            format!("cannot read ({e}); give the run folder of an earlier `imba train`"),
        )
        .with_source(e)
    })?;
    from_bytes(path, &data)
}

/// [`load`] of a checkpoint already in memory (a browser page's upload); `path` names it in
/// errors.
pub fn from_bytes(path: &Path, data: &[u8]) -> Result<Saved> {
    let (st, md) = crate::model::checkpoint::open(path, data)?;
    if md.get("imba.kind").map(String::as_str) != Some(KIND) {
        return Err(Error::checkpoint(
            path,
            "not an imba training checkpoint (no training state in its metadata); an exported \
             model (model.safetensors) can be sampled (`imba sample --model`) but not resumed",
        ));
    }
    let get = |k: &str| {
        md.get(k)
            .ok_or_else(|| Error::checkpoint(path, format!("metadata `{k}` is missing")))
    };
    let step: u32 = get("imba.step")?
        .parse()
        .map_err(|_| Error::checkpoint(path, "metadata `imba.step` is not a number"))?;
    let config = TrainConfig::from_toml(get("imba.config")?).map_err(|e| {
        Error::checkpoint(path, format!("its config is not valid: {e}")).with_source(e)
    })?;
    let fingerprint = u64::from_str_radix(get("imba.data_fingerprint")?, 16).map_err(|_| {
        Error::checkpoint(path, "metadata `imba.data_fingerprint` is not hexadecimal")
    })?;
    let model = super::export::model_of(path, &md)?;
    let label_names = super::export::label_names_of(path, &md, &model)?;
    let total = ParamLayout::new(&model).total;
    let flat = |name: &str, total: usize| -> Result<Vec<f32>> {
        let v = st
            .tensor(name)
            .map_err(|_| Error::checkpoint(path, format!("tensor `{name}` is missing")))?;
        if v.dtype() != Dtype::F32 || v.shape() != [total] {
            return Err(Error::checkpoint(
                path,
                format!(
                    "tensor `{name}` should be F32 of shape [{total}], is {:?} {:?}",
                    v.dtype(),
                    v.shape()
                ),
            ));
        }
        let out: Vec<f32> = v
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        if let Some(i) = out.iter().position(|x| !x.is_finite()) {
            return Err(Error::checkpoint(
                path,
                format!("tensor `{name}` holds a non-finite value at {i}"),
            ));
        }
        Ok(out)
    };
    let state = State {
        step,
        params: params_from(&st, path, &model, "")?,
        ema: params_from(&st, path, &model, "ema.")?,
        m: flat("optim.m", total)?,
        v: flat("optim.v", total)?,
        objective: match st.tensor(OBJECTIVE_STATE) {
            Ok(t) => flat(OBJECTIVE_STATE, t.shape().iter().product())?,
            Err(_) => Vec::new(),
        },
        last_loss: match md.get(LAST_LOSS) {
            Some(hex) => Some(f32::from_bits(u32::from_str_radix(hex, 16).map_err(
                |_| Error::checkpoint(path, format!("metadata `{LAST_LOSS}` is not hexadecimal")),
            )?)),
            None => None,
        },
    };
    Ok(Saved {
        config,
        model,
        label_names,
        fingerprint,
        state,
    })
}
