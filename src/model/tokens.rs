//! Images ↔ patch tokens on the CPU, in the two orders the model uses: its input tokens
//! (c, i, j) (the patch embedding's flattening, as the noise kernel writes x_t) and its output
//! tokens (i, j, c) (DiT's unpatchify order, the loss's layout).

use crate::kernels::ImageGeometry;
use crate::reference::noise::{embed_token_index, prediction_flat_index};

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
