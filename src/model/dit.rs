//! The DiT on the GPU: parameters and gradients in two flat buffers (named views from
//! [`ParamLayout`]), an activation arena sized from the config and the batch, and the forward
//! and backward recorded as sequences of kernel launches. The dual-score forward of IMBA is
//! `repeats = 2`: the B patch embeddings and the B timestep embeddings are computed once and
//! serve both halves (rows 0..B with the labels, rows B..2B with ∅); the backward sums both
//! halves' gradients into them.

use super::sincos;
use super::{DitConfig, ParamLayout};
use crate::kernels::{
    Activation, ActivationKernels, AdaLnKernels, AttentionKernels, AttentionShape, Columns,
    EmbedKernels, Labels, Layout, MatmulArgs, MatmulKernels, Modulation, Region, Stream, NO_LABEL,
};
use crate::{Error, Result};
use wgpu::util::DeviceExt;

/// The kernels the model launches, compiled once per device.
pub struct DitKernels {
    pub matmul: MatmulKernels,
    pub act: ActivationKernels,
    pub adaln: AdaLnKernels,
    pub attention: AttentionKernels,
    pub embed: EmbedKernels,
}

impl DitKernels {
    pub fn new(device: &wgpu::Device) -> Result<Self> {
        Ok(Self {
            matmul: MatmulKernels::new(device)?,
            act: ActivationKernels::new(device)?,
            adaln: AdaLnKernels::new(device)?,
            attention: AttentionKernels::new(device)?,
            embed: EmbedKernels::new(device)?,
        })
    }
}

fn usage() -> wgpu::BufferUsages {
    crate::gpu::storage_usage()
}

fn buffer(device: &wgpu::Device, label: &str, values: u64) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (values * 4).max(16),
        usage: usage(),
        mapped_at_creation: false,
    })
}

/// One block's saved activations.
pub struct BlockActs {
    pub modv: wgpu::Buffer,
    pub xhat1: wgpu::Buffer,
    pub rstd1: wgpu::Buffer,
    pub h1: wgpu::Buffer,
    pub qkv: wgpu::Buffer,
    pub o: wgpu::Buffer,
    pub lse: wgpu::Buffer,
    pub a: wgpu::Buffer,
    pub xhat2: wgpu::Buffer,
    pub rstd2: wgpu::Buffer,
    pub h2: wgpu::Buffer,
    pub f1: wgpu::Buffer,
    pub g: wgpu::Buffer,
    pub f2: wgpu::Buffer,
}

/// Every buffer a forward and backward of `batch` samples × `repeats` label sets use:
/// saved activations, the inputs' conditions, and the backward's scratch. Separate buffers
/// (not one arena buffer) because wgpu forbids binding one buffer both read-only and
/// writable in a dispatch.
pub struct Activations {
    pub batch: u32,
    pub repeats: u32,
    /// Timestep features (B, 256), from [`Activations::set_conditions`].
    pub tfreq: wgpu::Buffer,
    /// Labels (R, label_slots) u32.
    pub labels: wgpu::Buffer,
    pub tok: wgpu::Buffer,
    /// The residual stream (R·N, D).
    pub x: wgpu::Buffer,
    pub th1: wgpu::Buffer,
    pub ts: wgpu::Buffer,
    pub temb: wgpu::Buffer,
    pub c: wgpu::Buffer,
    pub sc: wgpu::Buffer,
    pub blocks: Vec<BlockActs>,
    pub modf: wgpu::Buffer,
    pub xhatf: wgpu::Buffer,
    pub rstdf: wgpu::Buffer,
    pub hf: wgpu::Buffer,
    /// The prediction (R·N, p²·C), tokens in (i, j, c) order.
    pub out: wgpu::Buffer,
    scratch: Scratch,
    /// (name, bytes) of every buffer, for the memory report.
    sizes: Vec<(String, u64)>,
}

struct Scratch {
    dx: wgpu::Buffer,
    dh: wgpu::Buffer,
    dbranch: wgpu::Buffer,
    d_o: wgpu::Buffer,
    dqkv: wgpu::Buffer,
    dg: wgpu::Buffer,
    df1: wgpu::Buffer,
    dmod: wgpu::Buffer,
    dsc: wgpu::Buffer,
    dc: wgpu::Buffer,
    dtemb: wgpu::Buffer,
    dts: wgpu::Buffer,
    dth1: wgpu::Buffer,
    dtok: wgpu::Buffer,
    delta: wgpu::Buffer,
}

/// (buffer name, f32 values) of a group of buffers.
pub type Plan = Vec<(String, u64)>;

/// Sizes of an arena — shared buffers, one block's saved activations, the backward's
/// scratch — by buffer name: used by the allocation and by the memory report, so the
/// report is what is allocated.
pub fn arena_plan(c: &DitConfig, batch: u32, repeats: u32) -> (Plan, Plan, Plan) {
    let (b, r) = (batch as u64, (batch * repeats) as u64);
    let (n, d, k, m) = (
        c.tokens() as u64,
        c.dim as u64,
        c.token_dim() as u64,
        c.mlp_dim() as u64,
    );
    let t = r * n;
    let lse = r * c.heads as u64 * n;
    let s = |name: &str, v: u64| (name.to_string(), v);
    let shared = vec![
        s("tfreq", b * 256),
        s("labels", r * c.label_slots as u64),
        s("tok", b * n * d),
        s("x", t * d),
        s("th1", b * d),
        s("ts", b * d),
        s("temb", b * d),
        s("c", r * d),
        s("sc", r * d),
        s("modf", r * 2 * d),
        s("xhatf", t * d),
        s("rstdf", t),
        s("hf", t * d),
        s("out", t * k),
    ];
    let block = vec![
        s("modv", r * 6 * d),
        s("xhat1", t * d),
        s("rstd1", t),
        s("h1", t * d),
        s("qkv", t * 3 * d),
        s("o", t * d),
        s("lse", lse),
        s("a", t * d),
        s("xhat2", t * d),
        s("rstd2", t),
        s("h2", t * d),
        s("f1", t * m),
        s("g", t * m),
        s("f2", t * d),
    ];
    let scratch = vec![
        s("dx", t * d),
        s("dh", t * d),
        s("dbranch", t * d),
        s("d_o", t * d),
        s("dqkv", t * 3 * d),
        s("dg", t * m),
        s("df1", t * m),
        s("dmod", r * 6 * d),
        s("dsc", r * d),
        s("dc", r * d),
        s("dtemb", b * d),
        s("dts", b * d),
        s("dth1", b * d),
        s("dtok", b * n * d),
        s("delta", lse),
    ];
    (shared, block, scratch)
}

impl Activations {
    pub fn new(device: &wgpu::Device, c: &DitConfig, batch: u32, repeats: u32) -> Result<Self> {
        if batch == 0 || repeats == 0 {
            return Err(Error::Shape("batch and repeats must be ≥ 1".into()));
        }
        let (shared, block, scratch) = arena_plan(c, batch, repeats);
        let max = device.limits().max_storage_buffer_binding_size;
        for (name, v) in shared.iter().chain(&block).chain(&scratch) {
            if v * 4 > max {
                return Err(Error::Limit(format!(
                    "activation `{name}` needs {} bytes for batch {batch}, over this device's \
                     {max}-byte storage binding; use a smaller batch",
                    v * 4
                )));
            }
        }
        let mut sizes = Vec::new();
        let mut make = |plan: &[(String, u64)], prefix: &str| -> Vec<wgpu::Buffer> {
            plan.iter()
                .map(|(name, v)| {
                    sizes.push((format!("{prefix}{name}"), v * 4));
                    buffer(device, name, *v)
                })
                .collect()
        };
        let mut sh = make(&shared, "").into_iter();
        let mut next = || sh.next().expect("plan order");
        let (tfreq, labels, tok, x, th1, ts, temb, cc, sc) = (
            next(),
            next(),
            next(),
            next(),
            next(),
            next(),
            next(),
            next(),
            next(),
        );
        let (modf, xhatf, rstdf, hf, out) = (next(), next(), next(), next(), next());
        let blocks = (0..c.depth)
            .map(|i| {
                let mut it = make(&block, &format!("blocks.{i}.")).into_iter();
                let mut n = || it.next().expect("plan order");
                BlockActs {
                    modv: n(),
                    xhat1: n(),
                    rstd1: n(),
                    h1: n(),
                    qkv: n(),
                    o: n(),
                    lse: n(),
                    a: n(),
                    xhat2: n(),
                    rstd2: n(),
                    h2: n(),
                    f1: n(),
                    g: n(),
                    f2: n(),
                }
            })
            .collect();
        let mut it = make(&scratch, "backward.").into_iter();
        let mut n = || it.next().expect("plan order");
        let scratch = Scratch {
            dx: n(),
            dh: n(),
            dbranch: n(),
            d_o: n(),
            dqkv: n(),
            dg: n(),
            df1: n(),
            dmod: n(),
            dsc: n(),
            dc: n(),
            dtemb: n(),
            dts: n(),
            dth1: n(),
            dtok: n(),
            delta: n(),
        };
        Ok(Self {
            batch,
            repeats,
            tfreq,
            labels,
            tok,
            x,
            th1,
            ts,
            temb,
            c: cc,
            sc,
            blocks,
            modf,
            xhatf,
            rstdf,
            hf,
            out,
            scratch,
            sizes,
        })
    }

    /// Rows R = repeats·batch.
    pub fn rows(&self) -> u32 {
        self.batch * self.repeats
    }

    /// (buffer name, bytes) of everything allocated.
    pub fn sizes(&self) -> &[(String, u64)] {
        &self.sizes
    }

    /// Uploads the timesteps' features (computed in f64 on the CPU: an f32 cos(t·f) at
    /// t ≈ 999 would lose ~1e-4 in its argument) and the labels: `labels` holds R rows of
    /// `label_slots` entries, each < num_labels + 1 (the last is ∅) or [`NO_LABEL`].
    pub fn set_conditions(
        &self,
        queue: &wgpu::Queue,
        c: &DitConfig,
        timesteps: &[f32],
        labels: &[u32],
    ) -> Result<()> {
        if timesteps.len() != self.batch as usize {
            return Err(Error::Shape(format!(
                "{} timesteps for a batch of {}",
                timesteps.len(),
                self.batch
            )));
        }
        if let Some(t) = timesteps.iter().find(|t| !t.is_finite()) {
            return Err(Error::Param(format!("timestep {t} is not finite")));
        }
        let want = (self.rows() * c.label_slots) as usize;
        if labels.len() != want {
            return Err(Error::Shape(format!(
                "{} labels for {} rows × {} slots; give {want}",
                labels.len(),
                self.rows(),
                c.label_slots
            )));
        }
        if let Some(&l) = labels
            .iter()
            .find(|&&l| l >= c.table_rows() && l != NO_LABEL)
        {
            return Err(Error::Param(format!(
                "label {l} is out of range: this model has {} labels and ∅ = {}",
                c.num_labels,
                c.null_label()
            )));
        }
        let t64: Vec<f64> = timesteps.iter().map(|&t| t as f64).collect();
        let feats: Vec<f32> = sincos::timestep_features(&t64)
            .iter()
            .map(|&v| v as f32)
            .collect();
        queue.write_buffer(&self.tfreq, 0, bytemuck::cast_slice(&feats));
        queue.write_buffer(&self.labels, 0, bytemuck::cast_slice(labels));
        Ok(())
    }
}

/// The model on one device.
pub struct Dit {
    pub config: DitConfig,
    pub layout: ParamLayout,
    /// All trainable tensors, flat (`layout.total` f32).
    pub params: wgpu::Buffer,
    /// Their gradients, same layout; every backward overwrites every tensor.
    pub grads: wgpu::Buffer,
    /// The fixed position embedding (N, D).
    pub pos: wgpu::Buffer,
    pub kernels: DitKernels,
}

impl Dit {
    /// A model with the given flat parameters (`layout.total` values, e.g. from
    /// [`ParamLayout::init`] or a checkpoint).
    pub fn new(device: &wgpu::Device, config: DitConfig, params: &[f32]) -> Result<Self> {
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
            kernels: DitKernels::new(device)?,
            layout,
            config,
        })
    }

    /// The view of parameter `name`.
    pub fn param(&self, name: &str) -> Region<'_> {
        Region::new(&self.params, self.layout.get(name).byte_offset())
    }

    fn grad(&self, name: &str) -> Region<'_> {
        Region::new(&self.grads, self.layout.get(name).byte_offset())
    }

    /// y = x·Wᵀ + b for `rows` rows.
    #[allow(clippy::too_many_arguments)]
    fn linear(
        &self,
        dev: &wgpu::Device,
        enc: &mut wgpu::CommandEncoder,
        rows: u32,
        d_in: u32,
        d_out: u32,
        x: &wgpu::Buffer,
        name: &str,
        y: &wgpu::Buffer,
    ) -> Result<()> {
        self.kernels.matmul.record(
            dev,
            enc,
            &MatmulArgs {
                m: rows,
                k: d_in,
                n: d_out,
                a: x.into(),
                a_layout: Layout::RowMajor,
                b: self.param(&format!("{name}.weight")),
                b_layout: Layout::Transposed,
                bias: Some(self.param(&format!("{name}.bias"))),
                c: y.into(),
                accumulate: false,
            },
        )
    }

    /// dW = dyᵀ·x and db = Σ dy into the gradient buffer; dx (+)= dy·W if asked.
    #[allow(clippy::too_many_arguments)]
    fn linear_backward(
        &self,
        dev: &wgpu::Device,
        enc: &mut wgpu::CommandEncoder,
        rows: u32,
        d_in: u32,
        d_out: u32,
        x: &wgpu::Buffer,
        dy: &wgpu::Buffer,
        name: &str,
        dx: Option<(&wgpu::Buffer, bool)>,
    ) -> Result<()> {
        let (wn, bn) = (format!("{name}.weight"), format!("{name}.bias"));
        let mm = &self.kernels.matmul;
        mm.record(
            dev,
            enc,
            &MatmulArgs {
                m: d_out,
                k: rows,
                n: d_in,
                a: dy.into(),
                a_layout: Layout::Transposed,
                b: x.into(),
                b_layout: Layout::RowMajor,
                bias: None,
                c: self.grad(&wn),
                accumulate: false,
            },
        )?;
        self.kernels.adaln.record_segment_sums(
            dev,
            enc,
            1,
            rows,
            d_out,
            Columns::whole(dy, d_out),
            None,
            Columns::whole(self.grad(&bn), d_out),
            false,
        )?;
        if let Some((dx, accumulate)) = dx {
            mm.record(
                dev,
                enc,
                &MatmulArgs {
                    m: rows,
                    k: d_out,
                    n: d_in,
                    a: dy.into(),
                    a_layout: Layout::RowMajor,
                    b: self.param(&wn),
                    b_layout: Layout::RowMajor,
                    bias: None,
                    c: dx.into(),
                    accumulate,
                },
            )?;
        }
        Ok(())
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
    /// conditions come from [`Activations::set_conditions`]. Writes `acts.out`.
    pub fn record_forward<'a>(
        &self,
        dev: &wgpu::Device,
        enc: &mut wgpu::CommandEncoder,
        acts: &Activations,
        patches: impl Into<Region<'a>>,
    ) -> Result<()> {
        self.record_forward_tapped(dev, enc, acts, patches, None)
    }

    /// [`Self::record_forward`] that also copies the residual stream after block
    /// `tap.block` (R·N·D values) into `tap.buffer`: the features of CCUA's contrastive loss.
    pub fn record_forward_tapped<'a>(
        &self,
        dev: &wgpu::Device,
        enc: &mut wgpu::CommandEncoder,
        acts: &Activations,
        patches: impl Into<Region<'a>>,
        tap: Option<Tap>,
    ) -> Result<()> {
        self.check_acts(acts)?;
        self.check_tap(acts, tap)?;
        let c = &self.config;
        let (b, r) = (acts.batch, acts.rows());
        let (n, d, k, m) = (c.tokens(), c.dim, c.token_dim(), c.mlp_dim());
        let t = r * n;
        let patches = patches.into();
        // Patch embedding once, position added, repeated for every label set.
        self.kernels.matmul.record(
            dev,
            enc,
            &MatmulArgs {
                m: b * n,
                k,
                n: d,
                a: patches,
                a_layout: Layout::RowMajor,
                b: self.param("x_embedder.proj.weight"),
                b_layout: Layout::Transposed,
                bias: Some(self.param("x_embedder.proj.bias")),
                c: (&acts.tok).into(),
                accumulate: false,
            },
        )?;
        self.kernels.embed.record_tokens(
            dev,
            enc,
            b * n * d,
            n * d,
            acts.repeats,
            &acts.tok,
            &self.pos,
            &acts.x,
        )?;
        // Timestep MLP once; c = t_emb + label rows; SiLU(c) feeds every adaLN linear.
        self.linear(
            dev,
            enc,
            b,
            256,
            d,
            &acts.tfreq,
            "t_embedder.mlp.0",
            &acts.th1,
        )?;
        self.kernels
            .act
            .record_forward(dev, enc, Activation::Silu, b * d, &acts.th1, &acts.ts)?;
        self.linear(dev, enc, b, d, d, &acts.ts, "t_embedder.mlp.2", &acts.temb)?;
        let labels = Labels {
            buffer: (&acts.labels).into(),
            rows: r,
            slots: c.label_slots,
        };
        self.kernels.embed.record_condition(
            dev,
            enc,
            b,
            d,
            c.table_rows(),
            &acts.temb,
            self.param("y_embedder.embedding_table.weight"),
            labels,
            &acts.c,
        )?;
        self.kernels
            .act
            .record_forward(dev, enc, Activation::Silu, r * d, &acts.c, &acts.sc)?;
        let stream = Stream {
            rows: t,
            dim: d,
            tokens: n,
        };
        let shape = AttentionShape {
            samples: r,
            tokens: n,
            heads: c.heads,
            head_dim: c.head_dim(),
        };
        let ad = &self.kernels.adaln;
        for (i, ba) in acts.blocks.iter().enumerate() {
            let name = |s: &str| format!("blocks.{i}.{s}");
            self.linear(
                dev,
                enc,
                r,
                d,
                6 * d,
                &acts.sc,
                &name("adaLN_modulation.1"),
                &ba.modv,
            )?;
            let md = |shift: u32, scale: u32, gate: u32| Modulation {
                region: (&ba.modv).into(),
                stride: 6 * d,
                shift: shift * d,
                scale: scale * d,
                gate: gate * d,
            };
            ad.record_ln_modulate(
                dev,
                enc,
                stream,
                &acts.x,
                md(0, 1, 2),
                &ba.h1,
                &ba.xhat1,
                &ba.rstd1,
            )?;
            self.linear(dev, enc, t, d, 3 * d, &ba.h1, &name("attn.qkv"), &ba.qkv)?;
            self.kernels
                .attention
                .record_forward(dev, enc, shape, &ba.qkv, &ba.o, &ba.lse)?;
            self.linear(dev, enc, t, d, d, &ba.o, &name("attn.proj"), &ba.a)?;
            ad.record_gated_residual(dev, enc, stream, &ba.a, md(0, 1, 2), &acts.x)?;
            ad.record_ln_modulate(
                dev,
                enc,
                stream,
                &acts.x,
                md(3, 4, 5),
                &ba.h2,
                &ba.xhat2,
                &ba.rstd2,
            )?;
            self.linear(dev, enc, t, d, m, &ba.h2, &name("mlp.fc1"), &ba.f1)?;
            self.kernels
                .act
                .record_forward(dev, enc, Activation::Gelu, t * m, &ba.f1, &ba.g)?;
            self.linear(dev, enc, t, m, d, &ba.g, &name("mlp.fc2"), &ba.f2)?;
            ad.record_gated_residual(dev, enc, stream, &ba.f2, md(3, 4, 5), &acts.x)?;
            if let Some(tap) = tap.filter(|t| t.block as usize == i) {
                enc.copy_buffer_to_buffer(&acts.x, 0, tap.buffer, 0, 4 * t as u64 * d as u64);
            }
        }
        self.linear(
            dev,
            enc,
            r,
            d,
            2 * d,
            &acts.sc,
            "final_layer.adaLN_modulation.1",
            &acts.modf,
        )?;
        let mf = Modulation {
            region: (&acts.modf).into(),
            stride: 2 * d,
            shift: 0,
            scale: d,
            gate: 0,
        };
        ad.record_ln_modulate(
            dev,
            enc,
            stream,
            &acts.x,
            mf,
            &acts.hf,
            &acts.xhatf,
            &acts.rstdf,
        )?;
        self.linear(dev, enc, t, d, k, &acts.hf, "final_layer.linear", &acts.out)
    }

    /// The backward from ∂L/∂out (R·N, p²·C): overwrites every tensor of `self.grads`. Needs
    /// the activations of the forward just recorded with the same `patches`.
    pub fn record_backward<'a>(
        &self,
        dev: &wgpu::Device,
        enc: &mut wgpu::CommandEncoder,
        acts: &Activations,
        patches: impl Into<Region<'a>>,
        dout: &wgpu::Buffer,
    ) -> Result<()> {
        self.record_backward_injected(dev, enc, acts, patches, dout, None)
    }

    /// [`Self::record_backward`] for a loss that also read a block's output: `inject.buffer`
    /// holds ∂L/∂(residual stream after block `inject.block`), R·N·D values, added where the
    /// backward reaches that point.
    pub fn record_backward_injected<'a>(
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
        let c = &self.config;
        let (b, r) = (acts.batch, acts.rows());
        let (n, d, k, m) = (c.tokens(), c.dim, c.token_dim(), c.mlp_dim());
        let t = r * n;
        let s = &acts.scratch;
        let ad = &self.kernels.adaln;
        let stream = Stream {
            rows: t,
            dim: d,
            tokens: n,
        };
        let shape = AttentionShape {
            samples: r,
            tokens: n,
            heads: c.heads,
            head_dim: c.head_dim(),
        };
        // d(shift), d(scale) of a modulate into columns of `dmod`, given dh and x̂.
        let mod_grads = |enc: &mut wgpu::CommandEncoder,
                         dh: &wgpu::Buffer,
                         xhat: &wgpu::Buffer,
                         dmod: &wgpu::Buffer,
                         stride: u32,
                         shift: u32,
                         scale: u32|
         -> Result<()> {
            let out = |col| Columns {
                region: dmod.into(),
                stride,
                col,
            };
            ad.record_segment_sums(
                dev,
                enc,
                r,
                n,
                d,
                Columns::whole(dh, d),
                None,
                out(shift),
                false,
            )?;
            ad.record_segment_sums(
                dev,
                enc,
                r,
                n,
                d,
                Columns::whole(dh, d),
                Some(Columns::whole(xhat, d)),
                out(scale),
                false,
            )
        };
        // Final layer.
        self.linear_backward(
            dev,
            enc,
            t,
            d,
            k,
            &acts.hf,
            dout,
            "final_layer.linear",
            Some((&s.dh, false)),
        )?;
        let mf = Modulation {
            region: (&acts.modf).into(),
            stride: 2 * d,
            shift: 0,
            scale: d,
            gate: 0,
        };
        mod_grads(enc, &s.dh, &acts.xhatf, &s.dmod, 2 * d, 0, d)?;
        ad.record_ln_modulate_backward(
            dev,
            enc,
            stream,
            &acts.xhatf,
            &acts.rstdf,
            mf,
            &s.dh,
            &s.dx,
            false,
        )?;
        self.linear_backward(
            dev,
            enc,
            r,
            d,
            2 * d,
            &acts.sc,
            &s.dmod,
            "final_layer.adaLN_modulation.1",
            Some((&s.dsc, false)),
        )?;
        for (i, ba) in acts.blocks.iter().enumerate().rev() {
            if let Some(g) = inject.filter(|g| g.block as usize == i) {
                self.kernels.embed.record_fold_repeats(
                    dev,
                    enc,
                    t * d,
                    1,
                    g.buffer,
                    &s.dx,
                    true,
                )?;
            }
            let name = |x: &str| format!("blocks.{i}.{x}");
            let md = |shift: u32, scale: u32, gate: u32| Modulation {
                region: (&ba.modv).into(),
                stride: 6 * d,
                shift: shift * d,
                scale: scale * d,
                gate: gate * d,
            };
            let dgate = |enc: &mut wgpu::CommandEncoder, branch: &wgpu::Buffer, col: u32| {
                ad.record_segment_sums(
                    dev,
                    enc,
                    r,
                    n,
                    d,
                    Columns::whole(&s.dx, d),
                    Some(Columns::whole(branch, d)),
                    Columns {
                        region: (&s.dmod).into(),
                        stride: 6 * d,
                        col: col * d,
                    },
                    false,
                )
            };
            // MLP branch.
            ad.record_gated_residual_backward(
                dev,
                enc,
                stream,
                &s.dx,
                md(3, 4, 5),
                &s.dbranch,
                false,
            )?;
            dgate(enc, &ba.f2, 5)?;
            self.linear_backward(
                dev,
                enc,
                t,
                m,
                d,
                &ba.g,
                &s.dbranch,
                &name("mlp.fc2"),
                Some((&s.dg, false)),
            )?;
            self.kernels.act.record_backward(
                dev,
                enc,
                Activation::Gelu,
                t * m,
                &ba.f1,
                &s.dg,
                &s.df1,
                false,
            )?;
            self.linear_backward(
                dev,
                enc,
                t,
                d,
                m,
                &ba.h2,
                &s.df1,
                &name("mlp.fc1"),
                Some((&s.dh, false)),
            )?;
            mod_grads(enc, &s.dh, &ba.xhat2, &s.dmod, 6 * d, 3 * d, 4 * d)?;
            ad.record_ln_modulate_backward(
                dev,
                enc,
                stream,
                &ba.xhat2,
                &ba.rstd2,
                md(3, 4, 5),
                &s.dh,
                &s.dx,
                true,
            )?;
            // Attention branch.
            ad.record_gated_residual_backward(
                dev,
                enc,
                stream,
                &s.dx,
                md(0, 1, 2),
                &s.dbranch,
                false,
            )?;
            dgate(enc, &ba.a, 2)?;
            self.linear_backward(
                dev,
                enc,
                t,
                d,
                d,
                &ba.o,
                &s.dbranch,
                &name("attn.proj"),
                Some((&s.d_o, false)),
            )?;
            self.kernels.attention.record_backward(
                dev, enc, shape, &ba.qkv, &ba.o, &ba.lse, &s.d_o, &s.dqkv, &s.delta,
            )?;
            self.linear_backward(
                dev,
                enc,
                t,
                d,
                3 * d,
                &ba.h1,
                &s.dqkv,
                &name("attn.qkv"),
                Some((&s.dh, false)),
            )?;
            mod_grads(enc, &s.dh, &ba.xhat1, &s.dmod, 6 * d, 0, d)?;
            ad.record_ln_modulate_backward(
                dev,
                enc,
                stream,
                &ba.xhat1,
                &ba.rstd1,
                md(0, 1, 2),
                &s.dh,
                &s.dx,
                true,
            )?;
            self.linear_backward(
                dev,
                enc,
                r,
                d,
                6 * d,
                &acts.sc,
                &s.dmod,
                &name("adaLN_modulation.1"),
                Some((&s.dsc, true)),
            )?;
        }
        // Condition, label table, timestep MLP.
        self.kernels.act.record_backward(
            dev,
            enc,
            Activation::Silu,
            r * d,
            &acts.c,
            &s.dsc,
            &s.dc,
            false,
        )?;
        let labels = Labels {
            buffer: (&acts.labels).into(),
            rows: r,
            slots: c.label_slots,
        };
        self.kernels.embed.record_label_backward(
            dev,
            enc,
            d,
            c.table_rows(),
            &s.dc,
            labels,
            self.grad("y_embedder.embedding_table.weight"),
            false,
        )?;
        self.kernels.embed.record_fold_repeats(
            dev,
            enc,
            b * d,
            acts.repeats,
            &s.dc,
            &s.dtemb,
            false,
        )?;
        self.linear_backward(
            dev,
            enc,
            b,
            d,
            d,
            &acts.ts,
            &s.dtemb,
            "t_embedder.mlp.2",
            Some((&s.dts, false)),
        )?;
        self.kernels.act.record_backward(
            dev,
            enc,
            Activation::Silu,
            b * d,
            &acts.th1,
            &s.dts,
            &s.dth1,
            false,
        )?;
        self.linear_backward(
            dev,
            enc,
            b,
            256,
            d,
            &acts.tfreq,
            &s.dth1,
            "t_embedder.mlp.0",
            None,
        )?;
        // Patch embedding, shared by the repeats.
        self.kernels.embed.record_fold_repeats(
            dev,
            enc,
            b * n * d,
            acts.repeats,
            &s.dx,
            &s.dtok,
            false,
        )?;
        let patches = patches.into();
        self.kernels.matmul.record(
            dev,
            enc,
            &MatmulArgs {
                m: d,
                k: b * n,
                n: k,
                a: (&s.dtok).into(),
                a_layout: Layout::Transposed,
                b: patches,
                b_layout: Layout::RowMajor,
                bias: None,
                c: self.grad("x_embedder.proj.weight"),
                accumulate: false,
            },
        )?;
        ad.record_segment_sums(
            dev,
            enc,
            1,
            b * n,
            d,
            Columns::whole(&s.dtok, d),
            None,
            Columns::whole(self.grad("x_embedder.proj.bias"), d),
            false,
        )
    }
}

impl Dit {
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

/// A block's output buffer: where [`Dit::record_forward_tapped`] copies the residual stream
/// after block `block`, or the gradient [`Dit::record_backward_injected`] adds there.
#[derive(Clone, Copy, Debug)]
pub struct Tap<'a> {
    pub block: u32,
    /// R·N·D values (R = the activations' rows).
    pub buffer: &'a wgpu::Buffer,
}

/// The IMBA loss on a dual forward's output: splits `acts.out` into ε_c (rows 0..B) and ε_u
/// (rows B..2B), runs the fused loss, and joins its two gradients into `dout` for
/// [`Dit::record_backward`].
pub struct DualLoss {
    shape: crate::kernels::TokenShape,
    pred_cond: wgpu::Buffer,
    pred_uncond: wgpu::Buffer,
    /// D per token (B, N).
    pub weights: wgpu::Buffer,
    grad_cond: wgpu::Buffer,
    grad_uncond: wgpu::Buffer,
    /// [L, L_c, L_u, mean D].
    pub scalars: wgpu::Buffer,
    workspace: crate::kernels::LossWorkspace,
    /// ∂L/∂out (2B·N, p²·C).
    pub dout: wgpu::Buffer,
}

impl DualLoss {
    pub fn new(
        device: &wgpu::Device,
        loss: &crate::kernels::LossKernels,
        c: &DitConfig,
        batch: u32,
    ) -> Result<Self> {
        let shape = crate::kernels::TokenShape::new(batch, c.tokens(), c.token_dim());
        shape.validate()?;
        let e = shape.elements();
        Ok(Self {
            shape,
            pred_cond: buffer(device, "pred_cond", e),
            pred_uncond: buffer(device, "pred_uncond", e),
            weights: buffer(device, "imba_weights", shape.rows()),
            grad_cond: buffer(device, "grad_cond", e),
            grad_uncond: buffer(device, "grad_uncond", e),
            scalars: buffer(device, "loss_scalars", 4),
            workspace: loss.workspace(device, shape)?,
            dout: buffer(device, "dout", 2 * e),
        })
    }

    pub fn record(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        loss: &crate::kernels::LossKernels,
        acts: &Activations,
        target: crate::kernels::Target,
        params: &crate::kernels::ImbaParams,
    ) -> Result<()> {
        if acts.repeats != 2 || acts.batch != self.shape.batch {
            return Err(Error::Shape(format!(
                "the dual loss needs activations of a dual forward (repeats 2) of batch {}; got \
                 repeats {} and batch {}",
                self.shape.batch, acts.repeats, acts.batch
            )));
        }
        let bytes = self.shape.elements() * 4;
        encoder.copy_buffer_to_buffer(&acts.out, 0, &self.pred_cond, 0, bytes);
        encoder.copy_buffer_to_buffer(&acts.out, bytes, &self.pred_uncond, 0, bytes);
        loss.record_imba(
            device,
            encoder,
            &crate::kernels::ImbaLossArgs {
                shape: self.shape,
                pred_cond: &self.pred_cond,
                pred_uncond: &self.pred_uncond,
                target,
                weights: &self.weights,
                grad_cond: &self.grad_cond,
                grad_uncond: &self.grad_uncond,
                scalars: &self.scalars,
                workspace: &self.workspace,
            },
            params,
        )?;
        encoder.copy_buffer_to_buffer(&self.grad_cond, 0, &self.dout, 0, bytes);
        encoder.copy_buffer_to_buffer(&self.grad_uncond, 0, &self.dout, bytes, bytes);
        Ok(())
    }
}
