//! A reference DiT's state dict saved in PyTorch (facebookresearch/DiT names, safetensors),
//! taken as it is: its model's shape is read off the tensors, so that a model trained in
//! PyTorch can be sampled here without writing its configuration out by hand. Only the
//! number of attention heads is not in the shapes (heads split D, they add no tensor).

use super::checkpoint::{self, POS_EMBED};
use super::DitConfig;
use crate::{Error, Result};
use safetensors::SafeTensors;
use std::path::Path;

/// A state dict read in: its model, its flat parameters, and whether its output layer was
/// learn_sigma = true (then its variance rows were dropped, see [`checkpoint`]).
pub struct StateDict {
    /// The model the tensors describe (with the heads given).
    pub model: DitConfig,
    /// Its flat parameters in imba's layout (the ε half of a learn_sigma = true output).
    pub params: Vec<f32>,
    /// Whether the output layer predicted the variance too (its rows were dropped).
    pub learn_sigma: bool,
}

/// Reads a state dict of the reference DiT from `data` (`path` names it in errors): its model
/// from the tensors' shapes and `heads`, then every tensor checked as an import checks it.
pub fn read(path: &Path, data: &[u8], heads: u32) -> Result<StateDict> {
    let (st, meta) = checkpoint::open(path, data)?;
    if meta.contains_key("imba.model") {
        return Err(bad(
            path,
            "this is already an imba model file (its metadata names its model): sample it \
             as it is (`imba sample --model`)"
                .to_string(),
        ));
    }
    let model = model_of(&st, path, heads)?;
    let params = checkpoint::from_open(&st, path, &model)?;
    // The import has checked the output layer's shape: one row per output, or two.
    let out_rows = shape(&st, path, "final_layer.linear.weight")?[0];
    let learn_sigma = out_rows == 2 * (model.patch * model.patch * model.channels) as usize;
    Ok(StateDict {
        model,
        params,
        learn_sigma,
    })
}

/// The model a state dict holds: D, C and p from the patch embedding (D, C, p, p), the image
/// side from the position embedding (1, N, D) (square images, N = (side/p)²), the labels
/// from the label table (labels + 1 rows: the last is the null label of classifier-free
/// guidance), the depth from the blocks present, the MLP ratio from the first block's fc1.
pub fn model_of(st: &SafeTensors, path: &Path, heads: u32) -> Result<DitConfig> {
    let x = shape(st, path, "x_embedder.proj.weight")?;
    if x.len() != 4 || x[2] != x[3] {
        return Err(bad(
            path,
            format!("x_embedder.proj.weight has shape {x:?}, not (D, C, p, p)"),
        ));
    }
    let (dim, channels, patch) = (x[0], x[1], x[2]);
    let pos = shape(st, path, POS_EMBED)?;
    let side = if pos.len() == 3 { pos[1].isqrt() } else { 0 };
    if side == 0 || side * side != pos[1] {
        return Err(bad(
            path,
            format!("pos_embed has shape {pos:?}, not (1, N, D) for a square grid of N patches"),
        ));
    }
    // Rows of a tensor, 0 for a scalar (a hostile file's): refused below, never indexed.
    let rows = |name| shape(st, path, name).map(|s| s.first().copied().unwrap_or(0));
    let table = rows("y_embedder.embedding_table.weight")?;
    if table < 2 {
        return Err(bad(
            path,
            "the label table has fewer than 2 rows: a model needs a label and the null label \
             (train the reference DiT with class_dropout_prob > 0)"
                .to_string(),
        ));
    }
    let depth = (0..)
        .take_while(|i| st.tensor(&format!("blocks.{i}.attn.qkv.weight")).is_ok())
        .count();
    let hidden = rows("blocks.0.mlp.fc1.weight")?;
    if dim == 0 || hidden == 0 || !hidden.is_multiple_of(dim) {
        return Err(bad(
            path,
            format!("fc1 has {hidden} rows, not a multiple of D = {dim}"),
        ));
    }
    let model = DitConfig {
        height: number(path, "the image side", side * patch)?,
        width: number(path, "the image side", side * patch)?,
        channels: number(path, "the channels", channels)?,
        patch: number(path, "the patch", patch)?,
        dim: number(path, "D", dim)?,
        depth: number(path, "the depth", depth)?,
        heads,
        mlp_ratio: number(path, "the MLP ratio", hidden / dim)?,
        num_labels: number(path, "the labels", table - 1)?,
        label_slots: 1,
    };
    model
        .validate()
        .map_err(|e| bad(path, format!("its model is not one imba runs: {e}")))?;
    Ok(model)
}

/// A tensor's shape, or an error naming it as missing.
fn shape(st: &SafeTensors, path: &Path, name: &str) -> Result<Vec<usize>> {
    st.tensor(name).map(|v| v.shape().to_vec()).map_err(|_| {
        bad(
            path,
            format!(
                "tensor `{name}` is missing; give a state dict of the reference DiT \
                 (facebookresearch/DiT models.py names, saved with safetensors)"
            ),
        )
    })
}

fn number(path: &Path, what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| bad(path, format!("{what} ({v}) is out of range")))
}

fn bad(path: &Path, why: String) -> Error {
    Error::checkpoint(path, why)
}
