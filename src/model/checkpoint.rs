//! safetensors checkpoints with the reference DiT's tensor names and shapes
//! (facebookresearch/DiT `models.py` state dict, learn_sigma = false): Linear weights
//! (out, in) row-major, the patch embedding (D, C, p, p), the label table (labels + 1, D),
//! and the fixed `pos_embed` (1, N, D), which is written too and checked on import. So a
//! state dict saved from PyTorch with `safetensors.torch.save_file` loads here, and a file
//! written here loads there with `load_state_dict`.
//!
//! Import accepts F32, F64, F16 and BF16 tensors (converted to f32), and a learn_sigma = true
//! state dict (the reference's default), whose output layer predicts the variance beside ε:
//! its ε half is taken, the rest dropped (see [`epsilon_rows`]). It refuses a missing or
//! misshapen tensor, an unknown one, or a position embedding that is not DiT's, naming it.
//! Export writes F32 to a temporary file and renames it over the target, so an interrupted
//! write never leaves a truncated checkpoint behind; the file is sealed (a CRC32 of every
//! tensor and of the header, see [`super::checksum`]) and import verifies the seal.

use super::sincos::pos_embed_2d;
use super::{DitConfig, ParamLayout};
use crate::{Error, Result};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::Path;

/// The name of the fixed position embedding.
pub const POS_EMBED: &str = "pos_embed";

/// DiT's position embedding for a config, (N·D) f32 as PyTorch's code stores it (computed in
/// f64, then cast).
pub fn pos_embed(c: &DitConfig) -> Vec<f32> {
    pos_embed_2d(
        c.dim as usize,
        (c.height / c.patch) as usize,
        (c.width / c.patch) as usize,
    )
    .iter()
    .map(|&v| v as f32)
    .collect()
}

/// Writes the flat parameters of `config` (`layout.total` values) as a safetensors file,
/// with the config in the metadata.
pub fn save(path: &Path, config: &DitConfig, flat: &[f32]) -> Result<()> {
    save_with(path, config, flat, BTreeMap::new())
}

/// [`save`] with more metadata beside the format and the config (the trainer's export adds
/// what sampling the model needs).
pub fn save_with(
    path: &Path,
    config: &DitConfig,
    flat: &[f32],
    extra: BTreeMap<String, String>,
) -> Result<()> {
    let layout = ParamLayout::new(config);
    if flat.len() != layout.total {
        return Err(Error::checkpoint(
            path,
            format!("{} values for a layout of {}", flat.len(), layout.total),
        ));
    }
    let pos = pos_embed(config);
    let mut views: Vec<(String, TensorView)> = Vec::new();
    for t in &layout.tensors {
        let data: &[u8] = bytemuck::cast_slice(&flat[t.offset..t.offset + t.len()]);
        let v = TensorView::new(Dtype::F32, t.shape.clone(), data)
            .map_err(|e| Error::checkpoint(path, e.to_string()).with_source(e))?;
        views.push((t.name.clone(), v));
    }
    let shape = vec![1, config.tokens() as usize, config.dim as usize];
    views.push((
        POS_EMBED.into(),
        TensorView::new(Dtype::F32, shape, bytemuck::cast_slice(&pos))
            .map_err(|e| Error::checkpoint(path, e.to_string()).with_source(e))?,
    ));
    let mut meta = extra;
    meta.insert("format".to_string(), "pt".to_string());
    meta.insert("imba.config".to_string(), format!("{config:?}"));
    let data = super::checksum::serialize(path, views, meta)?;
    crate::files::write_atomic(path, &data)
}

/// Opens a safetensors file and checks its seal (files written elsewhere have none); the
/// tensors and the metadata.
pub fn open<'a>(
    path: &Path,
    data: &'a [u8],
) -> Result<(SafeTensors<'a>, std::collections::HashMap<String, String>)> {
    let invalid = |e: safetensors::SafeTensorError| {
        Error::checkpoint(
            path,
            format!("not a valid safetensors file ({e}); it may be truncated, corrupt or of another format"),
        )
        .with_source(e)
    };
    let (_, meta) = SafeTensors::read_metadata(data).map_err(invalid)?;
    let st = SafeTensors::deserialize(data).map_err(invalid)?;
    let meta = meta.metadata().clone().unwrap_or_default();
    super::checksum::verify(path, &st, &meta)?;
    Ok((st, meta))
}

/// Reads a checkpoint for `config` into a flat parameter vector (`layout.total` values,
/// padding zero).
pub fn load(path: &Path, config: &DitConfig) -> Result<Vec<f32>> {
    let data = std::fs::read(path).map_err(|e| {
        Error::checkpoint(
            path,
            format!("cannot read ({e}); check the path, or write one with imba's export"),
        )
        .with_source(e)
    })?;
    from_bytes(path, &data, config)
}

/// [`load`] of a file already in memory; `path` names it in errors.
pub fn from_bytes(path: &Path, data: &[u8], config: &DitConfig) -> Result<Vec<f32>> {
    let (st, _) = open(path, data)?;
    from_open(&st, path, config)
}

/// [`from_bytes`] of a file already [`open`]ed (its seal checked), for readers that look at
/// its metadata or tensors first: parsed and verified once.
pub fn from_open(st: &SafeTensors, path: &Path, config: &DitConfig) -> Result<Vec<f32>> {
    let flat = params_from(st, path, config, "")?;
    let layout = ParamLayout::new(config);
    let known: Vec<&str> = layout.tensors.iter().map(|t| t.name.as_str()).collect();
    let extra: Vec<&str> = st
        .names()
        .into_iter()
        .filter(|n| *n != POS_EMBED && !known.contains(n))
        .collect();
    if !extra.is_empty() {
        return Err(Error::checkpoint(
            path,
            format!("unknown tensors {extra:?}; is this a checkpoint of another model?"),
        ));
    }
    check_pos_embed(st, path, config)?;
    Ok(flat)
}

/// The model tensors named `{prefix}{reference name}` of an open safetensors file, as a flat
/// parameter vector for `config` (used with prefix "ema." by the trainer's checkpoints).
pub fn params_from(
    st: &SafeTensors,
    path: &Path,
    config: &DitConfig,
    prefix: &str,
) -> Result<Vec<f32>> {
    let layout = ParamLayout::new(config);
    // Every tensor is found and its shape checked before the flat vector is allocated, so a
    // config named in a file's metadata cannot ask for more memory than its tensors hold.
    let views = (layout.tensors.iter())
        .map(|t| checked_view(st, path, config, prefix, t))
        .collect::<Result<Vec<_>>>()?;
    // The output layer's weight and bias are both learn_sigma = true or both not.
    let doubled: Vec<&str> = (layout.tensors.iter().zip(&views))
        .filter(|(t, v)| v.shape() != t.shape.as_slice())
        .map(|(t, _)| t.name.as_str())
        .collect();
    if doubled.len() == 1 {
        return Err(Error::checkpoint(
            path,
            format!(
                "tensor `{}` has the rows of a learn_sigma = true output layer and its \
                 partner does not; the file mixes two models",
                doubled[0]
            ),
        ));
    }
    let mut flat = vec![0.0f32; layout.total];
    for (t, v) in layout.tensors.iter().zip(&views) {
        let out = &mut flat[t.offset..t.offset + t.len()];
        let convert = |out: &mut [f32]| {
            to_f32(v, out).map_err(|p| Error::checkpoint(path, format!("tensor `{}`: {p}", t.name)))
        };
        if v.shape() == t.shape.as_slice() {
            convert(out)?;
        } else {
            // A learn_sigma = true output layer (the only other shape `checked_view` lets by).
            let mut both = vec![0.0f32; 2 * t.len()];
            convert(&mut both)?;
            let row = t.len() / t.shape[0];
            out.copy_from_slice(&epsilon_rows(&both, row, config.channels as usize));
        }
        if let Some(i) = out.iter().position(|x| !x.is_finite()) {
            return Err(Error::checkpoint(
                path,
                format!("tensor `{}` holds a non-finite value at index {i}", t.name),
            ));
        }
    }
    Ok(flat)
}

/// The tensor `{prefix}{t.name}` of the file, refused by name when missing or misshapen.
fn checked_view<'a>(
    st: &SafeTensors<'a>,
    path: &Path,
    config: &DitConfig,
    prefix: &str,
    t: &super::params::Tensor,
) -> Result<TensorView<'a>> {
    let name = format!("{prefix}{}", t.name);
    let v = st.tensor(&name).map_err(|_| {
        Error::checkpoint(
            path,
            format!(
                "tensor `{name}` is missing; the file is not a DiT checkpoint for this \
                 config (depth {}, D {})",
                config.depth, config.dim
            ),
        )
    })?;
    if v.shape() != t.shape.as_slice() && !learn_sigma_shape(t, v.shape()) {
        return Err(Error::checkpoint(
            path,
            format!(
                "tensor `{}` has shape {:?} but this config needs {:?}; check the model \
                 size, patch, channels and label count",
                t.name,
                v.shape(),
                t.shape
            ),
        ));
    }
    Ok(v)
}

/// Whether `shape` is tensor `t` of a learn_sigma = true model: the output layer's weight or
/// bias with twice the rows (ε and the variance for every channel of every patch pixel).
fn learn_sigma_shape(t: &super::params::Tensor, shape: &[usize]) -> bool {
    t.name.starts_with("final_layer.linear.")
        && shape.len() == t.shape.len()
        && shape[0] == 2 * t.shape[0]
        && shape[1..] == t.shape[1..]
}

/// The ε half of a learn_sigma = true output layer's rows. The reference unpatchifies the
/// output as (patch row, patch column, channel) with 2C channels, ε in the first C and the
/// variance interpolation in the last C, so of every run of 2C rows (one patch pixel) the
/// first C are kept; `row` values make one row (D for the weight, 1 for the bias).
fn epsilon_rows(values: &[f32], row: usize, channels: usize) -> Vec<f32> {
    values
        .chunks_exact(2 * channels * row)
        .flat_map(|pixel| &pixel[..channels * row])
        .copied()
        .collect()
}

/// Refuses a stored `pos_embed` that is not DiT's fixed embedding for `config`.
pub fn check_pos_embed(st: &SafeTensors, path: &Path, config: &DitConfig) -> Result<()> {
    if let Ok(v) = st.tensor(POS_EMBED) {
        let shape = [1, config.tokens() as usize, config.dim as usize];
        if v.shape() != shape {
            return Err(Error::checkpoint(
                path,
                format!(
                    "pos_embed has shape {:?} but this config needs {shape:?}; check the image size and patch",
                    v.shape()
                ),
            ));
        }
        // Computed once the file's tensor has its size, which bounds the memory it takes.
        let want = pos_embed(config);
        let mut got = vec![0.0; want.len()];
        to_f32(&v, &mut got).map_err(|p| Error::checkpoint(path, format!("pos_embed: {p}")))?;
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        if worst.is_nan() || worst > 1e-5 + rounding(v.dtype()) {
            return Err(Error::checkpoint(
                path,
                format!(
                    "pos_embed differs from DiT's 2-D sin-cos embedding by up to {worst}; this \
                     model uses the fixed one, so the checkpoint is of another model"
                ),
            ));
        }
    }
    Ok(())
}

/// How far a value in [−1, 1] may move when stored in `dtype`: the machine epsilon of the
/// type (twice its largest rounding error there). A state dict saved after
/// `model.to(torch.float16)` holds DiT's position embedding rounded to half precision.
fn rounding(dtype: Dtype) -> f32 {
    match dtype {
        Dtype::F16 => half::f16::EPSILON.to_f32(),
        Dtype::BF16 => half::bf16::EPSILON.to_f32(),
        _ => 0.0,
    }
}

fn to_f32(v: &TensorView, out: &mut [f32]) -> std::result::Result<(), String> {
    let d = v.data();
    match v.dtype() {
        Dtype::F32 => out
            .iter_mut()
            .zip(d.chunks_exact(4))
            .for_each(|(o, b)| *o = f32::from_le_bytes(b.try_into().unwrap())),
        Dtype::F64 => out
            .iter_mut()
            .zip(d.chunks_exact(8))
            .for_each(|(o, b)| *o = f64::from_le_bytes(b.try_into().unwrap()) as f32),
        Dtype::F16 => out
            .iter_mut()
            .zip(d.chunks_exact(2))
            .for_each(|(o, b)| *o = half::f16::from_le_bytes(b.try_into().unwrap()).to_f32()),
        Dtype::BF16 => out
            .iter_mut()
            .zip(d.chunks_exact(2))
            .for_each(|(o, b)| *o = half::bf16::from_le_bytes(b.try_into().unwrap()).to_f32()),
        other => {
            return Err(format!(
                "dtype {other:?} is not a float type (F32, F64, F16, BF16)"
            ))
        }
    }
    Ok(())
}
