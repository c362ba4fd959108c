//! Launcher of `shaders/embed.wgsl`: the token stream's input (patch embedding + position,
//! repeated for the dual forward), the condition c = t_emb + Σ label rows, and their
//! backwards (fold the repeats, scatter into the label table deterministically).

use super::common::{Family, Operand, Region, Write};
use crate::{Error, Result};

/// A label slot that holds no concept.
pub const NO_LABEL: u32 = u32::MAX;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
pub(crate) struct EmbedParams {
    pub(crate) len: u32,
    pub(crate) repeats: u32,
    pub(crate) period: u32,
    pub(crate) rows: u32,
    pub(crate) batch: u32,
    pub(crate) dim: u32,
    pub(crate) slots: u32,
    pub(crate) table_rows: u32,
    pub(crate) accumulate: u32,
    pub(crate) groups_x: u32,
    pub(crate) pad: [u32; 2],
}

const ENTRIES: [&str; 4] = [
    "tokens_forward",
    "fold_repeats",
    "condition_forward",
    "label_backward",
];

/// The label rows of a launch: `slots` u32 per row, each an index into the table or
/// [`NO_LABEL`].
#[derive(Clone, Copy, Debug)]
pub struct Labels<'a> {
    /// The label rows, `rows`·`slots` u32 values.
    pub buffer: Region<'a>,
    /// Rows (samples).
    pub rows: u32,
    /// Label slots per row (1 for one class label; more for concept lists).
    pub slots: u32,
}

/// Compiled embedding pipelines for one device.
pub struct EmbedKernels {
    family: Family,
}

/// Patch tokens plus the position embedding, repeated `repeats` times: x = [tok + pos] × repeats.
#[derive(Clone, Copy)]
pub struct TokensArgs<'a> {
    /// Values of one copy (samples·tokens·dim).
    pub len: u32,
    /// Values of the position table, which repeats along the copy (tokens·dim).
    pub period: u32,
    /// Copies written one after another (2 for a dual forward).
    pub repeats: u32,
    /// Input: the patch embeddings (`len` values).
    pub patch: Region<'a>,
    /// Input: the position embedding (`period` values).
    pub pos: Region<'a>,
    /// Output: `repeats`·`len` values.
    pub x: Region<'a>,
}

/// Sums the `repeats` copies of `len` values: out (+)= Σ_r x[r·len ..].
#[derive(Clone, Copy)]
pub struct FoldArgs<'a> {
    /// Values of one copy.
    pub len: u32,
    /// Copies summed.
    pub repeats: u32,
    /// Input: `repeats`·`len` values.
    pub x: Region<'a>,
    /// Output: `len` values.
    pub out: Region<'a>,
    /// Whether `out` is overwritten or added to.
    pub write: Write,
}

/// c = t_emb + Σ of the label rows of the table, per row.
#[derive(Clone, Copy)]
pub struct ConditionArgs<'a> {
    /// Rows (samples).
    pub batch: u32,
    /// Hidden size D.
    pub dim: u32,
    /// Rows of the label table (labels + 1 for the null label).
    pub table_rows: u32,
    /// Input: the timestep embedding, `batch`·`dim` values.
    pub t_emb: Region<'a>,
    /// Input: the label table, `table_rows`·`dim` values.
    pub table: Region<'a>,
    /// Input: each row's labels.
    pub labels: Labels<'a>,
    /// Output: the conditioning c, `batch`·`dim` values.
    pub c: Region<'a>,
}

/// The label table's gradient from ∂L/∂c, scanning the labels in order (deterministic).
#[derive(Clone, Copy)]
pub struct LabelBackwardArgs<'a> {
    /// Hidden size D.
    pub dim: u32,
    /// Rows of the label table.
    pub table_rows: u32,
    /// Input: ∂L/∂c, one row per label row.
    pub dc: Region<'a>,
    /// Input: each row's labels.
    pub labels: Labels<'a>,
    /// Output: ∂L/∂table, `table_rows`·`dim` values.
    pub dtable: Region<'a>,
    /// Whether `dtable` is overwritten or added to.
    pub write: Write,
}

impl EmbedKernels {
    /// The embedding pipelines for `device`.
    pub fn new(device: &wgpu::Device) -> Result<Self> {
        Ok(Self {
            family: Family::new(device, "embed", &ENTRIES)?,
        })
    }

    /// x\[r·len + i\] = patch\[i\] + pos\[i mod period\] for r < repeats, i < len (len = B·N·D,
    /// period = N·D).
    pub fn record_tokens<'a>(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &TokensArgs<'a>,
    ) -> Result<()> {
        let TokensArgs {
            len,
            period,
            repeats,
            patch,
            pos,
            x,
        } = *args;
        if len == 0 || period == 0 || repeats == 0 || !len.is_multiple_of(period) {
            return Err(Error::Shape(format!(
                "tokens of {len} values with a position period of {period}, {repeats} repeats: \
                 sizes must be non-zero and the period divide the length"
            )));
        }
        let out = len as u64 * repeats as u64;
        if out > u32::MAX as u64 {
            return Err(Error::Shape("repeated tokens exceed 2^32 values".into()));
        }
        let p = EmbedParams {
            len,
            repeats,
            period,
            ..Default::default()
        };
        self.launch(
            device,
            encoder,
            "tokens_forward",
            p,
            len as u64,
            [
                Operand::buffer("src", patch, len as u64 * 4).called("patch"),
                Operand::buffer("table", pos, period as u64 * 4).called("pos"),
                Operand::unused("labels"),
                Operand::buffer("out", x, out * 4).called("x"),
            ],
        )
    }

    /// out\[i\] (+)= Σ_r x\[r·len + i\], r < repeats.
    pub fn record_fold_repeats<'a>(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &FoldArgs<'a>,
    ) -> Result<()> {
        let FoldArgs {
            len,
            repeats,
            x,
            out,
            write,
        } = *args;
        let accumulate = write == Write::Accumulate;
        if len == 0 || repeats == 0 || len as u64 * repeats as u64 > u32::MAX as u64 {
            return Err(Error::Shape(format!(
                "fold of {repeats} repeats of {len} values: sizes must be non-zero and fit 2^32"
            )));
        }
        let p = EmbedParams {
            len,
            repeats,
            accumulate: accumulate as u32,
            ..Default::default()
        };
        self.launch(
            device,
            encoder,
            "fold_repeats",
            p,
            len as u64,
            [
                Operand::buffer("src", x, len as u64 * repeats as u64 * 4).called("x"),
                Operand::unused("table"),
                Operand::unused("labels"),
                Operand::buffer("out", out, len as u64 * 4),
            ],
        )
    }

    /// c\[row\] = t_emb\[row mod batch\] + Σ_k table\[label\[row, k\]\] for `labels.rows` rows of
    /// `dim` values; `table_rows` rows in the table.
    pub fn record_condition<'a>(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &ConditionArgs<'a>,
    ) -> Result<()> {
        let ConditionArgs {
            batch,
            dim,
            table_rows,
            t_emb,
            table,
            labels,
            c,
        } = *args;
        self.check_labels(batch, dim, table_rows, &labels)?;
        let p = EmbedParams {
            rows: labels.rows,
            batch,
            dim,
            slots: labels.slots,
            table_rows,
            ..Default::default()
        };
        let rows = labels.rows as u64;
        self.launch(
            device,
            encoder,
            "condition_forward",
            p,
            rows * dim as u64,
            [
                Operand::buffer("src", t_emb, batch as u64 * dim as u64 * 4).called("t_emb"),
                Operand::buffer("table", table, table_rows as u64 * dim as u64 * 4),
                Operand::buffer("labels", labels.buffer, rows * labels.slots as u64 * 4),
                Operand::buffer("out", c, rows * dim as u64 * 4).called("c"),
            ],
        )
    }

    /// d(table) (+)= Σ of dc over the rows that carry each label (deterministic order).
    pub fn record_label_backward<'a>(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &LabelBackwardArgs<'a>,
    ) -> Result<()> {
        let LabelBackwardArgs {
            dim,
            table_rows,
            dc,
            labels,
            dtable,
            write,
        } = *args;
        let accumulate = write == Write::Accumulate;
        self.check_labels(1, dim, table_rows, &labels)?;
        let p = EmbedParams {
            rows: labels.rows,
            dim,
            slots: labels.slots,
            table_rows,
            accumulate: accumulate as u32,
            ..Default::default()
        };
        let rows = labels.rows as u64;
        self.launch(
            device,
            encoder,
            "label_backward",
            p,
            table_rows as u64 * dim as u64,
            [
                Operand::buffer("src", dc, rows * dim as u64 * 4).called("dc"),
                Operand::unused("table"),
                Operand::buffer("labels", labels.buffer, rows * labels.slots as u64 * 4),
                Operand::buffer("out", dtable, table_rows as u64 * dim as u64 * 4).called("dtable"),
            ],
        )
    }

    fn check_labels(&self, batch: u32, dim: u32, table_rows: u32, l: &Labels) -> Result<()> {
        if batch == 0 || dim == 0 || table_rows == 0 || l.rows == 0 || l.slots == 0 {
            return Err(Error::Shape(format!(
                "condition of {} rows × {dim} values, batch {batch}, {} label slots, {table_rows} \
                 table rows: every size must be non-zero",
                l.rows, l.slots
            )));
        }
        if l.rows as u64 * dim.max(l.slots) as u64 > u32::MAX as u64 {
            return Err(Error::Shape(
                "condition exceeds 2^32 values; split the batch".into(),
            ));
        }
        Ok(())
    }

    fn launch(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        entry: &'static str,
        params: EmbedParams,
        invocations: u64,
        operands: [Operand; 4],
    ) -> Result<()> {
        let uniform = |groups_x| EmbedParams { groups_x, ..params };
        let groups = invocations.div_ceil(64);
        self.family
            .launch(device, encoder, entry, groups, uniform, &operands)
    }
}
