//! From a configuration to data and a model shape.

use super::{DatasetKind, TrainConfig};
use crate::data::{self, Dataset, Split};
use crate::model::DitConfig;
use crate::{Error, Result};
use std::path::Path;

/// Digits per class set aside (balanced) for evaluation before the long-tail cut: the
/// 1,797 digits have 174–183 per class, so at least 114 per class remain for training.
pub const DIGITS_HELD_OUT: usize = 60;

/// The raw digits of a config: the embedded set, or `data_path`'s CSV.
pub fn digits_source(c: &TrainConfig) -> Result<Dataset> {
    if c.data_path.is_empty() {
        data::load_digits(data::DIGITS_CSV)
    } else {
        let bytes = std::fs::read(&c.data_path).map_err(|e| {
            Error::io(
                std::path::Path::new(&c.data_path),
                "cannot read the digits CSV",
                e,
            )
        })?;
        data::load_digits(&bytes)
    }
}

/// The balanced held-out digits of a config (never trained on).
pub fn digits_held_out(c: &TrainConfig) -> Result<Dataset> {
    Ok(data::holdout(&digits_source(c)?, DIGITS_HELD_OUT, c.data_seed)?.2)
}

/// Refuses a generated data set that would not fit in memory, before drawing it: at most
/// `head_count` images for each label.
fn check_generated_size(c: &TrainConfig) -> Result<()> {
    let per_label = c.head_count as u64;
    let (labels, values) = match c.dataset {
        DatasetKind::Toy2d => (c.classes as u64, 2),
        DatasetKind::Shapes => {
            let classes = (data::SHAPES.len() * data::COLOURS.len()) as u64;
            let size = c.image_size.max(8) as u64;
            let labels = if c.concepts {
                classes * classes
            } else {
                classes
            };
            (labels, 3 * size * size)
        }
        DatasetKind::Digits | DatasetKind::Folder | DatasetKind::Idx => return Ok(()),
    };
    crate::bounds::host_memory(
        &format!("the data set ({per_label} images for the largest of {labels} labels)"),
        per_label * labels * values * 4,
    )
}

/// Loads or draws the configured data set, cut to its long-tailed split.
pub fn load_data(c: &TrainConfig) -> Result<(Dataset, Split)> {
    check_generated_size(c)?;
    let (data, kept) = match c.dataset {
        DatasetKind::Toy2d => {
            let d = data::toy2d(&data::Toy2dSpec {
                classes: c.classes,
                head_count: c.head_count,
                imbalance: c.imbalance,
                profile: c.profile,
                seed: c.data_seed,
                ..Default::default()
            })?;
            (d, None)
        }
        DatasetKind::Shapes => {
            let d = data::shapes(&data::ShapesSpec {
                size: c.image_size,
                concepts: c.concepts,
                head_count: c.head_count,
                imbalance: c.imbalance,
                profile: c.profile,
                seed: c.data_seed,
                jitter: c.jitter,
                permute: c.permute_frequencies,
            })?;
            (d, None)
        }
        DatasetKind::Digits | DatasetKind::Folder | DatasetKind::Idx => {
            let full = if c.dataset == DatasetKind::Digits {
                digits_source(c)?
            } else if c.dataset == DatasetKind::Idx {
                data::load_idx(Path::new(&c.data_path), data::IdxSplit::Train)?
            } else {
                let size = (c.image_size > 0).then_some(c.image_size);
                data::load_folder(Path::new(&c.data_path), c.channels, size)?
            };
            // Digits keep a balanced held-out set for their evaluation (classifier and
            // Fréchet reference); training draws only from the rest.
            let (pool, pool_index) = if c.dataset == DatasetKind::Digits {
                let (pool, index, _) = data::holdout(&full, DIGITS_HELD_OUT, c.data_seed)?;
                (pool, Some(index))
            } else {
                (full, None)
            };
            let head = if c.head_count == 0 && c.dataset == DatasetKind::Idx {
                pool.label_counts().into_iter().max().unwrap_or(0)
            } else if c.head_count == 0 {
                pool.label_counts()[0]
            } else {
                c.head_count
            };
            let labels = pool.num_labels() as usize;
            let by_rank = data::profile_counts(c.profile, head, labels, c.imbalance)?;
            // Which label gets which frequency rank: label order, or a seeded permutation
            // (so that which class is rare changes with the data seed).
            let mut counts = vec![0; labels];
            let order = data::frequency_order(c.data_seed, 3, labels, c.permute_frequencies);
            for (rank, &label) in order.iter().enumerate() {
                counts[label] = by_rank[rank];
            }
            let (d, kept) = data::cut(&pool, &counts, c.data_seed)?;
            let kept = match pool_index {
                Some(index) => kept.iter().map(|&k| index[k]).collect(),
                None => kept,
            };
            (d, Some(kept))
        }
    };
    data.validate()?;
    let split = Split {
        dataset: data.name.clone(),
        profile: c.profile,
        imbalance: c.imbalance,
        seed: c.data_seed,
        counts: data.label_counts(),
        label_names: data.label_names.clone(),
        kept,
    };
    Ok((data, split))
}

/// The DiT for a data set: `auto` is a depth-4, D-64 model with about 16 tokens per image
/// (patch 1 for toy2d's single pixel).
pub fn model_config(c: &TrainConfig, d: &Dataset) -> Result<DitConfig> {
    let mut m = match c.model.as_str() {
        "auto" => {
            let side = d.height.min(d.width);
            let patch = if side >= 8 { side / 4 } else { 1 };
            DitConfig {
                patch,
                dim: 64,
                depth: 4,
                heads: 4,
                ..DitConfig::tiny()
            }
        }
        "tiny" => DitConfig::tiny(),
        name => DitConfig::preset(name, d.height, d.channels, d.num_labels())
            .map_err(|e| Error::Config(format!("`model`: {e}; or use auto or tiny")))?,
    };
    m.height = d.height;
    m.width = d.width;
    m.channels = d.channels;
    m.num_labels = d.num_labels();
    m.label_slots = d.slots;
    for (v, o) in [
        (&mut m.depth, c.depth),
        (&mut m.dim, c.dim),
        (&mut m.heads, c.heads),
        (&mut m.patch, c.patch),
    ] {
        if o > 0 {
            *v = o;
        }
    }
    m.validate()
        .map_err(|e| Error::Config(format!("the model does not fit the data: {e}")))?;
    Ok(m)
}
