//! Launcher of `shaders/adaln.wgsl`: LayerNorm + adaLN modulation, the gated residual, and
//! per-segment column sums (bias, shift, scale and gate gradients), forward and backward.

use super::common::{self, Family, Region, Write};
use super::linear_texture::LinearTextures;
use super::Paths;
use crate::{Error, Result};

/// DiT's LayerNorm epsilon.
pub const LN_EPS: f64 = 1e-6;

mod other_paths;
mod types;
use other_paths::{TexturePath, WorkgroupPath};

pub use types::*;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
pub(crate) struct AdaParams {
    pub(crate) rows: u32,
    pub(crate) dim: u32,
    pub(crate) tokens: u32,
    pub(crate) mod_stride: u32,
    pub(crate) shift_col: u32,
    pub(crate) scale_col: u32,
    pub(crate) gate_col: u32,
    pub(crate) accumulate: u32,
    pub(crate) groups_x: u32,
    pub(crate) eps: f32,
    pub(crate) a_stride: u32,
    pub(crate) a_col: u32,
    pub(crate) b_stride: u32,
    pub(crate) b_col: u32,
    pub(crate) out_stride: u32,
    pub(crate) out_col: u32,
    pub(crate) use_b: u32,
    pub(crate) segments: u32,
    pub(crate) chunk_rows: u32,
    pub(crate) chunks: u32,
}

const ENTRIES: [&str; 5] = [
    "ln_modulate_forward",
    "ln_modulate_backward",
    "gated_residual_forward",
    "gated_residual_backward",
    "segment_sums",
];

/// The workgroup path's entry points: the two LayerNorms one row per workgroup, and the
/// two passes of chunked column sums.
const WG_ENTRIES: [&str; 4] = [
    "ln_modulate_forward_wg",
    "ln_modulate_backward_wg",
    "segment_partials",
    "segment_combine",
];

/// Column sums with fewer (segment, column) pairs than this, and at least
/// [`CHUNKED_MIN_ROWS`] rows per segment, go in two passes on the workgroup path: one
/// invocation per pair would leave most of a GPU idle while each loops over every row.
const CHUNKED_BELOW: u64 = 1 << 16;
const CHUNKED_MIN_ROWS: u32 = 64;

/// The texture path's entry points (`ENTRIES` 0, 1, 4 reading textures).
const TEX_ENTRIES: [&str; 3] = [
    "ln_modulate_forward_tex",
    "ln_modulate_backward_tex",
    "segment_sums_tex",
];

/// Which kernels a launch runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdaLnPath {
    /// Storage-buffer operands (every device).
    Portable,
    /// Operands copied into read-only storage textures (CPU adapters, i.e. llvmpipe).
    Texture,
    /// Hardware GPUs: a workgroup per LayerNorm row (coalesced loads, a fixed-order
    /// reduction in workgroup memory) and column sums over many rows in two passes.
    Workgroup,
}

/// Compiled adaLN pipelines for one device.
pub struct AdaLnKernels {
    /// `ENTRIES`, and `WG_ENTRIES` on the workgroup path.
    family: Family,
    texture: Option<TexturePath>,
    workgroup: Option<WorkgroupPath>,
}

impl AdaLnKernels {
    /// The kernels of [`Paths::choose`] for `device`.
    pub fn new(device: &wgpu::Device) -> Result<Self> {
        Self::with_paths(device, Paths::choose(device)?)
    }

    /// The kernels of `paths`: the texture path for [`Paths::Texture`] on CPU adapters, the
    /// workgroup path for [`Paths::Tiled`], the portable kernels otherwise.
    pub fn with_paths(device: &wgpu::Device, paths: Paths) -> Result<Self> {
        let mut entries = ENTRIES.to_vec();
        if paths == Paths::Tiled {
            entries.extend(WG_ENTRIES);
        }
        let family = Family::new(device, "adaln", &entries)?;
        let texture = if paths == Paths::Texture && Self::texture_path_supported(device) {
            Some(TexturePath {
                family: Family::new(device, "adaln", &TEX_ENTRIES)?,
                textures: LinearTextures::default(),
            })
        } else {
            None
        };
        // The workgroup path's column sums keep a scratch buffer.
        let workgroup = (paths == Paths::Tiled).then(WorkgroupPath::default);
        Ok(Self {
            family,
            texture,
            workgroup,
        })
    }

    /// Whether `device` gets the texture path: CPU adapters (llvmpipe), where storage-buffer
    /// loads are slow and storage-texture loads are not.
    pub fn texture_path_supported(device: &wgpu::Device) -> bool {
        device.adapter_info().device_type == wgpu::DeviceType::Cpu
    }

    /// Turns the texture and workgroup paths off (`false`), e.g. to test or time the
    /// portable kernels.
    pub fn with_texture_path(mut self, enabled: bool) -> Self {
        if !enabled {
            self.texture = None;
            self.workgroup = None;
        }
        self
    }

    /// The path of a LayerNorm launch (forward or backward) over `s` with `modulation`: the
    /// texture path needs dim and the modulation's row stride and columns to be multiples of
    /// 4, and operand buffers with COPY_SRC usage (checked at launch; without it the launch
    /// runs the portable kernel).
    pub fn ln_path(&self, s: Stream, modulation: &Modulation) -> AdaLnPath {
        if self.workgroup.is_some() {
            return AdaLnPath::Workgroup;
        }
        let aligned = [s.dim, modulation.stride, modulation.shift, modulation.scale]
            .iter()
            .all(|v| v.is_multiple_of(4));
        if self.texture.is_some() && aligned {
            AdaLnPath::Texture
        } else {
            AdaLnPath::Portable
        }
    }

    /// The path of a segment-sums launch: as [`Self::ln_path`], with dim and A's and B's
    /// row strides and first columns multiples of 4.
    pub fn segment_sums_path(&self, dim: u32, a: &Columns, b: Option<&Columns>) -> AdaLnPath {
        if self.workgroup.is_some() {
            return AdaLnPath::Workgroup;
        }
        let mut v = vec![dim, a.stride, a.col];
        if let Some(b) = b {
            v.extend([b.stride, b.col]);
        }
        if self.texture.is_some() && v.iter().all(|v| v.is_multiple_of(4)) {
            AdaLnPath::Texture
        } else {
            AdaLnPath::Portable
        }
    }

    /// h = LN(x)·(1 + scale) + shift; saves x̂ (rows × dim) and 1/σ (rows) for the backward.
    pub fn record_ln_modulate<'a>(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &LnModulateArgs<'a>,
    ) -> Result<()> {
        let LnModulateArgs {
            stream: s,
            x,
            modulation,
            h,
            xhat,
            rstd,
        } = *args;
        s.validate()?;
        let p = self.mod_params(s, &modulation, false)?;
        let launch = Launch {
            entry: "ln_modulate_forward",
            params: p,
            invocations: s.rows as u64,
            reads: [Some(("x", x, s.bytes())), modulated(s, &modulation), None],
            writes: [
                Some(("h", h, s.bytes())),
                Some(("xhat", xhat, s.bytes())),
                Some(("rstd", rstd, s.rows as u64 * 4)),
            ],
        };
        self.record_ln(device, encoder, s, &modulation, launch)
    }

    /// dx = ∂/∂x of `record_ln_modulate` given dh (or dx += … with `accumulate`, as for the
    /// residual stream). d(shift) and d(scale) come from [`Self::record_segment_sums`].
    pub fn record_ln_modulate_backward<'a>(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &LnModulateBackwardArgs<'a>,
    ) -> Result<()> {
        let LnModulateBackwardArgs {
            stream: s,
            xhat,
            rstd,
            modulation,
            dh,
            dx,
            write,
        } = *args;
        let accumulate = write == Write::Accumulate;
        s.validate()?;
        let p = self.mod_params(s, &modulation, accumulate)?;
        let launch = Launch {
            entry: "ln_modulate_backward",
            params: p,
            invocations: s.rows as u64,
            reads: [
                Some(("xhat", xhat, s.bytes())),
                modulated(s, &modulation),
                Some(("dh", dh, s.bytes())),
            ],
            writes: [
                Some(("dx", dx, s.bytes())),
                None,
                Some(("rstd", rstd, s.rows as u64 * 4)),
            ],
        };
        self.record_ln(device, encoder, s, &modulation, launch)
    }

    /// Records a LayerNorm launch on the device's path: textures where the path and the
    /// operands allow, else a workgroup or an invocation per row.
    fn record_ln(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        s: Stream,
        modulation: &Modulation,
        launch: Launch,
    ) -> Result<()> {
        if self.ln_path(s, modulation) == AdaLnPath::Texture
            && self.launch_texture(device, encoder, &launch)?
        {
            return Ok(());
        }
        self.launch(device, encoder, self.ln_launch(launch))
    }

    /// x += gate ⊙ a.
    pub fn record_gated_residual<'a>(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &GatedResidualArgs<'a>,
    ) -> Result<()> {
        let GatedResidualArgs {
            stream: s,
            a,
            modulation,
            x,
        } = *args;
        s.validate()?;
        let p = self.mod_params(s, &modulation, false)?;
        let input = ("a", a, s.bytes());
        let launch = gated(
            "gated_residual_forward",
            p,
            s,
            &modulation,
            input,
            ("x", x, s.bytes()),
        );
        self.launch(device, encoder, launch)
    }

    /// da = gate ⊙ dx (or da += …). d(gate) comes from [`Self::record_segment_sums`].
    pub fn record_gated_residual_backward<'a>(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &GatedResidualBackwardArgs<'a>,
    ) -> Result<()> {
        let GatedResidualBackwardArgs {
            stream: s,
            dx,
            modulation,
            da,
            write,
        } = *args;
        let accumulate = write == Write::Accumulate;
        s.validate()?;
        let p = self.mod_params(s, &modulation, accumulate)?;
        let input = ("dx", dx, s.bytes());
        let launch = gated(
            "gated_residual_backward",
            p,
            s,
            &modulation,
            input,
            ("da", da, s.bytes()),
        );
        self.launch(device, encoder, launch)
    }

    /// out[s, :dim] (+)= Σ over the `rows_per_segment` rows of segment s of A (⊙ B), for
    /// `segments` segments. Bias gradient: one segment of all rows. adaLN gradients: one
    /// segment per sample.
    pub fn record_segment_sums<'a>(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &SegmentSumsArgs<'a>,
    ) -> Result<()> {
        let SegmentSumsArgs {
            segments,
            rows_per_segment,
            dim,
            a,
            b,
            out,
            write,
        } = *args;
        let accumulate = write == Write::Accumulate;
        let rows = segments as u64 * rows_per_segment as u64;
        if rows == 0 || dim == 0 {
            return Err(Error::Shape(
                "segment sums over zero rows or columns".into(),
            ));
        }
        for (name, c) in [("a", Some(&a)), ("b", b.as_ref()), ("out", Some(&out))] {
            if let Some(c) = c {
                if c.col + dim > c.stride {
                    return Err(Error::Shape(format!(
                        "`{name}`: columns {}..{} exceed its row of {} values",
                        c.col,
                        c.col + dim,
                        c.stride
                    )));
                }
            }
        }
        let bytes = |c: &Columns, rows: u64| rows * c.stride as u64 * 4;
        let p = AdaParams {
            rows: rows as u32,
            dim,
            tokens: rows_per_segment,
            accumulate: accumulate as u32,
            a_stride: a.stride,
            a_col: a.col,
            b_stride: b.map_or(0, |b| b.stride),
            b_col: b.map_or(0, |b| b.col),
            out_stride: out.stride,
            out_col: out.col,
            use_b: b.is_some() as u32,
            segments,
            ..Default::default()
        };
        let reads = [
            Some(("a", a.region, bytes(&a, rows))),
            None,
            b.map(|b| ("b", b.region, bytes(&b, rows))),
        ];
        let writes = [
            Some(("out", out.region, bytes(&out, segments as u64))),
            None,
            None,
        ];
        let launch = Launch {
            entry: "segment_sums",
            params: p,
            invocations: segments as u64 * dim as u64,
            reads,
            writes,
        };
        if self.segment_sums_path(dim, &a, b.as_ref()) == AdaLnPath::Texture
            && self.launch_texture(
                device,
                encoder,
                &Launch {
                    // A texture invocation sums four columns.
                    invocations: launch.invocations / 4,
                    ..launch
                },
            )?
        {
            return Ok(());
        }
        if self.workgroup.is_some()
            && (segments as u64 * dim as u64) < CHUNKED_BELOW
            && rows_per_segment >= CHUNKED_MIN_ROWS
        {
            return self.chunked_sums(device, encoder, p, reads, writes[0]);
        }
        self.launch(device, encoder, launch)
    }

    fn mod_params(&self, s: Stream, m: &Modulation, accumulate: bool) -> Result<AdaParams> {
        for (name, col) in [("shift", m.shift), ("scale", m.scale), ("gate", m.gate)] {
            if col + s.dim > m.stride {
                return Err(Error::Shape(format!(
                    "modulation `{name}` columns {col}..{} exceed its row of {} values",
                    col + s.dim,
                    m.stride
                )));
            }
        }
        Ok(AdaParams {
            rows: s.rows,
            dim: s.dim,
            tokens: s.tokens,
            mod_stride: m.stride,
            shift_col: m.shift,
            scale_col: m.scale,
            gate_col: m.gate,
            accumulate: accumulate as u32,
            eps: LN_EPS as f32,
            ..Default::default()
        })
    }

    /// A LayerNorm launch (an invocation per row) as the device's path runs it: on the
    /// workgroup path, the `_wg` entry with a workgroup of 64 per row.
    fn ln_launch<'a>(&self, launch: Launch<'a>) -> Launch<'a> {
        match &self.workgroup {
            Some(_) => Launch {
                entry: variant(&WG_ENTRIES, launch.entry, "_wg"),
                invocations: launch.invocations * 64,
                ..launch
            },
            None => launch,
        }
    }

    /// Records `launch` on the storage-buffer paths.
    fn launch(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        launch: Launch,
    ) -> Result<()> {
        let Launch {
            entry,
            params,
            invocations,
            reads,
            writes,
        } = launch;
        let operands = named(&READS, reads).chain(named(&WRITES, writes));
        let operands: Vec<_> = operands.collect();
        let uniform = |groups_x| AdaParams { groups_x, ..params };
        let groups = invocations.div_ceil(64);
        self.family
            .launch(device, encoder, entry, groups, uniform, &operands)
    }
}

/// The shader's variables of a launch's three read roles and three written ones.
const READS: [&str; 3] = ["input", "modv", "aux"];
const WRITES: [&str; 3] = ["out", "xhat", "rstd"];

/// The given operands of `roles` bound at the shader's variables `vars`, named as the
/// caller named them.
fn named<'a>(
    vars: &'static [&'static str; 3],
    roles: [Operand<'a>; 3],
) -> impl Iterator<Item = common::Operand<'a>> {
    vars.iter().zip(roles).filter_map(|(&var, role)| {
        role.map(|(name, region, bytes)| common::Operand::buffer(var, region, bytes).called(name))
    })
}

type Operand<'a> = Option<(&'static str, Region<'a>, u64)>;

/// One launch of the family: a portable entry point (the path picks its variant), its
/// parameters and invocations, and the operands it reads (bindings 1–3) and writes (4–6).
#[derive(Clone, Copy)]
struct Launch<'a> {
    entry: &'static str,
    params: AdaParams,
    invocations: u64,
    reads: [Operand<'a>; 3],
    writes: [Operand<'a>; 3],
}

/// The entry of `list` that is `entry` with `suffix`: a path's variant of a portable entry.
fn variant(list: &[&'static str], entry: &str, suffix: &str) -> &'static str {
    list.iter()
        .copied()
        .find(|e| e.strip_suffix(suffix) == Some(entry))
        .expect("every path variant is named after its portable entry point")
}

fn mod_bytes(s: Stream, m: &Modulation) -> u64 {
    s.samples() as u64 * m.stride as u64 * 4
}

/// The modulation as a launch's operand.
fn modulated<'a>(s: Stream, m: &Modulation<'a>) -> Operand<'a> {
    Some(("modulation", m.region, mod_bytes(s, m)))
}

/// A gated residual's launch (either direction): an invocation per value of the stream
/// `s`, reading `input` and the gate, writing `output`.
fn gated<'a>(
    entry: &'static str,
    params: AdaParams,
    s: Stream,
    m: &Modulation<'a>,
    input: (&'static str, Region<'a>, u64),
    output: (&'static str, Region<'a>, u64),
) -> Launch<'a> {
    Launch {
        entry,
        params,
        invocations: s.rows as u64 * s.dim as u64,
        reads: [Some(input), modulated(s, m), None],
        writes: [Some(output), None, None],
    }
}
