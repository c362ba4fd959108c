//! The whole DiT in f64, forward and backward, written as the math of docs/design.md#the-dit on top of
//! the per-kernel references: the oracle the GPU model is tested against (and itself checked
//! against PyTorch's autograd through the golden files).
//!
//! Inputs are what the GPU model takes: x_t as patch tokens (B·N, C·p²) in (c, i, j) order,
//! the timestep features (B, 256), and `repeats`·B label rows (the dual forward: the B
//! conditional rows, then B rows of ∅). The output is (R·N, p²·C) tokens in (i, j, c)
//! order, R = repeats·B.

use super::activation::{silu, silu_grad};
use super::adaln as ln;
use super::attention::{self as at, AttentionShape};
use super::embed;
use super::matmul::{linear, linear_backward};
use crate::model::{DitConfig, ParamLayout};
use crate::reference::activation::{gelu, gelu_grad};

/// Named views of a flat f64 parameter (or gradient) vector.
pub struct Params<'a> {
    /// Where each named tensor lives in `flat`.
    pub layout: &'a ParamLayout,
    /// The values.
    pub flat: &'a [f64],
}

impl Params<'_> {
    /// The tensor named `name` (panics on an unknown name: the reference's names are fixed).
    pub fn get(&self, name: &str) -> &[f64] {
        let t = self.layout.get(name);
        &self.flat[t.offset..t.offset + t.len()]
    }
}

/// One block's saved activations.
struct BlockCache {
    modv: Vec<f64>,
    xhat1: Vec<f64>,
    rstd1: Vec<f64>,
    h1: Vec<f64>,
    qkv: Vec<f64>,
    o: Vec<f64>,
    a: Vec<f64>,
    xhat2: Vec<f64>,
    rstd2: Vec<f64>,
    h2: Vec<f64>,
    f1: Vec<f64>,
    g: Vec<f64>,
    f2: Vec<f64>,
    /// The residual stream after the block (R·N, D): the features CCUA's contrastive loss
    /// reads.
    out: Vec<f64>,
}

/// The forward's output and everything the backward needs.
pub struct Forward {
    /// (R·N, p²·C) in (i, j, c) order.
    pub out: Vec<f64>,
    patches: Vec<f64>,
    tfreq: Vec<f64>,
    th1: Vec<f64>,
    ts: Vec<f64>,
    c: Vec<f64>,
    sc: Vec<f64>,
    blocks: Vec<BlockCache>,
    modf: Vec<f64>,
    xhatf: Vec<f64>,
    rstdf: Vec<f64>,
    hf: Vec<f64>,
    labels: Vec<u32>,
    batch: usize,
}

/// Column block `c` (of `width` values) of every row of a (rows, stride) matrix.
fn cols(m: &[f64], stride: usize, c: usize, width: usize) -> Vec<f64> {
    m.chunks(stride)
        .flat_map(|r| r[c * width..(c + 1) * width].to_vec())
        .collect()
}

/// Writes `v` (rows, width) into column block `c` of a (rows, stride) matrix.
fn set_cols(m: &mut [f64], stride: usize, c: usize, width: usize, v: &[f64]) {
    for (r, vr) in m.chunks_mut(stride).zip(v.chunks(width)) {
        r[c * width..(c + 1) * width].copy_from_slice(vr);
    }
}

fn silu_all(x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| silu(v)).collect()
}

/// dx = dy·f'(x) elementwise.
fn act_backward(x: &[f64], dy: &[f64], f: fn(f64) -> f64) -> Vec<f64> {
    x.iter().zip(dy).map(|(&a, &g)| g * f(a)).collect()
}

fn add(a: &mut [f64], b: &[f64]) {
    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
}

/// The forward pass. `labels` holds R·label_slots entries (R a multiple of the batch).
pub fn forward(
    cfg: &DitConfig,
    p: &Params,
    patches: &[f64],
    tfreq: &[f64],
    labels: &[u32],
) -> Forward {
    let (d, n, k) = (
        cfg.dim as usize,
        cfg.tokens() as usize,
        cfg.token_dim() as usize,
    );
    let slots = cfg.label_slots as usize;
    let batch = tfreq.len() / 256;
    let rows = labels.len() / slots;
    let mut x = embed_tokens(cfg, p, patches, rows / batch);
    let (th1, ts, c) = condition(p, tfreq, labels, slots, d);
    let sc = silu_all(&c);
    let dims = BlockDims {
        d,
        n,
        m: cfg.mlp_dim() as usize,
        shape: AttentionShape {
            samples: rows,
            tokens: n,
            heads: cfg.heads as usize,
            head_dim: cfg.head_dim() as usize,
        },
    };
    let blocks = (0..cfg.depth)
        .map(|i| block(p, i, &mut x, &sc, &dims))
        .collect();
    let modf = linear(
        &sc,
        p.get("final_layer.adaLN_modulation.1.weight"),
        p.get("final_layer.adaLN_modulation.1.bias"),
        d,
        2 * d,
    );
    let (xhatf, rstdf) = ln::layer_norm(&x, d);
    let hf = ln::modulate(
        &xhatf,
        &cols(&modf, 2 * d, 0, d),
        &cols(&modf, 2 * d, 1, d),
        n,
        d,
    );
    let out = linear(
        &hf,
        p.get("final_layer.linear.weight"),
        p.get("final_layer.linear.bias"),
        d,
        k,
    );
    Forward {
        out,
        patches: patches.to_vec(),
        tfreq: tfreq.to_vec(),
        th1,
        ts,
        c,
        sc,
        blocks,
        modf,
        xhatf,
        rstdf,
        hf,
        labels: labels.to_vec(),
        batch,
    }
}

/// Patch embedding (once for all repeats) plus the 2-D position embedding, repeated
/// `repeats` times: the residual stream entering the first block, (R·N, D).
fn embed_tokens(cfg: &DitConfig, p: &Params, patches: &[f64], repeats: usize) -> Vec<f64> {
    let (d, n) = (cfg.dim as usize, cfg.tokens() as usize);
    let tok = linear(
        patches,
        p.get("x_embedder.proj.weight"),
        p.get("x_embedder.proj.bias"),
        cfg.token_dim() as usize,
        d,
    );
    let pos = embed::pos_embed_2d(
        d,
        (cfg.height / cfg.patch) as usize,
        (cfg.width / cfg.patch) as usize,
    );
    let mut x: Vec<f64> = Vec::with_capacity(repeats * tok.len());
    for _ in 0..repeats {
        x.extend(tok.iter().enumerate().map(|(i, v)| v + pos[i % (n * d)]));
    }
    x
}

/// The timestep MLP (once per sample) and the condition per row: (the MLP's hidden layer,
/// its SiLU, c = t-embedding + the rows' label embeddings).
fn condition(
    p: &Params,
    tfreq: &[f64],
    labels: &[u32],
    slots: usize,
    d: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let th1 = linear(
        tfreq,
        p.get("t_embedder.mlp.0.weight"),
        p.get("t_embedder.mlp.0.bias"),
        256,
        d,
    );
    let ts = silu_all(&th1);
    let temb = linear(
        &ts,
        p.get("t_embedder.mlp.2.weight"),
        p.get("t_embedder.mlp.2.bias"),
        d,
        d,
    );
    let c = embed::condition(
        &temb,
        p.get("y_embedder.embedding_table.weight"),
        labels,
        slots,
        d,
    );
    (th1, ts, c)
}

/// The sizes one block needs: width, tokens, MLP width and the attention's shape.
struct BlockDims {
    d: usize,
    n: usize,
    m: usize,
    shape: AttentionShape,
}

/// Block `i` on the residual stream `x` (updated in place), conditioned by SiLU(c) = `sc`;
/// returns what its backward needs.
fn block(p: &Params, i: u32, x: &mut [f64], sc: &[f64], dims: &BlockDims) -> BlockCache {
    let BlockDims { d, n, m, shape } = *dims;
    let w = |s: &str| p.get(&format!("blocks.{i}.{s}"));
    let modv = linear(
        sc,
        w("adaLN_modulation.1.weight"),
        w("adaLN_modulation.1.bias"),
        d,
        6 * d,
    );
    let chunk = |j| cols(&modv, 6 * d, j, d);
    let (xhat1, rstd1) = ln::layer_norm(x, d);
    let h1 = ln::modulate(&xhat1, &chunk(0), &chunk(1), n, d);
    let qkv = linear(&h1, w("attn.qkv.weight"), w("attn.qkv.bias"), d, 3 * d);
    let o = at::attention(&qkv, shape);
    let a = linear(&o, w("attn.proj.weight"), w("attn.proj.bias"), d, d);
    ln::gated_residual(x, &a, &chunk(2), n, d);
    let (xhat2, rstd2) = ln::layer_norm(x, d);
    let h2 = ln::modulate(&xhat2, &chunk(3), &chunk(4), n, d);
    let f1 = linear(&h2, w("mlp.fc1.weight"), w("mlp.fc1.bias"), d, m);
    let g: Vec<f64> = f1.iter().map(|&v| gelu(v)).collect();
    let f2 = linear(&g, w("mlp.fc2.weight"), w("mlp.fc2.bias"), m, d);
    ln::gated_residual(x, &f2, &chunk(5), n, d);
    BlockCache {
        out: x.to_vec(),
        modv,
        xhat1,
        rstd1,
        h1,
        qkv,
        o,
        a,
        xhat2,
        rstd2,
        h2,
        f1,
        g,
        f2,
    }
}

impl Forward {
    /// The residual stream after block `i`, (R·N, D).
    pub fn block_output(&self, i: usize) -> &[f64] {
        &self.blocks[i].out
    }
}

/// Gradients of every parameter (flat, in `layout`) given ∂L/∂out.
pub fn backward(cfg: &DitConfig, p: &Params, f: &Forward, dout: &[f64]) -> Vec<f64> {
    backward_injected(cfg, p, f, dout, None)
}

/// [`backward`] for a loss that also reads the output of a block: `inject` = (block i,
/// ∂L/∂(residual stream after block i), (R·N, D)) is added where the backward reaches it.
pub fn backward_injected(
    cfg: &DitConfig,
    p: &Params,
    f: &Forward,
    dout: &[f64],
    inject: Option<(usize, &[f64])>,
) -> Vec<f64> {
    backward_full(cfg, p, f, dout, inject).0
}

/// [`backward_injected`] that also returns ∂L/∂patches, (B·N, C·p²) in the input tokens'
/// (c, i, j) order: what SeedSelect needs to reach the initial noise.
pub fn backward_full(
    cfg: &DitConfig,
    p: &Params,
    f: &Forward,
    dout: &[f64],
    inject: Option<(usize, &[f64])>,
) -> (Vec<f64>, Vec<f64>) {
    let (d, n, k) = (
        cfg.dim as usize,
        cfg.tokens() as usize,
        cfg.token_dim() as usize,
    );
    let (m, slots) = (cfg.mlp_dim() as usize, cfg.label_slots as usize);
    let rows = f.labels.len() / slots;
    let mut grads = vec![0.0; p.layout.total];
    let mut put = |name: &str, v: &[f64]| {
        let t = p.layout.get(name);
        grads[t.offset..t.offset + t.len()].copy_from_slice(v);
    };
    let shape = AttentionShape {
        samples: rows,
        tokens: n,
        heads: cfg.heads as usize,
        head_dim: cfg.head_dim() as usize,
    };
    // Final layer.
    let (dhf, dw, db) = linear_backward(&f.hf, p.get("final_layer.linear.weight"), dout, d, k);
    put("final_layer.linear.weight", &dw);
    put("final_layer.linear.bias", &db);
    let scalef = cols(&f.modf, 2 * d, 1, d);
    let (dxhat, dshift, dscale) = ln::modulate_backward(&f.xhatf, &scalef, &dhf, n, d);
    let mut dx = ln::layer_norm_backward(&f.xhatf, &f.rstdf, &dxhat, d);
    let mut dmodf = vec![0.0; rows * 2 * d];
    set_cols(&mut dmodf, 2 * d, 0, d, &dshift);
    set_cols(&mut dmodf, 2 * d, 1, d, &dscale);
    let (mut dsc, dw, db) = linear_backward(
        &f.sc,
        p.get("final_layer.adaLN_modulation.1.weight"),
        &dmodf,
        d,
        2 * d,
    );
    put("final_layer.adaLN_modulation.1.weight", &dw);
    put("final_layer.adaLN_modulation.1.bias", &db);
    // Blocks, last first.
    for i in (0..cfg.depth as usize).rev() {
        if let Some((_, g)) = inject.filter(|(j, _)| *j == i) {
            add(&mut dx, g);
        }
        let b = &f.blocks[i];
        let name = |s: &str| format!("blocks.{i}.{s}");
        let w = |s: &str| p.get(&name(s));
        let chunk = |j| cols(&b.modv, 6 * d, j, d);
        let mut dmod = vec![0.0; rows * 6 * d];
        // MLP branch: x += gate₂·fc2(gelu(fc1(h₂))).
        let (df2, dgate2) = ln::gated_residual_backward(&dx, &b.f2, &chunk(5), n, d);
        set_cols(&mut dmod, 6 * d, 5, d, &dgate2);
        let (dg, dw, db) = linear_backward(&b.g, w("mlp.fc2.weight"), &df2, m, d);
        put(&name("mlp.fc2.weight"), &dw);
        put(&name("mlp.fc2.bias"), &db);
        let df1 = act_backward(&b.f1, &dg, gelu_grad);
        let (dh2, dw, db) = linear_backward(&b.h2, w("mlp.fc1.weight"), &df1, d, m);
        put(&name("mlp.fc1.weight"), &dw);
        put(&name("mlp.fc1.bias"), &db);
        let (dxhat2, dshift2, dscale2) = ln::modulate_backward(&b.xhat2, &chunk(4), &dh2, n, d);
        set_cols(&mut dmod, 6 * d, 3, d, &dshift2);
        set_cols(&mut dmod, 6 * d, 4, d, &dscale2);
        add(
            &mut dx,
            &ln::layer_norm_backward(&b.xhat2, &b.rstd2, &dxhat2, d),
        );
        // Attention branch: x += gate₁·proj(attn(qkv(h₁))).
        let (da, dgate1) = ln::gated_residual_backward(&dx, &b.a, &chunk(2), n, d);
        set_cols(&mut dmod, 6 * d, 2, d, &dgate1);
        let (d_o, dw, db) = linear_backward(&b.o, w("attn.proj.weight"), &da, d, d);
        put(&name("attn.proj.weight"), &dw);
        put(&name("attn.proj.bias"), &db);
        let dqkv = at::attention_backward(&b.qkv, &d_o, shape);
        let (dh1, dw, db) = linear_backward(&b.h1, w("attn.qkv.weight"), &dqkv, d, 3 * d);
        put(&name("attn.qkv.weight"), &dw);
        put(&name("attn.qkv.bias"), &db);
        let (dxhat1, dshift1, dscale1) = ln::modulate_backward(&b.xhat1, &chunk(1), &dh1, n, d);
        set_cols(&mut dmod, 6 * d, 0, d, &dshift1);
        set_cols(&mut dmod, 6 * d, 1, d, &dscale1);
        add(
            &mut dx,
            &ln::layer_norm_backward(&b.xhat1, &b.rstd1, &dxhat1, d),
        );
        // adaLN linear on SiLU(c).
        let (dsc_i, dw, db) =
            linear_backward(&f.sc, w("adaLN_modulation.1.weight"), &dmod, d, 6 * d);
        put(&name("adaLN_modulation.1.weight"), &dw);
        put(&name("adaLN_modulation.1.bias"), &db);
        add(&mut dsc, &dsc_i);
    }
    // Condition: c = t_emb[row mod B] + Σ table[labels].
    let dc = act_backward(&f.c, &dsc, silu_grad);
    put(
        "y_embedder.embedding_table.weight",
        &embed::label_backward(&dc, &f.labels, slots, cfg.table_rows() as usize, d),
    );
    let dtemb = embed::fold_repeats(&dc, f.batch * d);
    let (dts, dw, db) = linear_backward(&f.ts, p.get("t_embedder.mlp.2.weight"), &dtemb, d, d);
    put("t_embedder.mlp.2.weight", &dw);
    put("t_embedder.mlp.2.bias", &db);
    let dth1 = act_backward(&f.th1, &dts, silu_grad);
    let (_, dw, db) = linear_backward(&f.tfreq, p.get("t_embedder.mlp.0.weight"), &dth1, 256, d);
    put("t_embedder.mlp.0.weight", &dw);
    put("t_embedder.mlp.0.bias", &db);
    // Patch embedding: the repeats share it.
    let dtok = embed::fold_repeats(&dx, f.batch * n * d);
    let (dpatches, dw, db) =
        linear_backward(&f.patches, p.get("x_embedder.proj.weight"), &dtok, k, d);
    put("x_embedder.proj.weight", &dw);
    put("x_embedder.proj.bias", &db);
    (grads, dpatches)
}
