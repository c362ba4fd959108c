//! The portable matmul against the f64 reference: every operand layout, bias and
//! accumulation, odd sizes, NaN-poisoned outputs; bad input.

mod common;
use common::{assert_close, assert_error_mentions, gpu, Rand};
use imba::kernels::{Layout, MatmulArgs, MatmulKernels};
use imba::reference::matmul as rm;

#[test]
fn portable_matmul_matches_reference_every_layout() {
    let g = gpu();
    let dev = &g.device;
    let kernels = MatmulKernels::new(dev).unwrap();
    let mut r = Rand::new(21);
    for (m, k, n) in [(1, 1, 1), (7, 5, 3), (13, 33, 17), (65, 9, 70)] {
        for a_layout in [Layout::RowMajor, Layout::Transposed] {
            for b_layout in [Layout::RowMajor, Layout::Transposed] {
                for (with_bias, accumulate) in [(false, false), (true, false), (true, true)] {
                    let a = r.vec(m * k, -1.0, 1.0);
                    let b = r.vec(k * n, -1.0, 1.0);
                    let bias = r.vec(n, -1.0, 1.0);
                    let c0 = r.vec(m * n, -1.0, 1.0);
                    let (ab, bb, biasb) = (
                        g.upload("a", &a),
                        g.upload("b", &b),
                        g.upload("bias", &bias),
                    );
                    let cb = if accumulate {
                        g.upload("c", &c0)
                    } else {
                        g.poisoned("c", m * n)
                    };
                    let mut enc = g.encoder();
                    kernels
                        .record(
                            dev,
                            &mut enc,
                            &MatmulArgs {
                                m: m as u32,
                                k: k as u32,
                                n: n as u32,
                                a: &ab,
                                a_layout,
                                b: &bb,
                                b_layout,
                                bias: with_bias.then_some(&biasb),
                                c: &cb,
                                accumulate,
                            },
                        )
                        .unwrap();
                    g.submit_and_wait(enc).unwrap();
                    let got: Vec<f32> = g.read(&cb, m * n).unwrap();
                    let mut want = rm::matmul(
                        &a,
                        a_layout,
                        &b,
                        b_layout,
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
                        "({m},{k},{n}) {a_layout:?}·{b_layout:?} bias={with_bias} acc={accumulate}"
                    );
                    assert_close(&what, &got, &want, 1e-5, 1e-5);
                }
            }
        }
    }
}

#[test]
fn bad_matmul_inputs_are_errors() {
    let g = gpu();
    let dev = &g.device;
    let kernels = MatmulKernels::new(dev).unwrap();
    let small = g.zeros("small", 16);
    let big = g.zeros("big", 4096);
    let args = |m, k, n, a, c| MatmulArgs {
        m,
        k,
        n,
        a,
        a_layout: Layout::RowMajor,
        b: &big,
        b_layout: Layout::RowMajor,
        bias: None,
        c,
        accumulate: false,
    };
    let mut enc = g.encoder();
    assert_error_mentions(
        kernels.record(dev, &mut enc, &args(0, 4, 4, &big, &big)),
        "zero size",
    );
    assert_error_mentions(
        kernels.record(dev, &mut enc, &args(8, 8, 8, &small, &big)),
        "`a`",
    );
    assert_error_mentions(
        kernels.record(dev, &mut enc, &args(8, 8, 8, &big, &small)),
        "`c`",
    );
}
