//! The adaLN launchers' public types: the residual stream, the modulation columns, column
//! ranges, and the launch arguments.

use crate::kernels::common::{Region, Write};
use crate::{Error, Result};

/// A token stream of `rows` rows of `dim` values, `tokens` consecutive rows per sample.
#[derive(Clone, Copy, Debug)]
pub struct Stream {
    /// Rows of the stream (samples × tokens).
    pub rows: u32,
    /// Values per row (the hidden size).
    pub dim: u32,
    /// Consecutive rows of one sample: each sample's rows share its modulation row.
    pub tokens: u32,
}

impl Stream {
    pub(super) fn validate(&self) -> Result<()> {
        if self.rows == 0
            || self.dim == 0
            || self.tokens == 0
            || !self.rows.is_multiple_of(self.tokens)
        {
            return Err(Error::Shape(format!(
                "token stream of {} rows × {} values with {} tokens per sample: sizes must be \
                 non-zero and rows a multiple of tokens",
                self.rows, self.dim, self.tokens
            )));
        }
        if self.rows as u64 * self.dim as u64 > u32::MAX as u64 {
            return Err(Error::Shape(
                "rows·dim exceeds 2^32; split the batch".into(),
            ));
        }
        Ok(())
    }
    pub(super) fn samples(&self) -> u32 {
        self.rows / self.tokens
    }
    pub(super) fn bytes(&self) -> u64 {
        self.rows as u64 * self.dim as u64 * 4
    }
}

/// The output of an adaLN linear: one row of `stride` values per sample, holding the
/// shift, scale and gate chunks of `dim` values at the given first columns.
#[derive(Clone, Copy, Debug)]
pub struct Modulation<'a> {
    /// The modulation matrix: one row per sample.
    pub region: Region<'a>,
    /// Values per modulation row (6·dim for a DiT block's adaLN linear).
    pub stride: u32,
    /// First column of the shift chunk.
    pub shift: u32,
    /// First column of the scale chunk.
    pub scale: u32,
    /// First column of the gate chunk.
    pub gate: u32,
}

impl<'a> Modulation<'a> {
    /// The same column layout in another matrix (e.g. the modulation's gradient).
    pub fn of(self, region: impl Into<Region<'a>>) -> Self {
        Self {
            region: region.into(),
            ..self
        }
    }

    /// The shift chunk's columns.
    pub fn shift_columns(self) -> Columns<'a> {
        self.columns(self.shift)
    }

    /// The scale chunk's columns.
    pub fn scale_columns(self) -> Columns<'a> {
        self.columns(self.scale)
    }

    /// The gate chunk's columns.
    pub fn gate_columns(self) -> Columns<'a> {
        self.columns(self.gate)
    }

    fn columns(self, col: u32) -> Columns<'a> {
        Columns {
            region: self.region,
            stride: self.stride,
            col,
        }
    }
}

/// A block of columns of a row-major matrix: `stride` values per row, starting at `col`.
#[derive(Clone, Copy, Debug)]
pub struct Columns<'a> {
    /// The matrix.
    pub region: Region<'a>,
    /// Values per row of the matrix.
    pub stride: u32,
    /// The first column of the block.
    pub col: u32,
}

impl<'a> Columns<'a> {
    /// A whole matrix of `stride` columns.
    pub fn whole(region: impl Into<Region<'a>>, stride: u32) -> Self {
        Self {
            region: region.into(),
            stride,
            col: 0,
        }
    }
}

/// LayerNorm of the stream fused with the modulation h = x̂(1 + scale) + shift; saves x̂ and 1/σ.
#[derive(Clone, Copy)]
pub struct LnModulateArgs<'a> {
    /// The residual stream's shape.
    pub stream: Stream,
    /// Input: the stream x.
    pub x: Region<'a>,
    /// Input: shift and scale per sample.
    pub modulation: Modulation<'a>,
    /// Output: h = x̂(1 + scale) + shift.
    pub h: Region<'a>,
    /// Output, saved for the backward: x̂, the normalised stream.
    pub xhat: Region<'a>,
    /// Output, saved for the backward: 1/σ per row.
    pub rstd: Region<'a>,
}

/// The backward of [`AdaLnKernels::record_ln_modulate`](crate::kernels::AdaLnKernels::record_ln_modulate): dx (+)= ∂L/∂x from dh.
#[derive(Clone, Copy)]
pub struct LnModulateBackwardArgs<'a> {
    /// The residual stream's shape.
    pub stream: Stream,
    /// Input: x̂ saved by the forward.
    pub xhat: Region<'a>,
    /// Input: 1/σ per row saved by the forward.
    pub rstd: Region<'a>,
    /// Input: shift and scale per sample.
    pub modulation: Modulation<'a>,
    /// Input: ∂L/∂h.
    pub dh: Region<'a>,
    /// Output: ∂L/∂x.
    pub dx: Region<'a>,
    /// Whether `dx` is overwritten or added to.
    pub write: Write,
}

/// x += gate ⊙ a, the gate a column range of the modulation.
#[derive(Clone, Copy)]
pub struct GatedResidualArgs<'a> {
    /// The residual stream's shape.
    pub stream: Stream,
    /// Input: the branch's output a.
    pub a: Region<'a>,
    /// Input: the gate per sample.
    pub modulation: Modulation<'a>,
    /// Input and output: the stream x, to which gate ⊙ a is added.
    pub x: Region<'a>,
}

/// The backward of the gated residual into the branch: da (+)= gate ⊙ dx.
#[derive(Clone, Copy)]
pub struct GatedResidualBackwardArgs<'a> {
    /// The residual stream's shape.
    pub stream: Stream,
    /// Input: ∂L/∂x of the stream.
    pub dx: Region<'a>,
    /// Input: the gate per sample.
    pub modulation: Modulation<'a>,
    /// Output: ∂L/∂a of the branch.
    pub da: Region<'a>,
    /// Whether `da` is overwritten or added to.
    pub write: Write,
}

/// Per-segment column sums Σ_rows a (⊙ b) into `out` (bias, shift, scale and gate gradients).
#[derive(Clone, Copy)]
pub struct SegmentSumsArgs<'a> {
    /// Segments (samples) summed separately.
    pub segments: u32,
    /// Rows of each segment (tokens per sample).
    pub rows_per_segment: u32,
    /// Columns summed.
    pub dim: u32,
    /// Input: the first factor's columns.
    pub a: Columns<'a>,
    /// Input: the second factor's columns (the product a ⊙ b is summed), or none (a alone).
    pub b: Option<Columns<'a>>,
    /// Output: one row of sums per segment.
    pub out: Columns<'a>,
    /// Whether `out` is overwritten or added to.
    pub write: Write,
}
