//! Shared by the matmul tests: every layout against the f64 reference, and the texture
//! path's cases.

use super::{assert_close, Rand};
use imba::kernels::{Layout, MatmulArgs, MatmulKernels};
use imba::reference::matmul as rm;

/// Every layout, with and without bias and accumulation, at each size, against the f64
/// reference, on whichever kernel `kernels` runs.
pub fn check_every_layout(
    g: &imba::gpu::Gpu,
    kernels: &MatmulKernels,
    sizes: &[(usize, usize, usize)],
) {
    let dev = &g.device;
    let mut r = Rand::new(21);
    for &(m, k, n) in sizes {
        for a_layout in [Layout::RowMajor, Layout::Transposed] {
            for b_layout in [Layout::RowMajor, Layout::Transposed] {
                for (with_bias, accumulate) in [(false, false), (true, false), (true, true)] {
                    let a = r.vec(m * k, -1.0, 1.0);
                    let b = r.vec(k * n, -1.0, 1.0);
                    let bias = r.vec(n, -1.0, 1.0);
                    let c0 = r.vec(m * n, -1.0, 1.0);
                    let got = product(
                        g,
                        kernels,
                        (m, k, n),
                        (&a, a_layout),
                        (&b, b_layout),
                        with_bias.then_some(&bias[..]),
                        accumulate.then_some(&c0[..]),
                    );
                    let mut want = rm::matmul(
                        rm::Operand {
                            values: &a,
                            layout: a_layout,
                        },
                        rm::Operand {
                            values: &b,
                            layout: b_layout,
                        },
                        with_bias.then_some(&bias[..]),
                        m,
                        k,
                        n,
                    );
                    if accumulate {
                        for (w, c) in want.iter_mut().zip(&c0) {
                            *w += *c as f64;
                        }
                    }
                    let what = format!(
                        "{:?} ({m},{k},{n}) {a_layout:?}·{b_layout:?} bias={with_bias} \
                         acc={accumulate}",
                        kernels.path(dev, m as u32, k as u32, n as u32)
                    );
                    // K ≤ 131 terms of size ≤ 1: f32 rounding stays far below this.
                    assert_close(&what, &got, &want, 1e-5, 1e-5);
                }
            }
        }
    }
}

/// The texture path's tile is 16 rows × 64 columns and it steps K by 4: sizes below, at
/// and past those, and not multiples of them; sizes whose operands and C move by texture
/// copies; then tall A operands split into row chunks (32 rows here, so 65 and 70 rows take
/// three chunks, the last one partial).
pub fn texture_path_cases(g: &imba::gpu::Gpu) {
    let kernels = MatmulKernels::new(&g.device).unwrap();
    check_every_layout(
        g,
        &kernels,
        &[
            (1, 1, 1),
            (7, 5, 3),
            (16, 4, 32),
            (17, 8, 33),
            (13, 33, 17),
            (65, 9, 70),
            (33, 130, 97),
            // K and N multiples of 64: row-major operands go to their textures by copy, and
            // C comes back from a texture (unless accumulating).
            (16, 64, 64),
            (70, 128, 64),
            (33, 64, 192),
        ],
    );
    let chunked = MatmulKernels::new(&g.device).unwrap().with_row_chunk(32);
    check_every_layout(g, &chunked, &[(65, 9, 70), (64, 4, 32), (70, 64, 64)]);
    reused_texture_padding(g);
}

/// The texture path keeps its operand textures between products of the same padded size. A
/// product with K = 7 pads B's texture to 8 rows; the last row must be zero even when the
/// previous product (K = 8) left infinities there, or 0 · ∞ = NaN reaches C.
fn reused_texture_padding(g: &imba::gpu::Gpu) {
    let kernels = MatmulKernels::new(&g.device).unwrap();
    let mut r = Rand::new(5);
    let (m, n) = (16usize, 64usize);
    let run = |k: usize, a: &[f32], b: &[f32]| {
        let row_major = Layout::RowMajor;
        product(
            g,
            &kernels,
            (m, k, n),
            (a, row_major),
            (b, row_major),
            None,
            None,
        )
    };
    run(8, &r.vec(m * 8, -1.0, 1.0), &vec![f32::INFINITY; 8 * n]);
    let (a, b) = (r.vec(m * 7, -1.0, 1.0), r.vec(7 * n, -1.0, 1.0));
    let row_major = |values| rm::Operand {
        values,
        layout: Layout::RowMajor,
    };
    let want = rm::matmul(row_major(&a), row_major(&b), None, m, 7, n);
    assert_close(
        "K = 7 after K = 8 with ∞ in B",
        &run(7, &a, &b),
        &want,
        1e-5,
        1e-5,
    );
}

/// C = op(A)·op(B) (+ bias) on `kernels`, into a NaN-poisoned C, or added onto `c0`.
pub fn product(
    g: &imba::gpu::Gpu,
    kernels: &MatmulKernels,
    (m, k, n): (usize, usize, usize),
    (a, a_layout): (&[f32], Layout),
    (b, b_layout): (&[f32], Layout),
    bias: Option<&[f32]>,
    c0: Option<&[f32]>,
) -> Vec<f32> {
    let (ab, bb) = (g.upload("a", a), g.upload("b", b));
    let biasb = bias.map(|v| g.upload("bias", v));
    let cb = match c0 {
        Some(c0) => g.upload("c", c0),
        None => g.poisoned("c", m * n),
    };
    let mut enc = g.encoder();
    kernels
        .record(
            &g.device,
            &mut enc,
            &MatmulArgs {
                m: m as u32,
                k: k as u32,
                n: n as u32,
                a: (&ab).into(),
                a_layout,
                b: (&bb).into(),
                b_layout,
                bias: biasb.as_ref().map(Into::into),
                c: (&cb).into(),
                accumulate: c0.is_some(),
            },
        )
        .unwrap();
    g.submit_and_wait(enc).unwrap();
    g.read(&cb, m * n).unwrap()
}
