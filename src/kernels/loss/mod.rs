//! Launchers of `shaders/loss.wgsl`: the fused IMBA loss (docs/design.md#the-imba-loss) and the baseline MSE.
//!
//! The default IMBA variant (token-wise D, no normalisation) is one pass over the
//! predictions plus a one-workgroup finalisation. The sample-wise and batch-normalised
//! variants need D of other tokens before any gradient can be written, so they first run a
//! weight pass (and a per-sample mean and/or a batch sum), then the same fused pass reading D.

use super::common::{self, Family, Operand};
use super::step_values::{PerStep, StepValues};
use super::{ImageGeometry, Region, TokenShape};
use crate::{Error, Result};

mod fused_path;
mod time_norm;
mod types;

pub use fused_path::FusedPath;
use fused_path::{fused_groups, groups, tokens_per_thread};

#[cfg(test)]
pub(crate) use time_norm::TimeNormParams;
pub use time_norm::{
    time_bucket, validate as validate_time_buckets, ShardSum, TimeBuckets, MAX_TIME_BUCKETS,
};
pub use types::*;

const WG: u64 = 64;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
pub(crate) struct LossParams {
    pub(crate) batch: u32,
    pub(crate) tokens: u32,
    pub(crate) token_dim: u32,
    pub(crate) target_source: u32,
    pub(crate) channels: u32,
    pub(crate) height: u32,
    pub(crate) width: u32,
    /// `patch` is a reserved word in WGSL.
    pub(crate) patch_size: u32,
    pub(crate) seed: u32,
    pub(crate) target_kind: u32,
    pub(crate) d_form: u32,
    pub(crate) weights_from_buffer: u32,
    pub(crate) normalize: u32,
    pub(crate) groups_x: u32,
    pub(crate) partial_count: u32,
    pub(crate) gamma: f32,
    pub(crate) lambda: f32,
    pub(crate) inv_count: f32,
    pub(crate) tokens_per_thread: u32,
    pub(crate) quad_base: u32,
    pub(crate) _pad: [u32; 4],
}

pub(crate) mod wgsl;
use wgsl::*;

/// Compiled pipelines of the loss family for one device.
///
/// The fused IMBA pass has two implementations with the same results up to summation order:
/// the portable `imba_fused` (loss.wgsl), which takes any shape, and `imba_fused_vec4`
/// (loss_vec4.wgsl), specialised by pipeline constants for one patch geometry and using vec4
/// memory access, which is used when the shape allows it (see [`LossKernels::fused_path`]).
/// Its pipelines are compiled on first use per geometry and kept.
pub struct LossKernels {
    family: Family,
    vector_path: bool,
    time_norm: time_norm::TimeNormKernel,
}

/// Buffers of one launch (the workspace's partials besides), with the bytes bound; `None`
/// where the launch does not use the binding.
struct Bindings<'a> {
    pred_cond: (Region<'a>, u64),
    pred_uncond: Option<(Region<'a>, u64)>,
    /// The explicit target or the velocity target's x0: a launch has at most one.
    target_data: Option<(Region<'a>, u64)>,
    weights: Option<(Region<'a>, u64)>,
    grad_cond: Option<(Region<'a>, u64)>,
    grad_uncond: Option<(Region<'a>, u64)>,
    scalars: Option<(Region<'a>, u64)>,
    /// The Philox step of a regenerated target.
    per_step: PerStep<'a>,
}

impl LossKernels {
    /// The loss pipelines for `device`; the vector path's specialisations are made on first use.
    pub fn new(device: &wgpu::Device) -> Result<Self> {
        let entries = [
            "imba_token_weights",
            "imba_sample_mean",
            "weights_total",
            "imba_fused",
            "mse_fused",
            "loss_finalize",
        ];
        Ok(Self {
            family: Family::with_variant(
                device,
                "loss",
                &entries,
                "loss_vec4",
                &["imba_fused_vec4"],
            )?,
            vector_path: true,
            time_norm: time_norm::TimeNormKernel::new(device)?,
        })
    }

    /// Scratch for launches of `shape` (create once per shape and reuse).
    pub fn workspace(&self, device: &wgpu::Device, shape: TokenShape) -> Result<LossWorkspace> {
        LossWorkspace::new(device, shape)
    }

    /// Records the fused IMBA loss: D, ∂L/∂ε_c, ∂L/∂ε_u and the scalars [L, L_c, L_u, mean D].
    /// [`Normalize::TBucket`] keeps state across steps: launch it with
    /// [`Self::record_imba_time_normalized`].
    pub fn record_imba(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &ImbaLossArgs,
        imba: &ImbaParams,
    ) -> Result<()> {
        if imba.normalize == Normalize::TBucket {
            return Err(Error::Param(
                "the time-bucket normalisation keeps running means across steps; launch it \
                 with record_imba_time_normalized and a TimeBuckets state"
                    .into(),
            ));
        }
        self.record_imba_with(device, encoder, args, imba, WeightSource::Computed(None))
    }

    /// [`Self::record_imba`] with D divided by its running mean within each sample's timestep
    /// bucket (`imba.normalize` must be [`Normalize::TBucket`]): the weight pass, then the
    /// update of `time`'s state and the division, then the fused pass reading D. The
    /// scalars' mean D is the mean of the normalised D.
    ///
    /// `across` is `None` for a whole batch. For one shard of a batch split over processes
    /// (data-parallel training) it is the caller's hook that adds the per-bucket sums up over
    /// every shard between the sums and the update, so each process's running means follow
    /// the whole batch and stay identical (see [`ShardSum`]).
    pub fn record_imba_time_normalized(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &ImbaLossArgs,
        imba: &ImbaParams,
        time: &TimeBuckets,
        across: Option<&mut dyn ShardSum>,
    ) -> Result<()> {
        if imba.normalize != Normalize::TBucket {
            return Err(Error::Param(format!(
                "record_imba_time_normalized needs normalize = t-bucket, got {:?}; use \
                 record_imba for the other variants",
                imba.normalize
            )));
        }
        let time = Some((time, across));
        self.record_imba_with(device, encoder, args, imba, WeightSource::Computed(time))
    }

    /// Records the dual loss with the caller's per-token weights W (B, N) in `args.weights`,
    /// which the launch reads and leaves as they are:
    /// L = λ·mean(W·(ε_c − ε)²) + (1−λ)·mean((ε_u − ε)²), both gradients and the scalars
    /// [L, L_c, L_u, mean W]. What weights a host computes run with: explicit class weights,
    /// or any rule that is not IMBA's D. The weights should be finite and ≥ 0 (a non-finite
    /// weight makes the loss non-finite, which a trainer reports).
    pub fn record_weighted(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &ImbaLossArgs,
        lambda: f32,
    ) -> Result<()> {
        let imba = ImbaParams {
            lambda,
            ..ImbaParams::default()
        };
        self.record_imba_with(device, encoder, args, &imba, WeightSource::Given)
    }

    fn record_imba_with(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &ImbaLossArgs,
        imba: &ImbaParams,
        source: WeightSource,
    ) -> Result<()> {
        let (given, time) = match source {
            WeightSource::Given => (true, None),
            WeightSource::Computed(time) => (false, time),
        };
        imba.validate()?;
        let s = args.shape;
        let mut params = self.base_params(device, s, &args.target, args.workspace)?;
        let (nk, bn) = (s.elements() * 4, s.rows() * 4);
        // Checked by the arguments' own names (the bindings' check would name the shader's
        // variables, e.g. `target_data`) before any pass is recorded.
        let mut operands = vec![
            ("pred_cond", args.pred_cond, nk, false),
            ("pred_uncond", args.pred_uncond, nk, false),
            ("weights", args.weights, bn, !given),
            ("grad_cond", args.grad_cond, nk, true),
            ("grad_uncond", args.grad_uncond, nk, true),
            ("scalars", args.scalars, 16, true),
        ];
        if let Some((region, bytes)) = target_data(&args.target, nk) {
            operands.push(("target", region, bytes, false));
        }
        common::check_launch(device, &operands)?;
        if let Some((t, _)) = &time {
            // The time operands are bound in passes of their own between the weight pass and
            // the fused one, where D is written.
            t.validate()?;
            let mut passes = vec![
                ("state", t.state, t.buckets as u64 * 8, true),
                ("sample_bucket", t.sample_bucket, s.batch as u64 * 4, false),
            ];
            common::check_launch(device, &passes)?;
            passes.extend(
                operands
                    .iter()
                    .map(|&(n, r, b, w)| (n, r, b, w || n == "weights")),
            );
            common::check_overlaps(&passes)?;
        }
        params.gamma = imba.gamma;
        params.lambda = imba.lambda;
        params.d_form = match imba.form {
            DForm::MeanAbsPow => D_FORM_MEAN_ABS_POW,
            DForm::PowOfRms => D_FORM_POW_OF_RMS,
            DForm::PowOfMse => D_FORM_POW_OF_MSE,
        };
        params.normalize = (imba.normalize == Normalize::BatchMean) as u32;
        params.weights_from_buffer = (given || imba.needs_weight_pass()) as u32;
        let b = Bindings {
            pred_cond: (args.pred_cond, nk),
            pred_uncond: Some((args.pred_uncond, nk)),
            target_data: target_data(&args.target, nk),
            weights: Some((args.weights, bn)),
            grad_cond: Some((args.grad_cond, nk)),
            grad_uncond: Some((args.grad_uncond, nk)),
            scalars: Some((args.scalars, 16)),
            per_step: per_step(&args.target),
        };
        let (fused, run, partial_count) = self.fused_pipeline(
            device,
            s,
            &args.target,
            args.workspace,
            params.tokens_per_thread,
        )?;
        params.tokens_per_thread = run;
        params.partial_count = partial_count as u32;
        let mut steps: Vec<(&wgpu::ComputePipeline, u64)> = Vec::new();
        let token_groups = groups(s);
        if !given && imba.needs_weight_pass() {
            steps.push((self.family.pipeline("imba_token_weights"), token_groups));
            if imba.granularity == Granularity::Sample {
                steps.push((self.family.pipeline("imba_sample_mean"), s.batch as u64));
            }
            if imba.normalize == Normalize::BatchMean {
                steps.push((self.family.pipeline("weights_total"), 1));
            }
        }
        if let Some((t, across)) = time {
            // The division needs the whole batch's D: a pass of its own between the two.
            self.run(device, encoder, params, &b, args.workspace, &steps)?;
            let norm = time_norm::TimeNormArgs {
                shape: s,
                weights: args.weights,
                time: t,
                sums: &args.workspace.bucket_sums,
            };
            self.time_norm.record(device, encoder, &norm, across)?;
            steps.clear();
        }
        steps.push((&fused, fused_groups(s, run)));
        steps.push((self.family.pipeline("loss_finalize"), 1));
        self.run(device, encoder, params, &b, args.workspace, &steps)
    }

    /// Records the baseline loss L = mean (pred − target)² with its gradient; scalars
    /// [L, L, 0, 1]. Label dropout happens before the model
    /// ([`NoiseKernels::record_label_dropout`](super::NoiseKernels::record_label_dropout)).
    pub fn record_mse(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &MseLossArgs,
    ) -> Result<()> {
        let s = args.shape;
        let mut params = self.base_params(device, s, &args.target, args.workspace)?;
        let nk = s.elements() * 4;
        let mut operands = vec![
            ("pred", args.pred, nk, false),
            ("grad", args.grad, nk, true),
            ("scalars", args.scalars, 16, true),
        ];
        if let Some((region, bytes)) = target_data(&args.target, nk) {
            operands.push(("target", region, bytes, false));
        }
        common::check_launch(device, &operands)?;
        params.d_form = D_FORM_BASELINE;
        params.tokens_per_thread = 1;
        params.partial_count = groups(s) as u32;
        let b = Bindings {
            pred_cond: (args.pred, nk),
            pred_uncond: None,
            target_data: target_data(&args.target, nk),
            weights: None,
            grad_cond: Some((args.grad, nk)),
            grad_uncond: None,
            scalars: Some((args.scalars, 16)),
            per_step: per_step(&args.target),
        };
        let g = groups(s);
        self.run(
            device,
            encoder,
            params,
            &b,
            args.workspace,
            &[
                (self.family.pipeline("mse_fused"), g),
                (self.family.pipeline("loss_finalize"), 1),
            ],
        )
    }

    /// Records each token's unweighted mean squared error mean_k (pred − target)² into
    /// `args.out` (B, N): what a monitor compares across objectives, whatever weights their
    /// losses apply. The target is regenerated as for the losses.
    pub fn record_token_mse(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        args: &TokenMseArgs,
    ) -> Result<()> {
        let s = args.shape;
        let mut params = self.base_params(device, s, &args.target, args.workspace)?;
        let (nk, bn) = (s.elements() * 4, s.rows() * 4);
        let mut operands = vec![("pred", args.pred, nk, false), ("out", args.out, bn, true)];
        if let Some((region, bytes)) = target_data(&args.target, nk) {
            operands.push(("target", region, bytes, false));
        }
        common::check_launch(device, &operands)?;
        params.d_form = D_FORM_TOKEN_MSE;
        params.gamma = 1.0;
        let b = Bindings {
            pred_cond: (args.pred, nk),
            pred_uncond: Some((args.pred, nk)),
            target_data: target_data(&args.target, nk),
            weights: Some((args.out, bn)),
            // Not touched by the weight pass.
            grad_cond: None,
            grad_uncond: None,
            scalars: None,
            per_step: per_step(&args.target),
        };
        let steps = [(self.family.pipeline("imba_token_weights"), groups(s))];
        self.run(device, encoder, params, &b, args.workspace, &steps)
    }

    /// Shape/target validation shared by both losses, and the parameters they share.
    fn base_params(
        &self,
        device: &wgpu::Device,
        s: TokenShape,
        target: &Target,
        ws: &LossWorkspace,
    ) -> Result<LossParams> {
        s.validate()?;
        if s.rows() > ws.shape.rows() || groups(s) > ws.partial_capacity() {
            return Err(Error::Shape(format!(
                "the workspace was made for {:?} but the launch is {:?}, larger; make the \
                 workspace for the largest shape you launch (it serves any smaller one)",
                ws.shape, s
            )));
        }
        let mut p = LossParams {
            batch: s.batch,
            tokens: s.tokens,
            token_dim: s.token_dim,
            inv_count: (1.0 / s.elements() as f64) as f32,
            tokens_per_thread: 1,
            ..Default::default()
        };
        match target.source() {
            Source::Philox(PhiloxTarget {
                seed,
                geometry,
                first_sample,
                kind,
                x0,
                ..
            }) => {
                geometry.validate()?;
                p.quad_base = crate::kernels::shard_quad_base(geometry, first_sample)?;
                if geometry.token_shape() != s {
                    return Err(Error::Shape(format!(
                        "image geometry {geometry:?} gives tokens {:?}, but the predictions are {s:?}",
                        geometry.token_shape()
                    )));
                }
                p.target_source = TARGET_PHILOX;
                p.tokens_per_thread = tokens_per_thread(geometry);
                p.channels = geometry.channels;
                p.height = geometry.height;
                p.width = geometry.width;
                p.patch_size = geometry.patch;
                p.seed = seed;
                match (kind, x0) {
                    (TargetKind::Epsilon, _) => p.target_kind = TARGET_EPSILON,
                    (TargetKind::Velocity, Some(x0)) => {
                        common::check_storage(device, "x0", x0, geometry.elements() * 4)?;
                        p.target_kind = TARGET_VELOCITY;
                    }
                    (TargetKind::Velocity, None) => {
                        return Err(Error::Param(
                            "the velocity target ε − x0 needs the clean images: pass x0".into(),
                        ))
                    }
                }
            }
            Source::Explicit(t) => {
                common::check_storage(device, "target", t, s.elements() * 4)?;
                p.target_source = TARGET_BUFFER;
            }
        }
        Ok(p)
    }

    /// Binds once and records `steps` (pipeline, workgroups) in one compute pass; wgpu orders
    /// the dispatches through their storage dependencies.
    fn run(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        mut params: LossParams,
        b: &Bindings,
        ws: &LossWorkspace,
        steps: &[(&wgpu::ComputePipeline, u64)],
    ) -> Result<()> {
        // Shaders linearise a 2-D grid as y·groups_x + x with the token pass's x extent (the
        // largest pass). A step whose grid needs no y linearises to x alone; one that needs y
        // must share that x extent (only a per-sample pass over a batch beyond the dispatch
        // limit with few tokens per sample cannot).
        let (gx, _) = common::grid(
            device,
            groups(TokenShape::new(
                params.batch,
                params.tokens,
                params.token_dim,
            )),
        )?;
        params.groups_x = gx;
        let mut grids = Vec::with_capacity(steps.len());
        for &(pipeline, n) in steps {
            let (x, y) = common::grid(device, n)?;
            if y > 1 && x != gx {
                return Err(Error::Limit(format!(
                    "batch {} needs more than {x} workgroups in one dimension for the per-sample \
                     pass; use a smaller batch",
                    params.batch
                )));
            }
            grids.push((pipeline, x, y));
        }
        let operands = [
            Operand::buffer("pred_cond", b.pred_cond.0, b.pred_cond.1),
            Operand::maybe("pred_uncond", b.pred_uncond),
            Operand::maybe("target_data", b.target_data),
            Operand::maybe("weights", b.weights),
            Operand::maybe("grad_cond", b.grad_cond),
            Operand::maybe("grad_uncond", b.grad_uncond),
            Operand::buffer("partials", &ws.partials, ws.partials.size()),
            Operand::maybe("scalars", b.scalars),
            Operand::step("S", b.per_step),
        ];
        let bg = self.family.bind(device, &params, &operands)?;
        let dispatches: Vec<_> = grids
            .into_iter()
            .map(|(pipeline, x, y)| (pipeline, &bg, (x, y)))
            .collect();
        common::record_pass(encoder, "loss", &dispatches);
        Ok(())
    }
}

/// Where a dual loss launch takes its weights from.
enum WeightSource<'a, 'b> {
    /// IMBA's D, computed in the launch (time-bucket normalised with this state).
    Computed(Option<(&'a TimeBuckets<'a>, Option<&'b mut dyn ShardSum>)>),
    /// The caller's, already in the weights buffer.
    Given,
}

/// Where a target's Philox step comes from: the caller's per-step buffer, or the target's
/// `step` (an explicit target reads none).
fn per_step<'a>(t: &Target<'a>) -> PerStep<'a> {
    match t.source() {
        Source::Philox(p) => PerStep::or_values(p.step_values, StepValues::philox(p.step)),
        Source::Explicit(_) => PerStep::Values(StepValues::default()),
    }
}

/// The binding of `target_data`: the explicit target (`bytes` of it), or x0 for a
/// regenerated velocity target, or nothing.
fn target_data<'a>(t: &Target<'a>, bytes: u64) -> Option<(Region<'a>, u64)> {
    match t.source() {
        Source::Explicit(b) => Some((b, bytes)),
        Source::Philox(PhiloxTarget {
            kind: TargetKind::Velocity,
            x0: Some(x0),
            geometry,
            ..
        }) => Some((x0, geometry.elements() * 4)),
        Source::Philox(_) => None,
    }
}
