//! What a model and a batch need in device memory: parameters, gradients, AdamW moments, EMA,
//! the saved activations and the backward's scratch, from the same plan the allocation uses.

use super::dit::arena_plan;
use super::{DitConfig, ParamLayout};
use crate::files::human_bytes as human;
use std::fmt;

/// Bytes per category for one config, batch and number of label sets (2 = dual forward).
#[derive(Clone, Debug)]
pub struct MemoryReport {
    /// The model.
    pub config: DitConfig,
    /// Samples per step.
    pub batch: u32,
    /// Label sets per sample (2 for IMBA's dual forward, 1 for the baseline).
    pub repeats: u32,
    /// Trainable values (padding excluded).
    pub parameters: u64,
    /// One flat f32 buffer (padding included): parameters, gradients, EMA each.
    pub flat_bytes: u64,
    /// AdamW's two moments.
    pub optimizer_bytes: u64,
    /// The fixed position embedding.
    pub pos_bytes: u64,
    /// Activations saved by the forward for the backward (all blocks) and the inputs' rows.
    pub activation_bytes: u64,
    /// One block's share of `activation_bytes`.
    pub per_block_bytes: u64,
    /// The backward's scratch buffers (reused across blocks).
    pub scratch_bytes: u64,
    /// The largest single buffer (it must fit the device's storage binding limit).
    pub largest: (String, u64),
}

impl MemoryReport {
    /// The memory of training `config` on `batch` samples × `repeats` label sets.
    pub fn new(config: &DitConfig, batch: u32, repeats: u32) -> Self {
        let layout = ParamLayout::new(config);
        let (shared, block, scratch) = arena_plan(config, batch, repeats);
        let bytes = |p: &[(String, u64)]| p.iter().map(|(_, v)| v * 4).sum::<u64>();
        let per_block = bytes(&block);
        let flat = layout.total as u64 * 4;
        let largest = shared
            .iter()
            .chain(&block)
            .chain(&scratch)
            .map(|(n, v)| (n.clone(), v * 4))
            .chain([("parameters".to_string(), flat)])
            .max_by_key(|x| x.1)
            .unwrap_or_default();
        Self {
            config: config.clone(),
            batch,
            repeats,
            parameters: layout.count() as u64,
            flat_bytes: flat,
            optimizer_bytes: 2 * flat,
            pos_bytes: config.tokens() as u64 * config.dim as u64 * 4,
            activation_bytes: bytes(&shared) + config.depth as u64 * per_block,
            per_block_bytes: per_block,
            scratch_bytes: bytes(&scratch),
            largest,
        }
    }

    /// Everything a training step holds: parameters, gradients, moments, EMA, position
    /// embedding, activations, scratch.
    pub fn total_bytes(&self) -> u64 {
        3 * self.flat_bytes
            + self.optimizer_bytes
            + self.pos_bytes
            + self.activation_bytes
            + self.scratch_bytes
    }
}

impl fmt::Display for MemoryReport {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            "model            depth {}, D {}, {} heads, patch {}, {}×{}×{} images ({} tokens), {} labels",
            c.depth, c.dim, c.heads, c.patch, c.height, c.width, c.channels, c.tokens(), c.num_labels
        )?;
        writeln!(
            f,
            "batch            {} samples × {} label set{} = {} rows",
            self.batch,
            self.repeats,
            if self.repeats == 1 {
                ""
            } else {
                "s (dual forward)"
            },
            self.batch * self.repeats
        )?;
        writeln!(
            f,
            "parameters       {} values, {}",
            self.parameters,
            human(self.flat_bytes)
        )?;
        writeln!(f, "gradients        {}", human(self.flat_bytes))?;
        writeln!(f, "AdamW moments    {}", human(self.optimizer_bytes))?;
        writeln!(f, "EMA              {}", human(self.flat_bytes))?;
        writeln!(
            f,
            "activations      {} ({} per block, saved for the backward)",
            human(self.activation_bytes),
            human(self.per_block_bytes)
        )?;
        writeln!(f, "backward scratch {}", human(self.scratch_bytes))?;
        writeln!(f, "total            {}", human(self.total_bytes()))?;
        write!(
            f,
            "largest buffer   {} ({})",
            self.largest.0,
            human(self.largest.1)
        )
    }
}
