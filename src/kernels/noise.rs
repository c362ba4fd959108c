//! Launchers of `shaders/noise.wgsl`: the fused forward process into patch tokens, normals,
//! raw Philox words, and label dropout.

use super::common::{self, Region};
use super::ImageGeometry;
use crate::{Error, Result};

/// Philox stream of the diffusion noise ε.
pub const STREAM_NOISE: u32 = 0;
/// Philox stream of the label-dropout draws.
pub const STREAM_LABEL_DROPOUT: u32 = 1;

/// How x_t is formed from x0, ε and the per-sample timestep.
#[derive(Clone, Copy, Debug)]
pub enum Schedule<'a> {
    /// DDPM: `table` holds (√ᾱ_t, √(1−ᾱ_t)) for t = 0..steps−1 (see
    /// [`DdpmSchedule::coefficients`](crate::diffusion::DdpmSchedule::coefficients)); timesteps
    /// are integers stored as f32.
    Ddpm {
        /// The (√ᾱ_t, √(1−ᾱ_t)) pairs, 2·`steps` f32.
        table: Region<'a>,
        /// The schedule's T.
        steps: u32,
    },
    /// Rectified flow: x_t = (1−t)·x0 + t·ε, t in [0, 1].
    Flow,
}

/// Arguments of [`NoiseKernels::record_noise_to_tokens`].
pub struct NoiseArgs<'a> {
    /// The image batch (B, C, H, W) and its patch size.
    pub geometry: ImageGeometry,
    /// The noise seed of the run (Philox's first key word).
    pub seed: u32,
    /// The step (Philox's second key word): each step draws fresh noise.
    pub step: u32,
    /// How x_t mixes x0 and ε.
    pub schedule: Schedule<'a>,
    /// Clean images (B, C, H, W), f32.
    pub x0: Region<'a>,
    /// One timestep per sample, f32. Out-of-range values give NaN tokens.
    pub timesteps: Region<'a>,
    /// Output: x_t as patch tokens (B, N, C·p·p), channel order (c, i, j).
    pub out_tokens: Region<'a>,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
pub(crate) struct NoiseParams {
    pub(crate) batch: u32,
    pub(crate) channels: u32,
    pub(crate) height: u32,
    pub(crate) width: u32,
    /// `patch` is a reserved word in WGSL.
    pub(crate) patch_size: u32,
    pub(crate) seed: u32,
    pub(crate) step: u32,
    pub(crate) schedule: u32,
    pub(crate) steps_in_table: u32,
    pub(crate) total: u32,
    pub(crate) groups_x: u32,
    pub(crate) drop_threshold: u32,
    pub(crate) null_label: u32,
    pub(crate) quad_base: u32,
    /// A quiet NaN's bits, which the shader returns for an out-of-range timestep (WGSL
    /// refuses a NaN constant, so the shader reads it at run time).
    pub(crate) nan_bits: u32,
    pub(crate) _pad: u32,
}

/// Compiled pipelines of the noise family for one device.
pub struct NoiseKernels {
    layout: crate::kernels::common::Layout,
    pipelines: common::Pipelines,
    unused_read: wgpu::Buffer,
    unused_f32: wgpu::Buffer,
    unused_u32: wgpu::Buffer,
    binder: common::Binder,
}

const WG: u64 = 64;

/// Raw Philox words of one stream (the generator's check).
#[derive(Clone, Copy)]
pub struct PhiloxWordsArgs<'a> {
    /// The Philox seed.
    pub seed: u32,
    /// The step.
    pub step: u32,
    /// The stream (0: noise, 1: label dropout, 2: timesteps).
    pub stream: u32,
    /// Words to write.
    pub count: u32,
    /// Output: `count` u32.
    pub out: Region<'a>,
}

/// Labels with each dropped to ∅ with probability `drop_prob` (Philox stream 1).
#[derive(Clone, Copy)]
pub struct LabelDropoutArgs<'a> {
    /// The Philox seed.
    pub seed: u32,
    /// The step.
    pub step: u32,
    /// Probability of replacing a label with the null label.
    pub drop_prob: f32,
    /// The null label's index (the number of labels).
    pub null_label: u32,
    /// Labels (one per sample).
    pub batch: u32,
    /// Input: the labels, u32.
    pub labels_in: Region<'a>,
    /// Output: the labels after dropout, u32.
    pub labels_out: Region<'a>,
}

/// A bound buffer and the bytes the launch uses, or an unused slot.
type Sized<'a> = Option<(Region<'a>, u64)>;

/// One dispatch of the family: the entry point, its parameters and workgroups, and what
/// it reads (slots 1, 2, 3 and 6) and writes (the f32 and u32 outputs).
struct Dispatch<'a> {
    entry: &'static str,
    params: NoiseParams,
    groups: u64,
    reads: [Sized<'a>; 4],
    out_f32: Sized<'a>,
    out_u32: Sized<'a>,
}

/// `count` standard normals of Philox stream 0 keyed by (seed, step), flat indices 0..count.
#[derive(Clone, Copy)]
pub struct NormalsArgs<'a> {
    /// The Philox seed.
    pub seed: u32,
    /// The step.
    pub step: u32,
    /// Normals to write.
    pub count: u32,
    /// Output: `count` f32.
    pub out: Region<'a>,
}

impl NoiseKernels {
    /// The noise pipelines for `device`.
    pub fn new(device: &wgpu::Device) -> Result<Self> {
        let layout = common::family_layout(device, "noise")?;
        let pipelines = common::Pipelines::new(
            device,
            "noise",
            &layout,
            &[
                "noise_to_tokens",
                "normals",
                "philox_words",
                "label_dropout",
            ],
        )?;
        Ok(Self {
            binder: Default::default(),
            pipelines,
            layout,
            unused_read: common::placeholder(device),
            unused_f32: common::placeholder(device),
            unused_u32: common::placeholder(device),
        })
    }

    /// Binds the seven slots, placeholders where `None`, and records one dispatch.
    fn dispatch(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        d: Dispatch,
    ) -> Result<()> {
        let Dispatch {
            entry,
            mut params,
            groups,
            reads,
            out_f32,
            out_u32,
        } = d;
        let (gx, gy) = common::grid(device, groups)?;
        params.groups_x = gx;
        let bg = self.binder.bind(
            device,
            &self.layout,
            &params,
            vec![
                (1, common::range_or(reads[0], &self.unused_read)),
                (2, common::range_or(reads[1], &self.unused_read)),
                (3, common::range_or(reads[2], &self.unused_read)),
                (4, common::range_or(out_f32, &self.unused_f32)),
                (5, common::range_or(out_u32, &self.unused_u32)),
                (6, common::range_or(reads[3], &self.unused_read)),
            ],
        )?;
        let pipeline = self.pipelines.get(entry);
        common::record_pass(encoder, "noise", &[(pipeline, &bg, (gx, gy))]);
        Ok(())
    }

    /// x_t = a·x0 + s·ε written straight into patch tokens; ε is regenerated, never stored.
    pub fn record_noise_to_tokens(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &NoiseArgs,
    ) -> Result<()> {
        self.record_noise_to_tokens_shard(device, encoder, args, 0)
    }

    /// [`Self::record_noise_to_tokens`] for one shard of a larger batch: `args` describe the
    /// shard (its B samples), which are samples `first_sample..first_sample + B` of a batch
    /// drawn with the same (seed, step). The tokens equal those rows of the whole batch's
    /// launch, bit for bit (data-parallel training gives each process such a shard).
    /// `first_sample`·C·H·W must be a multiple of 4 (shards start on a Philox quad).
    pub fn record_noise_to_tokens_shard(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &NoiseArgs,
        first_sample: u32,
    ) -> Result<()> {
        let g = args.geometry;
        g.validate()?;
        let quad_base = crate::kernels::shard_quad_base(g, first_sample)?;
        let n = g.elements();
        common::check_storage(device, "x0", args.x0, n * 4)?;
        common::check_storage(device, "out_tokens", args.out_tokens, n * 4)?;
        common::check_storage(device, "timesteps", args.timesteps, g.batch as u64 * 4)?;
        let (schedule, steps, table) = match args.schedule {
            Schedule::Ddpm { table, steps } => {
                if steps == 0 {
                    return Err(Error::Param(
                        "the DDPM table must have at least one step".into(),
                    ));
                }
                common::check_storage(device, "table", table, steps as u64 * 8)?;
                (0, steps, Some((table, steps as u64 * 8)))
            }
            Schedule::Flow => (1, 0, None),
        };
        let mut operands = vec![
            ("x0", args.x0, n * 4, false),
            ("timesteps", args.timesteps, g.batch as u64 * 4, false),
            ("out_tokens", args.out_tokens, n * 4, true),
        ];
        if let Some((table, bytes)) = table {
            operands.push(("table", table, bytes, false));
        }
        common::check_operands(&operands)?;
        let params = NoiseParams {
            batch: g.batch,
            channels: g.channels,
            height: g.height,
            width: g.width,
            patch_size: g.patch,
            seed: args.seed,
            step: args.step,
            schedule,
            steps_in_table: steps,
            total: n as u32,
            quad_base,
            nan_bits: f32::NAN.to_bits(),
            ..Default::default()
        };
        self.dispatch(
            device,
            encoder,
            Dispatch {
                entry: "noise_to_tokens",
                params,
                groups: n.div_ceil(4).div_ceil(WG),
                reads: [
                    Some((args.x0, n * 4)),
                    Some((args.timesteps, g.batch as u64 * 4)),
                    table,
                    None,
                ],
                out_f32: Some((args.out_tokens, n * 4)),
                out_u32: None,
            },
        )
    }

    /// ε for flat indices 0..count in (B, C, H, W) order (the same ε the fused kernels use).
    pub fn record_normals(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &NormalsArgs<'_>,
    ) -> Result<()> {
        let NormalsArgs {
            seed,
            step,
            count,
            out,
        } = *args;
        if count == 0 {
            return Err(Error::Shape("normals: count must be at least 1".into()));
        }
        common::check_storage(device, "out", out, count as u64 * 4)?;
        let params = NoiseParams {
            seed,
            step,
            total: count,
            ..Default::default()
        };
        self.dispatch(
            device,
            encoder,
            Dispatch {
                entry: "normals",
                params,
                groups: (count as u64).div_ceil(4).div_ceil(WG),
                reads: [None; 4],
                out_f32: Some((out, count as u64 * 4)),
                out_u32: None,
            },
        )
    }

    /// The four Philox4x32-10 words for counters (i, stream, 0, 0), i in 0..count, key
    /// (seed, step), into `out` (4·count u32).
    pub fn record_philox_words(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &PhiloxWordsArgs<'_>,
    ) -> Result<()> {
        let PhiloxWordsArgs {
            seed,
            step,
            stream,
            count,
            out,
        } = *args;
        if count == 0 || count > u32::MAX / 4 {
            return Err(Error::Shape(format!(
                "philox_words: count {count} must be in 1..2^30"
            )));
        }
        common::check_storage(device, "out", out, count as u64 * 16)?;
        let params = NoiseParams {
            seed,
            step,
            channels: stream,
            total: count,
            ..Default::default()
        };
        self.dispatch(
            device,
            encoder,
            Dispatch {
                entry: "philox_words",
                params,
                groups: (count as u64).div_ceil(WG),
                reads: [None; 4],
                out_f32: None,
                out_u32: Some((out, count as u64 * 16)),
            },
        )
    }

    /// Label dropout for classifier-free guidance: `labels_out[b]` is `null_label` with
    /// probability `drop_prob` (Philox stream 1, counter b), else `labels_in[b]`.
    pub fn record_label_dropout(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &LabelDropoutArgs<'_>,
    ) -> Result<()> {
        let LabelDropoutArgs {
            seed,
            step,
            drop_prob,
            null_label,
            batch,
            labels_in,
            labels_out,
        } = *args;
        if batch == 0 {
            return Err(Error::Shape(
                "label_dropout: batch must be at least 1".into(),
            ));
        }
        if !(0.0..=1.0).contains(&drop_prob) {
            return Err(Error::Param(format!(
                "label dropout probability must be in [0, 1], got {drop_prob}"
            )));
        }
        let bytes = batch as u64 * 4;
        common::check_storage(device, "labels_in", labels_in, bytes)?;
        common::check_storage(device, "labels_out", labels_out, bytes)?;
        common::check_operands(&[
            ("labels_in", labels_in, bytes, false),
            ("labels_out", labels_out, bytes, true),
        ])?;
        let params = NoiseParams {
            batch,
            seed,
            step,
            drop_threshold: dropout_threshold(drop_prob),
            null_label,
            ..Default::default()
        };
        self.dispatch(
            device,
            encoder,
            Dispatch {
                entry: "label_dropout",
                params,
                groups: (batch as u64).div_ceil(WG),
                reads: [None, None, None, Some((labels_in, bytes))],
                out_f32: None,
                out_u32: Some((labels_out, bytes)),
            },
        )
    }
}

/// The 24-bit threshold t with P(word >> 8 < t) = drop_prob (exact for multiples of 2^-24).
pub fn dropout_threshold(drop_prob: f32) -> u32 {
    ((drop_prob as f64) * (1u64 << 24) as f64).round() as u32
}
