//! f64 references of DiT's embeddings: the sinusoidal timestep features, the fixed 2-D
//! sin-cos position embedding, and the label/concept condition (`shaders/embed.wgsl`).

/// Frequencies of the timestep embedding.
pub const TIMESTEP_FREQUENCIES: usize = 256;

/// [cos(t·f_i), sin(t·f_i)] per timestep (cos first), f_i = exp(−ln(10⁴)·i/128): (B, 256).
pub fn timestep_features(t: &[f64]) -> Vec<f64> {
    let half = TIMESTEP_FREQUENCIES / 2;
    let mut out = Vec::with_capacity(t.len() * TIMESTEP_FREQUENCIES);
    for &tv in t {
        let args: Vec<f64> = (0..half)
            .map(|i| tv * (-(10_000f64).ln() * i as f64 / half as f64).exp())
            .collect();
        out.extend(args.iter().map(|a| a.cos()));
        out.extend(args.iter().map(|a| a.sin()));
    }
    out
}

/// The fixed (N, D) position embedding of a grid_h × grid_w patch grid, tokens row-major:
/// the first D/2 values encode the column, the next D/2 the row, each half [sin, cos] with
/// ω_i = 1/10000^(i/(D/4)). D must be a multiple of 4.
pub fn pos_embed_2d(dim: usize, grid_h: usize, grid_w: usize) -> Vec<f64> {
    let quarter = dim / 4;
    let omega: Vec<f64> = (0..quarter)
        .map(|i| 1.0 / 10_000f64.powf(i as f64 / quarter as f64))
        .collect();
    let mut out = Vec::with_capacity(grid_h * grid_w * dim);
    for row in 0..grid_h {
        for col in 0..grid_w {
            for pos in [col as f64, row as f64] {
                out.extend(omega.iter().map(|w| (pos * w).sin()));
                out.extend(omega.iter().map(|w| (pos * w).cos()));
            }
        }
    }
    out
}

/// c[row] = t_emb[row mod batch] + Σ_k table[labels[row·slots + k]]; labels ≥ the table's
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
