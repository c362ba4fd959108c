//! f64 references of DiT's embeddings: the sinusoidal timestep features, the fixed 2-D
//! sin-cos position embedding, and the label/concept condition (`shaders/embed.wgsl`).

pub use crate::model::sincos::{pos_embed_2d, timestep_features, TIMESTEP_FREQUENCIES};

/// c\[row\] = t_emb\[row mod batch\] + Σ_k table\[labels\[row·slots + k\]\]; labels ≥ the table's
/// rows are empty slots.
pub fn condition(
    t_emb: &[f64],
    table: &[f64],
    labels: &[u32],
    slots: usize,
    dim: usize,
) -> Vec<f64> {
    let batch = t_emb.len() / dim;
    let table_rows = table.len() / dim;
    let rows = labels.len() / slots;
    let mut c = vec![0.0; rows * dim];
    for row in 0..rows {
        for d in 0..dim {
            let mut v = t_emb[(row % batch) * dim + d];
            for &j in &labels[row * slots..(row + 1) * slots] {
                if (j as usize) < table_rows {
                    v += table[j as usize * dim + d];
                }
            }
            c[row * dim + d] = v;
        }
    }
    c
}

/// d(table) from dc: each row's gradient added to the rows of its labels.
pub fn label_backward(
    dc: &[f64],
    labels: &[u32],
    slots: usize,
    table_rows: usize,
    dim: usize,
) -> Vec<f64> {
    let mut dt = vec![0.0; table_rows * dim];
    for (row, ls) in labels.chunks(slots).enumerate() {
        for &j in ls {
            if (j as usize) < table_rows {
                for d in 0..dim {
                    dt[j as usize * dim + d] += dc[row * dim + d];
                }
            }
        }
    }
    dt
}

/// Σ_r x[r·len + i]: the backward of repeating a tensor `x.len()/len` times.
pub fn fold_repeats(x: &[f64], len: usize) -> Vec<f64> {
    let mut out = vec![0.0; len];
    for chunk in x.chunks(len) {
        for (o, v) in out.iter_mut().zip(chunk) {
            *o += v;
        }
    }
    out
}
