//! The kernels of CBDM and CCUA: the pair regulariser (shaders/pair.wgsl) and the
//! unconditional contrastive loss (shaders/contrastive.wgsl) against their f64 references at
//! odd sizes with poisoned outputs; the references against finite differences; bad input.

use crate::common;
use common::*;
use imba::kernels::{ContrastiveArgs, ContrastiveKernels, PairArgs, PairKernels};
use imba::reference::{contrastive as rcon, pair as rpair};

#[test]
fn pair_kernel_matches_reference_at_odd_sizes() {
    let g = gpu();
    let k = PairKernels::new(&g.device).unwrap();
    let mut r = Rand::new(31);
    for (samples, per_sample, ka, kb, accumulate) in [
        (1u32, 1u32, 1.0f32, 0.25f32, false),
        (3, 37, 1.0, 0.25, true),
        (5, 130, 0.05, 0.05, false),
        (7, 64 * 9 + 3, 2.0, 0.0, true),
    ] {
        let half = samples * per_sample;
        let pred = r.vec(2 * half as usize, -2.0, 2.0);
        let w = r.vec(samples as usize, 0.0, 1.0);
        let base = r.vec(2 * half as usize, -1.0, 1.0);
        let dout = if accumulate {
            g.upload("dout", &base)
        } else {
            g.poisoned("dout", 2 * half as usize)
        };
        let partials = g.zeros("partials", PairKernels::partials_bytes(half));
        let scalars = g.poisoned("scalars", 4);
        let wb = g.upload("w", &w);
        let pb = g.upload("pred", &pred);
        let mut enc = g.encoder();
        k.record(
            &g.device,
            &mut enc,
            &PairArgs {
                half,
                per_sample,
                pred: (&pb).into(),
                weight: (&wb).into(),
                ka,
                kb,
                accumulate,
                dout: (&dout).into(),
                partials: (&partials).into(),
                scalars: (&scalars).into(),
            },
        )
        .unwrap();
        g.submit_and_wait(enc).unwrap();
        let h = half as usize;
        let p = f64s(&pred);
        let want = rpair::pair(
            &p[..h],
            &p[h..],
            &f64s(&w),
            per_sample as usize,
            ka as f64,
            kb as f64,
        );
        let mut want_a = want.grad_a.clone();
        if accumulate {
            for (x, b) in want_a.iter_mut().zip(&base) {
                *x += *b as f64;
            }
        }
        let got = g.read::<f32>(&dout, 2 * h).unwrap();
        let what = format!("pair {samples}×{per_sample}");
        assert_close(&format!("{what} grad a"), &got[..h], &want_a, 1e-7, 1e-5);
        assert_close(
            &format!("{what} grad b"),
            &got[h..],
            &want.grad_b,
            1e-7,
            1e-5,
        );
        let s = g.read::<f32>(&scalars, 1).unwrap();
        assert_scalar(&format!("{what} distance"), s[0], want.distance, 1e-5);
    }
}

/// The pair gradients are the gradients of the stop-gradient terms they stand for:
/// ka·(1/E)Σ w(a − sg b)² in a and kb·(1/E)Σ w(sg a − b)² in b.
#[test]
fn pair_reference_matches_finite_differences() {
    let mut r = Rand::new(32);
    let (samples, per) = (3, 5);
    let a = f64s(&r.vec(samples * per, -1.0, 1.0));
    let b = f64s(&r.vec(samples * per, -1.0, 1.0));
    let w = f64s(&r.vec(samples, 0.1, 1.0));
    let (ka, kb) = (1.0, 0.25);
    let out = rpair::pair(&a, &b, &w, per, ka, kb);
    assert_fd(
        "grad a",
        &a,
        &out.grad_a,
        |x| ka * rpair::pair(x, &b, &w, per, 0.0, 0.0).distance,
        1e-6,
    );
    assert_fd(
        "grad b",
        &b,
        &out.grad_b,
        |x| kb * rpair::pair(&a, x, &w, per, 0.0, 0.0).distance,
        1e-6,
    );
}

#[test]
fn contrastive_reference_matches_finite_differences() {
    let mut r = Rand::new(33);
    for (n, f, tau) in [(2usize, 3usize, 0.1f64), (5, 7, 0.1), (4, 6, 0.5)] {
        let h = f64s(&r.vec(n * f, -1.0, 1.0));
        let w = f64s(&r.vec(n, 0.0, 1.0));
        let scale = 0.7;
        let out = rcon::ucl(&h, &w, f, tau, scale);
        assert_fd(
            &format!("ucl {n}×{f}"),
            &h,
            &out.grad,
            |x| scale * rcon::ucl(x, &w, f, tau, scale).loss,
            1e-5,
        );
        // Scaling a row does not change the loss (it sees directions only).
        let mut scaled = h.clone();
        scaled[..f].iter_mut().for_each(|v| *v *= 3.0);
        let again = rcon::ucl(&scaled, &w, f, tau, scale).loss;
        assert!((again - out.loss).abs() < 1e-12 * (1.0 + out.loss.abs()));
    }
    // Identical rows: every cosine is 1, UCL_i = log(1 + (B − 1)), and the gradient is 0.
    let row = [0.3, -1.0, 2.0];
    let h: Vec<f64> = row.iter().cycle().take(12).copied().collect();
    let w = [1.0; 4];
    let out = rcon::ucl(&h, &w, 3, 0.1, 1.0);
    assert!((out.loss - 4f64.ln()).abs() < 1e-12);
    assert!(out.grad.iter().all(|g| g.abs() < 1e-12));
}

#[test]
fn contrastive_kernel_matches_reference_at_odd_sizes() {
    let g = gpu();
    let k = ContrastiveKernels::new(&g.device).unwrap();
    let mut r = Rand::new(34);
    for (n, f, base, out_base, accumulate) in [
        (2u32, 1u32, 0u32, 0u32, false),
        (3, 65, 7, 0, false),
        (5, 200, 0, 11, true),
        (9, 64 * 5 + 1, 130, 3, false),
        (70, 33, 0, 0, false),
    ] {
        let values = (n * f) as usize;
        let feats = r.vec(base as usize + values, -1.0, 1.0);
        let w = r.vec(n as usize, 0.0, 1.0);
        let prior = r.vec(out_base as usize + values, -1.0, 1.0);
        let grad = if accumulate {
            g.upload("grad", &prior)
        } else {
            g.poisoned("grad", out_base as usize + values)
        };
        let m = ContrastiveKernels::matrix_bytes(n) as usize / 4;
        let (gram, coef) = (g.poisoned("gram", m), g.poisoned("coef", m));
        let scalars = g.poisoned("scalars", 4);
        let (fb, wb) = (g.upload("feats", &feats), g.upload("w", &w));
        let (tau, scale) = (0.1f32, 0.05f32);
        let mut enc = g.encoder();
        k.record(
            &g.device,
            &mut enc,
            &ContrastiveArgs {
                batch: n,
                features: f,
                feats: (&fb).into(),
                base,
                weight: (&wb).into(),
                tau,
                scale,
                grad: (&grad).into(),
                out_base,
                accumulate,
                gram: (&gram).into(),
                coef: (&coef).into(),
                scalars: (&scalars).into(),
            },
        )
        .unwrap();
        g.submit_and_wait(enc).unwrap();
        let rows = f64s(&feats[base as usize..]);
        let want = rcon::ucl(&rows, &f64s(&w), f as usize, tau as f64, scale as f64);
        let what = format!("ucl {n}×{f}");
        let s = g.read::<f32>(&scalars, 1).unwrap();
        assert_scalar(&format!("{what} loss"), s[0], want.loss, 1e-4);
        let got = g.read::<f32>(&grad, out_base as usize + values).unwrap();
        let mut want_grad = want.grad.clone();
        if accumulate {
            for (x, p) in want_grad.iter_mut().zip(&prior[out_base as usize..]) {
                *x += *p as f64;
            }
        }
        let scale_of_grad = want_grad.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert_close(
            &format!("{what} grad"),
            &got[out_base as usize..],
            &want_grad,
            1e-4 * scale_of_grad,
            1e-3,
        );
        // Values before out_base are untouched.
        if accumulate {
            assert_eq!(&got[..out_base as usize], &prior[..out_base as usize]);
        }
    }
}

#[test]
fn bad_input_is_refused_by_name() {
    let g = gpu();
    let (pk, ck) = (
        PairKernels::new(&g.device).unwrap(),
        ContrastiveKernels::new(&g.device).unwrap(),
    );
    let small = g.zeros("small", 16);
    let big = g.zeros("big", 4096);
    let mut enc = g.encoder();
    let pair = |half, per_sample, ka, pred| PairArgs {
        half,
        per_sample,
        pred,
        weight: (&big).into(),
        ka,
        kb: 0.25,
        accumulate: false,
        dout: (&big).into(),
        partials: (&big).into(),
        scalars: (&big).into(),
    };
    assert_refused(
        || pk.record(&g.device, &mut enc, &pair(10, 3, 1.0, (&big).into())),
        "divide",
    );
    assert_refused(
        || pk.record(&g.device, &mut enc, &pair(10, 5, f32::NAN, (&big).into())),
        "`ka`",
    );
    assert_refused(
        || pk.record(&g.device, &mut enc, &pair(10, 5, 1.0, (&small).into())),
        "pred",
    );
    let con = |batch, tau, feats| ContrastiveArgs {
        batch,
        features: 8,
        feats,
        base: 0,
        weight: (&big).into(),
        tau,
        scale: 1.0,
        grad: (&big).into(),
        out_base: 0,
        accumulate: false,
        gram: (&big).into(),
        coef: (&big).into(),
        scalars: (&big).into(),
    };
    assert_refused(
        || ck.record(&g.device, &mut enc, &con(1, 0.1, (&big).into())),
        "≥ 2 rows",
    );
    assert_refused(
        || ck.record(&g.device, &mut enc, &con(4, 0.0, (&big).into())),
        "τ",
    );
    assert_refused(
        || ck.record(&g.device, &mut enc, &con(4, 0.1, (&small).into())),
        "feats",
    );
}
