//! Matrix products in f64, with the operand layouts of `shaders/matmul.wgsl`.

use crate::kernels::matmul::Layout;

/// An operand of a product: its values and their layout.
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    /// The values, in `layout`.
    pub values: &'a [f32],
    /// Row-major or transposed.
    pub layout: Layout,
}

/// C (M×N, row-major) = op(A)·op(B) (+ bias), sums in f64; op(A) is M×K, op(B) K×N.
pub fn matmul(
    a: Operand,
    b: Operand,
    bias: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
) -> Vec<f64> {
    let (
        Operand {
            values: a,
            layout: a_layout,
        },
        Operand {
            values: b,
            layout: b_layout,
        },
    ) = (a, b);
    let at = |r: usize, c: usize| match a_layout {
        Layout::RowMajor => a[r * k + c],
        Layout::Transposed => a[c * m + r],
    } as f64;
    let bt = |r: usize, c: usize| match b_layout {
        Layout::RowMajor => b[r * n + c],
        Layout::Transposed => b[c * k + r],
    } as f64;
    let mut out = vec![0.0; m * n];
    for r in 0..m {
        for c in 0..n {
            let mut s = bias.map_or(0.0, |b| b[c] as f64);
            for kk in 0..k {
                s += at(r, kk) * bt(kk, c);
            }
            out[r * n + c] = s;
        }
    }
    out
}

/// y = x·Wᵀ + b: x (rows, in), W (out, in) as PyTorch's Linear.
pub fn linear(x: &[f64], w: &[f64], b: &[f64], d_in: usize, d_out: usize) -> Vec<f64> {
    let mut y = vec![0.0; x.len() / d_in * d_out];
    for (xr, yr) in x.chunks(d_in).zip(y.chunks_mut(d_out)) {
        for (o, yv) in yr.iter_mut().enumerate() {
            let wr = &w[o * d_in..(o + 1) * d_in];
            *yv = b[o] + xr.iter().zip(wr).map(|(a, b)| a * b).sum::<f64>();
        }
    }
    y
}

/// (dx, dW, db) of [`linear`] given dy: dx = dy·W, dW = dyᵀ·x, db = Σ_rows dy.
pub fn linear_backward(
    x: &[f64],
    w: &[f64],
    dy: &[f64],
    d_in: usize,
    d_out: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; w.len()];
    let mut db = vec![0.0; d_out];
    for ((xr, dyr), dxr) in x
        .chunks(d_in)
        .zip(dy.chunks(d_out))
        .zip(dx.chunks_mut(d_in))
    {
        for (o, &g) in dyr.iter().enumerate() {
            db[o] += g;
            let wr = &w[o * d_in..(o + 1) * d_in];
            let dwr = &mut dw[o * d_in..(o + 1) * d_in];
            for i in 0..d_in {
                dxr[i] += g * wr[i];
                dwr[i] += g * xr[i];
            }
        }
    }
    (dx, dw, db)
}
