//! Images ↔ patch tokens on the CPU, in the two orders the model uses: its input tokens
//! (c, i, j) (the patch embedding's flattening, as the noise kernel writes x_t) and its output
//! tokens (i, j, c) (DiT's unpatchify order, the loss's layout).

use crate::kernels::ImageGeometry;

/// (B, C, H, W) → (B·N, C·p²) input tokens in (c, i, j) order.
pub fn patchify(images: &[f32], g: &ImageGeometry) -> Vec<f32> {
    let mut out = vec![0.0; images.len()];
    for (idx, &v) in images.iter().enumerate() {
        out[embed_token_index(g, idx)] = v;
    }
    out
}

/// (B, C, H, W) → (B·N, p²·C) output-layout tokens in (i, j, c) order (e.g. an explicit
/// noise target for the loss).
pub fn output_tokens(images: &[f32], g: &ImageGeometry) -> Vec<f32> {
    let t = g.token_shape();
    let mut out = Vec::with_capacity(images.len());
    for b in 0..t.batch as usize {
        for n in 0..t.tokens as usize {
            for k in 0..t.token_dim as usize {
                out.push(images[prediction_flat_index(g, b, n, k)]);
            }
        }
    }
    out
}

/// The inverse of [`output_tokens`]: the model's prediction as images (B, C, H, W).
pub fn unpatchify(tokens: &[f32], g: &ImageGeometry) -> Vec<f32> {
    let t = g.token_shape();
    let mut out = vec![0.0; tokens.len()];
    let mut i = 0;
    for b in 0..t.batch as usize {
        for n in 0..t.tokens as usize {
            for k in 0..t.token_dim as usize {
                out[prediction_flat_index(g, b, n, k)] = tokens[i];
                i += 1;
            }
        }
    }
    out
}

/// The inverse of [`patchify`]: input tokens (B·N, C·p²) in (c, i, j) order back to images
/// (e.g. a gradient with respect to the model's input).
pub fn unpatchify_input(tokens: &[f32], g: &ImageGeometry) -> Vec<f32> {
    (0..tokens.len())
        .map(|idx| tokens[embed_token_index(g, idx)])
        .collect()
}

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
