//! The DiT on the GPU: parameters and gradients in two flat buffers (named views from
//! [`ParamLayout`]), an activation arena sized from the config and the batch, and the forward
//! and backward recorded as sequences of kernel launches, block by block in mirror order.
//!
//! The dual-score forward of IMBA is `repeats = 2`: the B patch embeddings and the B timestep
//! embeddings are computed once and serve both halves (rows 0..B with the labels, rows B..2B
//! with ∅); the backward sums both halves' gradients into them.
//!
//! - `arena`: the activations, conditions and scratch, and the plan that sizes them;
//! - `layers`: linear, modulation gradients, the embeddings and the final layer, each with
//!   its backward;
//! - `block`: one adaLN-Zero block forward and backward.

mod arena;
mod block;
mod layers;

use crate::kernels::{FoldArgs, Write};
pub use arena::buffer;
use arena::usage;
pub use arena::{arena_plan, Activations, BlockActs, Plan};
use layers::Pass;

use super::sincos;
use super::{DitConfig, ParamLayout};
use crate::kernels::{
    ActivationKernels, AdaLnKernels, AttentionKernels, EmbedKernels, Layout, MatmulArgs,
    MatmulKernels, Paths, Region,
};
use crate::{Error, Result};
use wgpu::util::DeviceExt;

/// The kernels the model launches, compiled once per device.
pub struct DitKernels {
    /// Linear layers.
    pub matmul: MatmulKernels,
    /// GELU and SiLU.
    pub act: ActivationKernels,
    /// LayerNorm with modulation, gated residuals and their sums.
    pub adaln: AdaLnKernels,
    /// Multi-head attention.
    pub attention: AttentionKernels,
    /// Patch, position, time and label embeddings.
    pub embed: EmbedKernels,
}

impl DitKernels {
    /// The kernels of [`Paths::choose`] for `device`.
    pub fn new(device: &wgpu::Device) -> Result<Self> {
        Self::with_paths(device, Paths::choose(device)?)
    }

    /// The kernels of `paths` (each family falls back to its portable kernel where the
    /// device cannot run them).
    pub fn with_paths(device: &wgpu::Device, paths: Paths) -> Result<Self> {
        Ok(Self {
            matmul: MatmulKernels::with_paths(device, paths)?,
            act: ActivationKernels::new(device)?,
            adaln: AdaLnKernels::with_paths(device, paths)?,
            attention: AttentionKernels::with_paths(device, paths)?,
            embed: EmbedKernels::new(device)?,
        })
    }
}

/// The model on one device.
pub struct Dit {
    /// The model's configuration.
    pub config: DitConfig,
    /// Where each named tensor lives in the flat parameter buffer.
    pub layout: ParamLayout,
    /// All trainable tensors, flat (`layout.total` f32).
    pub params: wgpu::Buffer,
    /// Their gradients, same layout; every backward overwrites every tensor.
    pub grads: wgpu::Buffer,
    /// The fixed position embedding (N, D).
    pub pos: wgpu::Buffer,
    /// The kernel families it launches.
    pub kernels: DitKernels,
}

impl Dit {
    /// A model with the given flat parameters (`layout.total` values, e.g. from
    /// [`ParamLayout::init`] or a checkpoint), on the kernels of [`Paths::choose`].
    pub fn new(device: &wgpu::Device, config: DitConfig, params: &[f32]) -> Result<Self> {
        Self::with_paths(device, config, params, Paths::choose(device)?)
    }

    /// [`Dit::new`] on the kernels of `paths`.
    pub fn with_paths(
        device: &wgpu::Device,
        config: DitConfig,
        params: &[f32],
        paths: Paths,
    ) -> Result<Self> {
        config.validate()?;
        let layout = ParamLayout::new(&config);
        if params.len() != layout.total {
            return Err(Error::Shape(format!(
                "{} parameter values for a layout of {}",
                params.len(),
                layout.total
            )));
        }
        let max = device.limits().max_storage_buffer_binding_size;
        if layout.total as u64 * 4 > max {
            return Err(Error::Limit(format!(
                "the model's {} parameter bytes exceed this device's {max}-byte storage binding; \
                 use a smaller model",
                layout.total * 4
            )));
        }
        let init = |label, contents: &[u8]| {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage: usage(),
            })
        };
        let pos: Vec<f32> = sincos::pos_embed_2d(
            config.dim as usize,
            (config.height / config.patch) as usize,
            (config.width / config.patch) as usize,
        )
        .iter()
        .map(|&v| v as f32)
        .collect();
        Ok(Self {
            params: init("params", bytemuck::cast_slice(params)),
            grads: buffer(device, "grads", layout.total as u64),
            pos: init("pos_embed", bytemuck::cast_slice(&pos)),
            kernels: DitKernels::with_paths(device, paths)?,
            layout,
            config,
        })
    }

    /// The view of parameter `name`.
    pub fn param(&self, name: &str) -> Region<'_> {
        Region::new(&self.params, self.layout.get(name).byte_offset())
    }

    pub(crate) fn grad(&self, name: &str) -> Region<'_> {
        Region::new(&self.grads, self.layout.get(name).byte_offset())
    }

    fn check_acts(&self, acts: &Activations) -> Result<()> {
        if acts.blocks.len() != self.config.depth as usize {
            return Err(Error::Shape(
                "activations were made for another config; make them with this model's".into(),
            ));
        }
        Ok(())
    }

    /// A tap names an existing block and a buffer of the residual stream's size.
    fn check_tap(&self, acts: &Activations, tap: Option<Tap>) -> Result<()> {
        let Some(tap) = tap else { return Ok(()) };
        if tap.block >= self.config.depth {
            return Err(Error::Shape(format!(
                "block {} does not exist: the model has {} blocks",
                tap.block, self.config.depth
            )));
        }
        let bytes = 4 * acts.rows() as u64 * self.config.tokens() as u64 * self.config.dim as u64;
        if tap.buffer.size() < bytes {
            return Err(Error::Buffer {
                name: "tap",
                problem: format!(
                    "holds {} bytes but a block's output needs {bytes}",
                    tap.buffer.size()
                ),
            });
        }
        Ok(())
    }

    /// The forward over `acts.rows()` rows: `patches` holds x_t as (B·N, C·p²) tokens in
    /// (c, i, j) order (as [`NoiseKernels`](crate::kernels::NoiseKernels) writes them); the
    /// conditions come from [`Activations::set_conditions`]. Writes `acts.out`. With a `tap`,
    /// also copies the residual stream after block `tap.block` (R·N·D values) into
    /// `tap.buffer`: the features of CCUA's contrastive loss.
    pub fn record_forward<'a>(
        &self,
        dev: &wgpu::Device,
        enc: &mut wgpu::CommandEncoder,
        acts: &Activations,
        patches: impl Into<Region<'a>>,
        tap: Option<Tap>,
    ) -> Result<()> {
        self.check_acts(acts)?;
        self.check_tap(acts, tap)?;
        let pass = Pass::new(self, dev, acts);
        pass.embed(enc, patches.into())?;
        for (i, ba) in acts.blocks.iter().enumerate() {
            pass.block(enc, i, ba)?;
            if let Some(tap) = tap.filter(|t| t.block as usize == i) {
                let bytes = 4 * pass.t as u64 * pass.d as u64;
                enc.copy_buffer_to_buffer(&acts.x, 0, tap.buffer, 0, bytes);
            }
        }
        pass.final_layer(enc)
    }

    /// One training pass as data flows: the forward (copying out `loss.tap`), then `record`
    /// (the loss on `acts.out`, which leaves ∂L/∂out in `loss.dout`), then the backward
    /// (adding `loss.inject` at its block). The one place where the trainer, the benchmarks
    /// and the tests put the three together.
    pub fn record_with_loss<'a>(
        &self,
        dev: &wgpu::Device,
        enc: &mut wgpu::CommandEncoder,
        acts: &Activations,
        patches: impl Into<Region<'a>>,
        loss: LossPass,
        record: impl FnOnce(&mut wgpu::CommandEncoder) -> Result<()>,
    ) -> Result<()> {
        let patches = patches.into();
        self.record_forward(dev, enc, acts, patches, loss.tap)?;
        record(enc)?;
        self.record_backward(dev, enc, acts, patches, loss.dout, loss.inject)
    }

    /// The backward from ∂L/∂out (R·N, p²·C): overwrites every tensor of `self.grads`. Needs
    /// the activations of the forward just recorded with the same `patches`. With `inject`,
    /// `inject.buffer` holds ∂L/∂(residual stream after block `inject.block`), R·N·D values,
    /// added where the backward reaches that point (a loss that also read a block's output).
    pub fn record_backward<'a>(
        &self,
        dev: &wgpu::Device,
        enc: &mut wgpu::CommandEncoder,
        acts: &Activations,
        patches: impl Into<Region<'a>>,
        dout: &wgpu::Buffer,
        inject: Option<Tap>,
    ) -> Result<()> {
        self.check_acts(acts)?;
        self.check_tap(acts, inject)?;
        let pass = Pass::new(self, dev, acts);
        let dx = &acts.scratch.dx;
        pass.final_layer_backward(enc, dout)?;
        for (i, ba) in acts.blocks.iter().enumerate().rev() {
            if let Some(g) = inject.filter(|g| g.block as usize == i) {
                let fold = &self.kernels.embed;
                fold.record_fold_repeats(
                    dev,
                    enc,
                    &FoldArgs {
                        len: pass.t * pass.d,
                        repeats: 1,
                        x: g.buffer.into(),
                        out: dx.into(),
                        write: Write::Accumulate,
                    },
                )?;
            }
            pass.block_backward(enc, i, ba)?;
        }
        pass.embed_backward(enc, patches.into())
    }

    /// ∂L/∂patches (B·N, C·p²), in the input tokens' (c, i, j) order, into `dpatches`:
    /// dtok·W_embed from the ∂L/∂tokens that [`Self::record_backward`] (just recorded with
    /// the same `acts`) left in the scratch. The training step never needs it; SeedSelect
    /// does, to reach the initial noise through the sampling chain.
    pub fn record_input_grad<'a>(
        &self,
        dev: &wgpu::Device,
        enc: &mut wgpu::CommandEncoder,
        acts: &Activations,
        dpatches: impl Into<Region<'a>>,
    ) -> Result<()> {
        self.check_acts(acts)?;
        let c = &self.config;
        let (n, d, k) = (c.tokens(), c.dim, c.token_dim());
        self.kernels.matmul.record(
            dev,
            enc,
            &MatmulArgs {
                m: acts.batch * n,
                k: d,
                n: k,
                a: (&acts.scratch.dtok).into(),
                a_layout: Layout::RowMajor,
                b: self.param("x_embedder.proj.weight"),
                b_layout: Layout::RowMajor,
                bias: None,
                c: dpatches.into(),
                accumulate: false,
            },
        )
    }
}

/// A block's output buffer: where [`Dit::record_forward`] copies the residual stream
/// after block `block`, or the gradient [`Dit::record_backward`] adds there.
#[derive(Clone, Copy, Debug)]
pub struct Tap<'a> {
    /// The block (from 0) whose output the tap holds.
    pub block: u32,
    /// R·N·D values (R = the activations' rows).
    pub buffer: &'a wgpu::Buffer,
}

/// What a loss between the forward and the backward needs from them (see
/// [`Dit::record_with_loss`]): the block output the forward copies out, the buffer where the
/// loss leaves ∂L/∂out, and the gradient the backward adds at a block.
#[derive(Clone, Copy)]
pub struct LossPass<'a> {
    /// The block output the forward copies out (CCUA's features), if any.
    pub tap: Option<Tap<'a>>,
    /// ∂L/∂out, written by the loss.
    pub dout: &'a wgpu::Buffer,
    /// The gradient the backward adds at the tapped block, if any.
    pub inject: Option<Tap<'a>>,
}
