//! Forward process into patch tokens, and label dropout.

use super::rng;
use crate::kernels::ImageGeometry;

/// Token index (b, n, k) of flat element `idx` of (B,C,H,W) for the DiT's patch-embedding
/// input, channel order (c, i, j).
pub fn embed_token_index(g: &ImageGeometry, idx: usize) -> usize {
    let (c_, h_, w_, p) = (
        g.channels as usize,
        g.height as usize,
        g.width as usize,
        g.patch as usize,
    );
    let w = idx % w_;
    let h = (idx / w_) % h_;
    let c = (idx / (w_ * h_)) % c_;
    let b = idx / (w_ * h_ * c_);
    let n_tokens = (h_ / p) * (w_ / p);
    let n = (h / p) * (w_ / p) + w / p;
    let k = (c * p + h % p) * p + w % p;
    (b * n_tokens + n) * (c_ * p * p) + k
}

/// Flat (B,C,H,W) index of value k of token (b, n) in the prediction layout, order (i, j, c).
pub fn prediction_flat_index(g: &ImageGeometry, b: usize, n: usize, k: usize) -> usize {
    let (c_, h_, w_, p) = (
        g.channels as usize,
        g.height as usize,
        g.width as usize,
        g.patch as usize,
    );
    let tw = w_ / p;
    let c = k % c_;
    let j = (k / c_) % p;
    let i = k / (c_ * p);
    let h = (n / tw) * p + i;
    let w = (n % tw) * p + j;
    ((b * c_ + c) * h_ + h) * w_ + w
}

/// x_t = a_b·x0 + s_b·ε as embedding tokens, with per-sample coefficients (a_b, s_b).
pub fn noise_to_tokens(
    g: &ImageGeometry,
    seed: u32,
    step: u32,
    x0: &[f32],
    coef: &[[f32; 2]],
) -> Vec<f32> {
    let total = g.elements() as usize;
    let per_sample = total / g.batch as usize;
    let mut out = vec![0.0f32; total];
    for (idx, &x) in x0.iter().enumerate().take(total) {
        let [a, s] = coef[idx / per_sample];
        out[embed_token_index(g, idx)] = a * x + s * rng::normal(idx as u32, 0, seed, step);
    }
    out
}

/// The target in prediction layout (B, N, K), (i, j, c) order: ε, or ε − x0 for the
/// velocity target when `x0` is given.
pub fn target_tokens(g: &ImageGeometry, seed: u32, step: u32, x0: Option<&[f32]>) -> Vec<f32> {
    let s = g.token_shape();
    let (n_, k_) = (s.tokens as usize, s.token_dim as usize);
    let mut out = vec![0.0f32; s.elements() as usize];
    for b in 0..g.batch as usize {
        for n in 0..n_ {
            for k in 0..k_ {
                let flat = prediction_flat_index(g, b, n, k);
                let eps = rng::normal(flat as u32, 0, seed, step);
                out[(b * n_ + n) * k_ + k] = match x0 {
                    Some(x0) => eps - x0[flat],
                    None => eps,
                };
            }
        }
    }
    out
}

/// Whether sample b's label is dropped: the 24-bit word of Philox stream 1, counter b, key
/// (seed, step), is below `threshold` (see `kernels::noise::dropout_threshold`).
pub fn dropped(seed: u32, step: u32, b: u32, threshold: u32) -> bool {
    let x = rng::philox4x32_10([b, 1, 0, 0], [seed, step]);
    (x[0] >> 8) < threshold
}

/// Label dropout: label b becomes `null_label` when [`dropped`] says so.
pub fn label_dropout(
    seed: u32,
    step: u32,
    threshold: u32,
    null_label: u32,
    labels: &[u32],
) -> Vec<u32> {
    labels
        .iter()
        .enumerate()
        .map(|(b, &l)| {
            if dropped(seed, step, b as u32, threshold) {
                null_label
            } else {
                l
            }
        })
        .collect()
}
