//! Launchers of `shaders/noise.wgsl`: the fused forward process into patch tokens, normals,
//! raw Philox words, and label dropout.

use super::common::{Family, Operand, Region};
use super::step_values::{PerStep, StepValues};
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
    /// The batch's first sample within a larger batch drawn with the same (seed, step): 0
    /// for a whole batch; for a shard (data-parallel training gives each process one), its
    /// B samples are samples `first_sample..first_sample + B` of that batch and their
    /// tokens equal those rows of the whole batch's launch, bit for bit.
    /// `first_sample`·C·H·W must be a multiple of 4 (shards start on a Philox quad).
    pub first_sample: u32,
    /// A uniform holding this step's [`StepValues`] (its `step` equal to `step`), written
    /// once per step by a trainer, or `None` (a launch then makes one from `step`).
    pub step_values: Option<&'a wgpu::Buffer>,
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
    pub(crate) _pad1: u32,
    pub(crate) _pad: u32,
}

/// Compiled pipelines of the noise family for one device.
pub struct NoiseKernels {
    family: Family,
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
        let entries = [
            "noise_to_tokens",
            "normals",
            "philox_words",
            "label_dropout",
        ];
        Ok(Self {
            family: Family::new(device, "noise", &entries)?,
        })
    }

    /// One dispatch of `entry` over `groups` workgroups with `params` and `operands`.
    fn launch(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        entry: &str,
        params: NoiseParams,
        groups: u64,
        operands: &[Operand],
    ) -> Result<()> {
        let uniform = |groups_x| NoiseParams { groups_x, ..params };
        self.family
            .launch(device, encoder, entry, groups, uniform, operands)
    }

    /// x_t = a·x0 + s·ε written straight into patch tokens; ε is regenerated, never stored.
    /// `args.first_sample` places a shard of a larger batch (see [`NoiseArgs`]).
    pub fn record_noise_to_tokens(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &NoiseArgs,
    ) -> Result<()> {
        let g = args.geometry;
        g.validate()?;
        let quad_base = crate::kernels::shard_quad_base(g, args.first_sample)?;
        let n = g.elements();
        let (schedule, steps, table) = match args.schedule {
            Schedule::Ddpm { table, steps } => {
                if steps == 0 {
                    return Err(Error::Param(
                        "the DDPM table must have at least one step".into(),
                    ));
                }
                (0, steps, Some((table, steps as u64 * 8)))
            }
            Schedule::Flow => (1, 0, None),
        };
        let params = NoiseParams {
            batch: g.batch,
            channels: g.channels,
            height: g.height,
            width: g.width,
            patch_size: g.patch,
            seed: args.seed,
            schedule,
            steps_in_table: steps,
            total: n as u32,
            quad_base,
            nan_bits: f32::NAN.to_bits(),
            ..Default::default()
        };
        let operands = [
            Operand::buffer("x0", args.x0, n * 4),
            Operand::buffer("out_f32", args.out_tokens, n * 4).called("out_tokens"),
            Operand::buffer("timesteps", args.timesteps, g.batch as u64 * 4),
            Operand::maybe("ddpm_table", table).called("table"),
            Operand::step(
                "S",
                PerStep::or_values(args.step_values, StepValues::philox(args.step)),
            ),
        ];
        let groups = n.div_ceil(4).div_ceil(WG);
        self.launch(
            device,
            encoder,
            "noise_to_tokens",
            params,
            groups,
            &operands,
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
        let params = NoiseParams {
            seed,
            total: count,
            ..Default::default()
        };
        let groups = (count as u64).div_ceil(4).div_ceil(WG);
        let operands = [
            Operand::buffer("out_f32", out, count as u64 * 4).called("out"),
            Operand::step("S", PerStep::Values(StepValues::philox(step))),
        ];
        self.launch(device, encoder, "normals", params, groups, &operands)
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
        let params = NoiseParams {
            seed,
            channels: stream,
            total: count,
            ..Default::default()
        };
        let groups = (count as u64).div_ceil(WG);
        let operands = [
            Operand::buffer("out_u32", out, count as u64 * 16).called("out"),
            Operand::step("S", PerStep::Values(StepValues::philox(step))),
        ];
        self.launch(device, encoder, "philox_words", params, groups, &operands)
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
        let params = NoiseParams {
            batch,
            seed,
            drop_threshold: dropout_threshold(drop_prob),
            null_label,
            ..Default::default()
        };
        let operands = [
            Operand::buffer("labels_in", labels_in, bytes),
            Operand::buffer("out_u32", labels_out, bytes).called("labels_out"),
            Operand::step("S", PerStep::Values(StepValues::philox(step))),
        ];
        let groups = (batch as u64).div_ceil(WG);
        self.launch(device, encoder, "label_dropout", params, groups, &operands)
    }
}

/// The 24-bit threshold t with P(word >> 8 < t) = drop_prob (exact for multiples of 2^-24).
pub fn dropout_threshold(drop_prob: f32) -> u32 {
    ((drop_prob as f64) * (1u64 << 24) as f64).round() as u32
}
