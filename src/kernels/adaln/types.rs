//! The adaLN launchers' public types: the residual stream, the modulation columns, column
//! ranges, and the launch arguments.

use crate::kernels::common::{Region, Write};
use crate::{Error, Result};

/// A token stream of `rows` rows of `dim` values, `tokens` consecutive rows per sample.
#[derive(Clone, Copy, Debug)]
pub struct Stream {
    pub rows: u32,
    pub dim: u32,
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
    pub region: Region<'a>,
    pub stride: u32,
    pub shift: u32,
    pub scale: u32,
    pub gate: u32,
}

/// A block of columns of a row-major matrix: `stride` values per row, starting at `col`.
#[derive(Clone, Copy, Debug)]
pub struct Columns<'a> {
    pub region: Region<'a>,
    pub stride: u32,
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
    pub stream: Stream,
    pub x: Region<'a>,
    pub modulation: Modulation<'a>,
    pub h: Region<'a>,
    pub xhat: Region<'a>,
    pub rstd: Region<'a>,
}

/// The backward of [`AdaLnKernels::record_ln_modulate`]: dx (+)= ∂L/∂x from dh.
#[derive(Clone, Copy)]
pub struct LnModulateBackwardArgs<'a> {
    pub stream: Stream,
    pub xhat: Region<'a>,
    pub rstd: Region<'a>,
    pub modulation: Modulation<'a>,
    pub dh: Region<'a>,
    pub dx: Region<'a>,
    pub write: Write,
}

/// x += gate ⊙ a, the gate a column range of the modulation.
#[derive(Clone, Copy)]
pub struct GatedResidualArgs<'a> {
    pub stream: Stream,
    pub a: Region<'a>,
    pub modulation: Modulation<'a>,
    pub x: Region<'a>,
}

/// The backward of the gated residual into the branch: da (+)= gate ⊙ dx.
#[derive(Clone, Copy)]
pub struct GatedResidualBackwardArgs<'a> {
    pub stream: Stream,
    pub dx: Region<'a>,
    pub modulation: Modulation<'a>,
    pub da: Region<'a>,
    pub write: Write,
}

/// Per-segment column sums Σ_rows a (⊙ b) into `out` (bias, shift, scale and gate gradients).
#[derive(Clone, Copy)]
pub struct SegmentSumsArgs<'a> {
    pub segments: u32,
    pub rows_per_segment: u32,
    pub dim: u32,
    pub a: Columns<'a>,
    pub b: Option<Columns<'a>>,
    pub out: Columns<'a>,
    pub write: Write,
}
