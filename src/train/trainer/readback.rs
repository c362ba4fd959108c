//! What a step reads back and what it measured: the loss scalars, the gradient norm, the
//! conditional pass's per-token MSE and the monitored D, copied into one mappable buffer (one
//! wait per step); in a data-parallel job the exchange that averages the gradients and
//! gathers every rank's read-back.

use crate::gpu::Gpu;
use crate::kernels::{LossKernels, LossWorkspace, ShardSum, Target, TokenMseArgs, TokenShape};
use crate::model::Optimizer;
use crate::objectives::{Objective, StepInputs};
use crate::parallel::Collective;
use crate::Result;
use web_time::Instant;

/// The step's read-back buffer and the per-token MSE it copies.
pub(super) struct ReadBack {
    /// Host-readable: [`StepHeader`], the per-token MSE, the monitored D.
    stats: wgpu::Buffer,
    /// Per-token MSE of the conditional rows, for the monitors.
    token_mse: wgpu::Buffer,
    mse_workspace: LossWorkspace,
    /// D values read back per step (0 where nothing monitors D).
    monitored: u64,
}

impl ReadBack {
    pub(super) fn new(
        gpu: &Gpu,
        loss: &LossKernels,
        shape: TokenShape,
        monitored: u64,
    ) -> Result<Self> {
        let tokens = shape.rows();
        Ok(Self {
            stats: gpu.staging("step_stats", 4 * (HEADER as u64 + tokens + monitored)),
            token_mse: gpu.zeros("token_mse", 4 * tokens),
            mse_workspace: loss.workspace(&gpu.device, shape)?,
            monitored,
        })
    }

    /// Records the unweighted per-token MSE of the first B rows (the conditional pass:
    /// labels, or ∅ where dropped) against `target`.
    pub(super) fn record_token_mse(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        loss: &LossKernels,
        pred: &wgpu::Buffer,
        target: Target,
    ) -> Result<()> {
        let mse = TokenMseArgs {
            shape: self.mse_workspace.shape(),
            pred: pred.into(),
            target,
            out: (&self.token_mse).into(),
            workspace: &self.mse_workspace,
        };
        loss.record_token_mse(device, encoder, &mse)
    }

    /// Copies the step's values into the read-back buffer, submits `encoder` and reads them:
    /// one submission, one wait per step.
    pub(super) async fn submit_and_read(
        &self,
        gpu: &Gpu,
        mut encoder: wgpu::CommandEncoder,
        objective: &dyn Objective,
        optim: &Optimizer,
    ) -> Result<Vec<f32>> {
        let stats = &self.stats;
        let (scalars, norm) = (
            std::mem::offset_of!(StepHeader, scalars) as u64,
            std::mem::offset_of!(StepHeader, sum_sq) as u64,
        );
        encoder.copy_buffer_to_buffer(objective.scalars(), 0, stats, scalars, 16);
        encoder.copy_buffer_to_buffer(&optim.norm, 0, stats, norm, 12);
        let tokens = self.tokens() as u64;
        let per_token = 4 * HEADER as u64;
        encoder.copy_buffer_to_buffer(&self.token_mse, 0, stats, per_token, 4 * tokens);
        if let Some(d) = objective.monitored_weights() {
            encoder.copy_buffer_to_buffer(d, 0, stats, per_token + 4 * tokens, 4 * self.monitored);
        }
        gpu.queue.submit(Some(encoder.finish()));
        gpu.read_staging_async(stats, HEADER + (tokens + self.monitored) as usize)
            .await
    }

    /// Tokens of the per-token MSE (this process's rows).
    pub(super) fn tokens(&self) -> usize {
        (self.token_mse.size() / 4) as usize
    }
}

/// What the last step measured, for the monitors: its batch (indices into the data), D per
/// (sample, token) where read back, and per sample the mean unweighted squared error of the
/// conditional prediction, the time fraction and whether it kept its labels.
#[derive(Clone, Debug, Default)]
pub struct LastStep {
    /// The batch, as indices into the trainer's data.
    pub batch: Vec<usize>,
    /// D per (sample, token) (IMBA and the rules that learn from D; else empty).
    pub d: Vec<f32>,
    /// The mean unweighted squared error of the conditional prediction per sample.
    pub mse: Vec<f32>,
    /// The time fraction per sample.
    pub time: Vec<f32>,
    /// Whether each sample kept its labels.
    pub conditional: Vec<bool>,
}

impl LastStep {
    /// The whole batch's values of step `inputs` from its gathered read-back; `null` is the
    /// ∅ label that starts a dropped row of `slots` labels.
    pub(super) fn of(inputs: StepInputs, gathered: Gathered, null: u32, slots: usize) -> Self {
        let batch = inputs.indices.len();
        Self {
            mse: crate::train::time_monitor::sample_means(&gathered.per_token, batch),
            conditional: (0..batch)
                .map(|b| inputs.labels[b * slots] != null)
                .collect(),
            d: gathered.d,
            time: inputs.time_fractions,
            batch: inputs.indices,
        }
    }

    /// The mean of the conditional samples' squared error (None if none kept its labels):
    /// every sample has the same number of tokens, so this is the mean over their tokens.
    pub fn conditional_mse(&self) -> Option<f32> {
        let kept: Vec<f64> = self
            .mse
            .iter()
            .zip(&self.conditional)
            .filter(|(_, &k)| k)
            .map(|(&x, _)| x as f64)
            .collect();
        (!kept.is_empty()).then(|| (kept.iter().sum::<f64>() / kept.len() as f64) as f32)
    }
}

/// The ranks of a data-parallel job and the host buffer their exchanges go through.
pub(super) struct Ranks<'g> {
    pub(super) comm: &'g dyn Collective,
    /// Host-readable, as large as the largest exchange (the gradient); None in one process.
    pub(super) exchange: Option<wgpu::Buffer>,
}

impl<'g> Ranks<'g> {
    /// The exchange of one step (None in one process).
    pub(super) fn step<'a>(&'a self, gpu: &'a Gpu) -> Option<DeviceSum<'a>> {
        self.exchange.as_ref().map(|staging| DeviceSum {
            gpu,
            comm: self.comm,
            staging,
            ms: 0.0,
        })
    }
}

/// The first values of a step's read-back, where the step's copies put them; the
/// conditional pass's per-token MSE and the monitored D follow.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct StepHeader {
    /// The objective's scalars: loss, conditional loss, unconditional loss, mean D (means
    /// over this rank's shard).
    scalars: [f32; 4],
    /// The optimiser's norm buffer: Σg², ‖g‖ and the clip scale.
    sum_sq: f32,
    grad_norm: f32,
    clip_scale: f32,
    /// Set on the host before a data-parallel gather: whether this rank was asked to stop.
    stop: f32,
}

/// Values of [`StepHeader`] at the start of the read-back.
pub(super) const HEADER: usize = std::mem::size_of::<StepHeader>() / 4;

impl StepHeader {
    /// The header at the start of a read-back.
    fn of(read: &[f32]) -> Self {
        bytemuck::pod_read_unaligned(bytemuck::cast_slice(&read[..HEADER]))
    }
}

/// A step's read-back over the whole batch: the loss scalars, the gradient norm, the
/// per-token MSE and (IMBA) D.
pub(super) struct Gathered {
    pub(super) scalars: [f32; 4],
    pub(super) grad_norm: f32,
    pub(super) per_token: Vec<f32>,
    pub(super) d: Vec<f32>,
    /// Whether any rank asked to stop.
    pub(super) peer_stop: bool,
}

/// The exchange of a step over the ranks: device values read back, added up in rank order,
/// written back; the time it took adds to `ms`.
pub(super) struct DeviceSum<'a> {
    pub(super) gpu: &'a Gpu,
    pub(super) comm: &'a dyn Collective,
    /// Host-readable, as large as the largest exchange (the gradient), kept across steps.
    pub(super) staging: &'a wgpu::Buffer,
    pub(super) ms: f64,
}

impl DeviceSum<'_> {
    /// Submits what `encoder` holds, replaces `values[..count]` by its sum over the ranks
    /// times `scale`, and continues in a fresh encoder.
    pub(super) fn reduce(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        values: &wgpu::Buffer,
        count: usize,
        scale: f32,
    ) -> Result<()> {
        let staging = self.staging;
        let mut recorded = std::mem::replace(encoder, self.gpu.encoder());
        recorded.copy_buffer_to_buffer(values, 0, staging, 0, 4 * count as u64);
        self.gpu.queue.submit(Some(recorded.finish()));
        // The device's work is not the exchange's: wait for it before the clock starts.
        self.gpu.wait()?;
        let start = Instant::now();
        let mut v: Vec<f32> = self.gpu.read_staging(staging, count)?;
        self.comm.sum(&mut v)?;
        if scale != 1.0 {
            v.iter_mut().for_each(|x| *x *= scale);
        }
        self.gpu
            .queue
            .write_buffer(values, 0, bytemuck::cast_slice(&v));
        self.ms += start.elapsed().as_secs_f64() * 1e3;
        Ok(())
    }

    /// The step's read-back ([`StepHeader`], per-token MSE, D) of every rank: the scalars
    /// averaged in rank order (each rank's is a mean over as many samples), the per-token
    /// values concatenated in sample order; with this rank's stop request shared, so that
    /// every rank stops after the same step.
    pub(super) fn gather(&mut self, mut read: Vec<f32>, tokens: usize) -> Result<Gathered> {
        let started = Instant::now();
        let mut header = StepHeader::of(&read);
        header.stop = f32::from(crate::train::stop::requested().is_some());
        read[..HEADER].copy_from_slice(bytemuck::cast_slice(bytemuck::bytes_of(&header)));
        let all = self.comm.all_gather(&read)?;
        let parts: Vec<&[f32]> = all.chunks(read.len()).collect();
        let headers: Vec<StepHeader> = parts.iter().map(|p| StepHeader::of(p)).collect();
        let total = crate::parallel::sum_in_order(headers.iter().map(|h| &h.scalars[..]));
        let ranks = parts.len() as f32;
        let values = |range: std::ops::Range<usize>| {
            parts
                .iter()
                .flat_map(|p| &p[range.clone()])
                .copied()
                .collect()
        };
        let gathered = Gathered {
            scalars: std::array::from_fn(|i| total[i] / ranks),
            grad_norm: header.grad_norm,
            per_token: values(HEADER..HEADER + tokens),
            d: values(HEADER + tokens..read.len()),
            peer_stop: headers.iter().any(|h| h.stop != 0.0),
        };
        self.ms += started.elapsed().as_secs_f64() * 1e3;
        Ok(gathered)
    }
}

impl Gathered {
    /// One process's read-back, as it is.
    pub(super) fn single(mut read: Vec<f32>, tokens: usize) -> Self {
        let header = StepHeader::of(&read);
        let d = read.split_off(HEADER + tokens);
        let per_token = read.split_off(HEADER);
        Gathered {
            scalars: header.scalars,
            grad_norm: header.grad_norm,
            per_token,
            d,
            peer_stop: false,
        }
    }
}

impl ShardSum for DeviceSum<'_> {
    fn sum(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        values: &wgpu::Buffer,
        count: usize,
    ) -> Result<()> {
        self.reduce(encoder, values, count, 1.0)
    }
}
