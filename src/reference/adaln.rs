//! f64 references of `shaders/adaln.wgsl`: LayerNorm without affine, adaLN modulation, the
//! gated residual, and their backwards, written as the math. Token rows are `dim` values;
//! row r belongs to sample r / tokens, whose shift, scale and gate are rows of (samples, dim).

pub use crate::kernels::adaln::LN_EPS;

/// x̂ = (x − mean)/√(var + ε) per row, and 1/√(var + ε) per row.
pub fn layer_norm(x: &[f64], dim: usize) -> (Vec<f64>, Vec<f64>) {
    let mut xhat = vec![0.0; x.len()];
    let mut rstd = Vec::with_capacity(x.len() / dim);
    for (row, out) in x.chunks(dim).zip(xhat.chunks_mut(dim)) {
        let mean = row.iter().sum::<f64>() / dim as f64;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / dim as f64;
        let r = 1.0 / (var + LN_EPS).sqrt();
        for (o, v) in out.iter_mut().zip(row) {
            *o = (v - mean) * r;
        }
        rstd.push(r);
    }
    (xhat, rstd)
}

/// dx from dx̂: rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)) per row.
pub fn layer_norm_backward(xhat: &[f64], rstd: &[f64], dxhat: &[f64], dim: usize) -> Vec<f64> {
    let mut dx = vec![0.0; xhat.len()];
    for (r, &s) in rstd.iter().enumerate() {
        let rows = r * dim..(r + 1) * dim;
        let (xh, g) = (&xhat[rows.clone()], &dxhat[rows.clone()]);
        let mg = g.iter().sum::<f64>() / dim as f64;
        let mgx = g.iter().zip(xh).map(|(a, b)| a * b).sum::<f64>() / dim as f64;
        for ((o, gi), xi) in dx[rows].iter_mut().zip(g).zip(xh) {
            *o = s * (gi - mg - xi * mgx);
        }
    }
    dx
}

/// h = x̂·(1 + scale\[s\]) + shift\[s\].
pub fn modulate(xhat: &[f64], shift: &[f64], scale: &[f64], tokens: usize, dim: usize) -> Vec<f64> {
    let mut h = vec![0.0; xhat.len()];
    for (i, o) in h.iter_mut().enumerate() {
        let (row, d) = (i / dim, i % dim);
        let m = (row / tokens) * dim + d;
        *o = xhat[i] * (1.0 + scale[m]) + shift[m];
    }
    h
}

/// (dx̂, dshift, dscale) from dh.
pub fn modulate_backward(
    xhat: &[f64],
    scale: &[f64],
    dh: &[f64],
    tokens: usize,
    dim: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut dxhat = vec![0.0; xhat.len()];
    let mut dshift = vec![0.0; scale.len()];
    let mut dscale = vec![0.0; scale.len()];
    for i in 0..xhat.len() {
        let (row, d) = (i / dim, i % dim);
        let m = (row / tokens) * dim + d;
        dxhat[i] = dh[i] * (1.0 + scale[m]);
        dshift[m] += dh[i];
        dscale[m] += dh[i] * xhat[i];
    }
    (dxhat, dshift, dscale)
}

/// x += gate\[s\] ⊙ a.
pub fn gated_residual(x: &mut [f64], a: &[f64], gate: &[f64], tokens: usize, dim: usize) {
    for (i, v) in x.iter_mut().enumerate() {
        *v += gate[(i / dim / tokens) * dim + i % dim] * a[i];
    }
}

/// (da, dgate) from dx (which also passes through the residual unchanged).
pub fn gated_residual_backward(
    dx: &[f64],
    a: &[f64],
    gate: &[f64],
    tokens: usize,
    dim: usize,
) -> (Vec<f64>, Vec<f64>) {
    let mut da = vec![0.0; a.len()];
    let mut dgate = vec![0.0; gate.len()];
    for i in 0..a.len() {
        let m = (i / dim / tokens) * dim + i % dim;
        da[i] = gate[m] * dx[i];
        dgate[m] += dx[i] * a[i];
    }
    (da, dgate)
}

/// Σ over rows of a (rows, cols) matrix: a bias gradient.
pub fn column_sums(a: &[f64], cols: usize) -> Vec<f64> {
    let mut s = vec![0.0; cols];
    for row in a.chunks(cols) {
        for (o, v) in s.iter_mut().zip(row) {
            *o += v;
        }
    }
    s
}
