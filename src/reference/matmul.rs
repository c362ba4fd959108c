//! Matrix products in f64, with the operand layouts of `shaders/matmul.wgsl`.

use crate::kernels::matmul::Layout;

/// C (M×N, row-major) = op(A)·op(B) (+ bias), sums in f64.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    a: &[f32],
    a_layout: Layout,
    b: &[f32],
    b_layout: Layout,
    bias: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
) -> Vec<f64> {
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
