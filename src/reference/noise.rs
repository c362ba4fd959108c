//! Forward process into patch tokens, and label dropout.

use crate::kernels::ImageGeometry;
use crate::rng;

pub use crate::model::tokens::{embed_token_index, prediction_flat_index};

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

pub use crate::rng::dropped;

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
