//! The model's memory: every saved activation of a forward, the conditions of its rows and
//! the backward's scratch, as separate buffers sized from one plan (which the memory report
//! reads too). Separate buffers, not one arena buffer, because wgpu forbids binding one
//! buffer both read-only and writable in a dispatch.

use crate::kernels::NO_LABEL;
use crate::model::{sincos, DitConfig};
use crate::{Error, Result};

pub(super) fn usage() -> wgpu::BufferUsages {
    crate::gpu::storage_usage()
}

/// A storage buffer of `values` f32 (at least 16 bytes) with the usages the kernels need.
pub fn buffer(device: &wgpu::Device, label: &str, values: u64) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (values * 4).max(16),
        usage: usage(),
        mapped_at_creation: false,
    })
}

/// One block's saved activations.
pub struct BlockActs {
    /// adaLN modulation of the block: six chunks of D per sample (R, 6D).
    pub modv: wgpu::Buffer,
    /// x̂ of the attention branch's LayerNorm (R·N, D).
    pub xhat1: wgpu::Buffer,
    /// 1/σ of the attention branch's LayerNorm (R·N).
    pub rstd1: wgpu::Buffer,
    /// The modulated input of the attention branch (R·N, D).
    pub h1: wgpu::Buffer,
    /// q, k, v (R·N, 3D).
    pub qkv: wgpu::Buffer,
    /// The attention's output before its projection (R·N, D).
    pub o: wgpu::Buffer,
    /// The attention's log-sum-exp per query row (R·heads·N).
    pub lse: wgpu::Buffer,
    /// The attention branch's output after its projection (R·N, D).
    pub a: wgpu::Buffer,
    /// x̂ of the MLP branch's LayerNorm (R·N, D).
    pub xhat2: wgpu::Buffer,
    /// 1/σ of the MLP branch's LayerNorm (R·N).
    pub rstd2: wgpu::Buffer,
    /// The modulated input of the MLP branch (R·N, D).
    pub h2: wgpu::Buffer,
    /// The MLP's first linear, before GELU (R·N, 4D).
    pub f1: wgpu::Buffer,
    /// GELU of `f1` (R·N, 4D).
    pub g: wgpu::Buffer,
    /// The MLP branch's output (R·N, D).
    pub f2: wgpu::Buffer,
}

/// Every buffer a forward and backward of `batch` samples × `repeats` label sets use:
/// saved activations, the inputs' conditions, and the backward's scratch. Separate buffers
/// (not one arena buffer) because wgpu forbids binding one buffer both read-only and
/// writable in a dispatch.
pub struct Activations {
    /// Samples B of one label set.
    pub batch: u32,
    /// Label sets R/B per sample (2 for a dual forward: conditional and unconditional).
    pub repeats: u32,
    /// Timestep features (B, 256), from [`Activations::set_conditions`].
    pub tfreq: wgpu::Buffer,
    /// Labels (R, label_slots) u32.
    pub labels: wgpu::Buffer,
    /// The patch embeddings (B·N, D).
    pub tok: wgpu::Buffer,
    /// The residual stream (R·N, D).
    pub x: wgpu::Buffer,
    /// The timestep MLP's hidden layer before SiLU (B, D).
    pub th1: wgpu::Buffer,
    /// SiLU of `th1` (B, D).
    pub ts: wgpu::Buffer,
    /// The timestep embedding (B, D).
    pub temb: wgpu::Buffer,
    /// The conditioning c = t_emb + label embedding (R, D).
    pub c: wgpu::Buffer,
    /// SiLU of c, the adaLN linears' input (R, D).
    pub sc: wgpu::Buffer,
    /// Each block's saved activations.
    pub blocks: Vec<BlockActs>,
    /// The final layer's modulation: shift and scale (R, 2D).
    pub modf: wgpu::Buffer,
    /// x̂ of the final LayerNorm (R·N, D).
    pub xhatf: wgpu::Buffer,
    /// 1/σ of the final LayerNorm (R·N).
    pub rstdf: wgpu::Buffer,
    /// The final layer's modulated input (R·N, D).
    pub hf: wgpu::Buffer,
    /// The prediction (R·N, p²·C), tokens in (i, j, c) order.
    pub out: wgpu::Buffer,
    pub(super) scratch: Scratch,
    /// (name, bytes) of every buffer, for the memory report.
    sizes: Vec<(String, u64)>,
}

pub(super) struct Scratch {
    pub(super) dx: wgpu::Buffer,
    pub(super) dh: wgpu::Buffer,
    pub(super) dbranch: wgpu::Buffer,
    pub(super) d_o: wgpu::Buffer,
    pub(super) dqkv: wgpu::Buffer,
    pub(super) dg: wgpu::Buffer,
    pub(super) df1: wgpu::Buffer,
    pub(super) dmod: wgpu::Buffer,
    pub(super) dsc: wgpu::Buffer,
    pub(super) dc: wgpu::Buffer,
    pub(super) dtemb: wgpu::Buffer,
    pub(super) dts: wgpu::Buffer,
    pub(super) dth1: wgpu::Buffer,
    pub(super) dtok: wgpu::Buffer,
    pub(super) delta: wgpu::Buffer,
}

/// (buffer name, f32 values) of a group of buffers.
pub type Plan = Vec<(String, u64)>;

/// Sizes of an arena — shared buffers, one block's saved activations, the backward's
/// scratch — by buffer name: used by the allocation and by the memory report, so the
/// report is what is allocated.
pub fn arena_plan(c: &DitConfig, batch: u32, repeats: u32) -> (Plan, Plan, Plan) {
    let (b, r) = (batch as u64, batch as u64 * repeats as u64);
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
    /// The buffers for `batch` samples × `repeats` label sets of model `c`, allocated.
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
