//! DiT configurations: the paper's presets (S, B, L, XL with patch 2, 4 or 8) and any custom
//! size, plus the image geometry and label vocabulary a model is built for.

use crate::{Error, Result};

/// One DiT model's shape.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DitConfig {
    /// Image height and width in pixels (each a multiple of `patch`).
    pub height: u32,
    /// Image width in pixels (a multiple of `patch`).
    pub width: u32,
    /// Image channels (in and out: learn_sigma = false).
    pub channels: u32,
    /// Patch side p: tokens are p×p×C values.
    pub patch: u32,
    /// Hidden size D (a multiple of `heads` and of 4, for the position embedding).
    pub dim: u32,
    /// Transformer blocks.
    pub depth: u32,
    /// Attention heads.
    pub heads: u32,
    /// MLP hidden size = mlp_ratio·D (DiT: 4).
    pub mlp_ratio: u32,
    /// Labels or concepts; the label table has one more row, the null label ∅.
    pub num_labels: u32,
    /// Concept slots per sample (1 for class labels): c = t_emb + Σ_k table\[label_k\].
    pub label_slots: u32,
}

/// (name, depth, D, heads) of the DiT paper's sizes.
pub const PRESETS: [(&str, u32, u32, u32); 4] = [
    ("S", 12, 384, 6),
    ("B", 12, 768, 12),
    ("L", 24, 1024, 16),
    ("XL", 28, 1152, 16),
];

impl DitConfig {
    /// A preset by name ("S/2", "B/4", "XL/8", …) for `size`² images of `channels` channels
    /// with `num_labels` labels.
    pub fn preset(name: &str, size: u32, channels: u32, num_labels: u32) -> Result<Self> {
        let bad = || {
            Error::Param(format!(
                "unknown model '{name}'; use S, B, L or XL with patch 2, 4 or 8, e.g. S/2 or XL/8"
            ))
        };
        let (size_name, patch) = name.split_once('/').ok_or_else(bad)?;
        let patch: u32 = patch.parse().map_err(|_| bad())?;
        if ![2, 4, 8].contains(&patch) {
            return Err(bad());
        }
        let &(_, depth, dim, heads) = PRESETS
            .iter()
            .find(|p| p.0.eq_ignore_ascii_case(size_name))
            .ok_or_else(bad)?;
        let c = Self {
            height: size,
            width: size,
            channels,
            patch,
            dim,
            depth,
            heads,
            mlp_ratio: 4,
            num_labels,
            label_slots: 1,
        };
        c.validate()?;
        Ok(c)
    }

    /// The tiny model of the tests: depth 2, D 32, 2 heads, 8×8×3 images, patch 2, 3 labels.
    pub fn tiny() -> Self {
        Self {
            height: 8,
            width: 8,
            channels: 3,
            patch: 2,
            dim: 32,
            depth: 2,
            heads: 2,
            mlp_ratio: 4,
            num_labels: 3,
            label_slots: 1,
        }
    }

    /// Checks every constraint the kernels and the reference layout rely on.
    pub fn validate(&self) -> Result<()> {
        let c = self;
        for (name, value) in [
            ("height", c.height),
            ("width", c.width),
            ("channels", c.channels),
            ("patch", c.patch),
            ("dim", c.dim),
            ("depth", c.depth),
            ("heads", c.heads),
            ("mlp_ratio", c.mlp_ratio),
            ("labels", c.num_labels),
            ("label_slots", c.label_slots),
        ] {
            if value == 0 {
                return Err(Error::Param(format!(
                    "model `{name}`{} must be at least 1",
                    image_size_hint(name)
                )));
            }
        }
        use crate::bounds::{MAX_CHANNELS, MAX_DEPTH, MAX_DIM, MAX_IMAGE_SIZE, MAX_LABELS};
        for (name, value, max) in [
            ("depth", c.depth, MAX_DEPTH),
            ("dim", c.dim, MAX_DIM),
            ("heads", c.heads, MAX_DIM),
            ("channels", c.channels, MAX_CHANNELS),
            ("height", c.height, MAX_IMAGE_SIZE),
            ("width", c.width, MAX_IMAGE_SIZE),
            ("labels", c.num_labels, MAX_LABELS),
            ("label_slots", c.label_slots, MAX_LABELS),
            ("mlp_ratio", c.mlp_ratio, 64),
        ] {
            if value > max {
                return Err(Error::Param(format!(
                    "model `{name}`{} is {value}, over its bound of {max}; give a smaller value",
                    image_size_hint(name)
                )));
            }
        }
        if !c.height.is_multiple_of(c.patch) || !c.width.is_multiple_of(c.patch) {
            return Err(Error::Param(format!(
                "patch {} must divide the image size {}×{}",
                c.patch, c.height, c.width
            )));
        }
        if !c.dim.is_multiple_of(c.heads) || !c.dim.is_multiple_of(4) {
            return Err(Error::Param(format!(
                "hidden size {} must be a multiple of the heads ({}) and of 4",
                c.dim, c.heads
            )));
        }
        let hd = c.dim / c.heads;
        if hd > crate::kernels::attention::MAX_HEAD_DIM {
            return Err(Error::Param(format!(
                "head size {hd} exceeds {}; use more heads",
                crate::kernels::attention::MAX_HEAD_DIM
            )));
        }
        Ok(())
    }

    /// Values of one image (or latent): C·H·W.
    pub fn image_len(&self) -> usize {
        (self.channels * self.height * self.width) as usize
    }

    /// Patches per image N.
    pub fn tokens(&self) -> u32 {
        (self.height / self.patch) * (self.width / self.patch)
    }
    /// Values per patch token, in and out: p²·C.
    pub fn token_dim(&self) -> u32 {
        self.patch * self.patch * self.channels
    }
    /// Values per attention head, D / heads.
    pub fn head_dim(&self) -> u32 {
        self.dim / self.heads
    }
    /// The MLP's hidden size, mlp_ratio·D.
    pub fn mlp_dim(&self) -> u32 {
        self.dim * self.mlp_ratio
    }
    /// Rows of the label table: the labels and ∅.
    pub fn table_rows(&self) -> u32 {
        self.num_labels + 1
    }
    /// The null label ∅'s row.
    pub fn null_label(&self) -> u32 {
        self.num_labels
    }

    /// The image geometry of a batch for this model.
    pub fn geometry(&self, batch: u32) -> crate::kernels::ImageGeometry {
        crate::kernels::ImageGeometry {
            batch,
            channels: self.channels,
            height: self.height,
            width: self.width,
            patch: self.patch,
        }
    }
}

/// Where a model size comes from the command line's `--image-size`, says so.
fn image_size_hint(name: &str) -> &'static str {
    match name {
        "height" | "width" => " (the image size)",
        _ => "",
    }
}
