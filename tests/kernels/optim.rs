//! Gradient norm with clipping, AdamW and EMA against the f64 reference at odd sizes with
//! poisoned outputs, over several steps; bad input.

use crate::common;
use common::*;
use imba::kernels::OptimKernels;
use imba::kernels::{AdamWArgs, EmaArgs, GradNormArgs};
use imba::reference::optim::{self as ro, AdamW};

#[test]
fn optimizer_matches_reference_over_steps() {
    let g = gpu();
    let dev = &g.device;
    let k = OptimKernels::new(dev).unwrap();
    let mut r = Rand::new(41);
    let h = AdamW {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.05,
    };
    for (n, max_norm) in [(1usize, 0.0f32), (63, 0.5), (1000, 1e9), (70_001, 2.0)] {
        let p0 = r.vec(n, -1.0, 1.0);
        let (pb, mb, vb, eb) = (
            g.upload("p", &p0),
            g.zeros("m", 4 * n as u64),
            g.zeros("v", 4 * n as u64),
            g.upload("ema", &p0),
        );
        let norm = g.poisoned("norm", 3);
        let (mut p, mut m, mut v, mut e) = (f64s(&p0), vec![0.0; n], vec![0.0; n], f64s(&p0));
        let mut want_norm = [0.0; 3];
        for step in 1..=3u32 {
            let grads = r.vec(n, -0.2, 0.2);
            let gb = g.upload("g", &grads);
            let mut enc = g.encoder();
            k.record_grad_norm(
                dev,
                &mut enc,
                &GradNormArgs {
                    n: n as u32,
                    grads: (&gb).into(),
                    max_norm,
                    norm: (&norm).into(),
                },
            )
            .unwrap();
            k.record_adamw(
                dev,
                &mut enc,
                &AdamWArgs {
                    step_values: None,
                    n: n as u32,
                    h,
                    step,
                    params: (&pb).into(),
                    grads: (&gb).into(),
                    m: (&mb).into(),
                    v: (&vb).into(),
                    norm: Some((&norm).into()),
                },
            )
            .unwrap();
            k.record_ema(
                dev,
                &mut enc,
                &EmaArgs {
                    step_values: None,
                    n: n as u32,
                    decay: 0.9,
                    params: (&pb).into(),
                    ema: (&eb).into(),
                },
            )
            .unwrap();
            g.submit_and_wait(enc).unwrap();
            let g64 = f64s(&grads);
            let nrm = ro::grad_norm(&g64);
            let clip = ro::clip_factor(nrm, max_norm as f64);
            want_norm = [nrm * nrm, nrm, clip];
            let clipped: Vec<f64> = g64.iter().map(|v| v * clip).collect();
            ro::adamw_step(&mut p, &clipped, &mut m, &mut v, step, h);
            ro::ema(&mut e, &p, 0.9);
        }
        let what = format!("n={n} max_norm={max_norm}");
        assert_close(
            &format!("{what} norm"),
            &g.read(&norm, 3).unwrap(),
            &want_norm,
            1e-6,
            1e-5,
        );
        // AdamW's update is ±lr·O(1): f32 rounding of m/√v gives ~1e-7 of lr.
        assert_close(
            &format!("{what} params"),
            &g.read(&pb, n).unwrap(),
            &p,
            1e-6,
            1e-6,
        );
        assert_close(
            &format!("{what} m"),
            &g.read(&mb, n).unwrap(),
            &m,
            1e-7,
            1e-5,
        );
        assert_close(
            &format!("{what} v"),
            &g.read(&vb, n).unwrap(),
            &v,
            1e-9,
            1e-5,
        );
        assert_close(
            &format!("{what} ema"),
            &g.read(&eb, n).unwrap(),
            &e,
            1e-6,
            1e-6,
        );
    }
}

#[test]
fn optimizer_bad_input_is_an_error() {
    let g = gpu();
    let dev = &g.device;
    let k = OptimKernels::new(dev).unwrap();
    let buf = g.zeros("buf", 64);
    let mut enc = g.encoder();
    let h = AdamW {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    assert_refused(
        || {
            k.record_adamw(
                dev,
                &mut enc,
                &AdamWArgs {
                    step_values: None,
                    n: 4,
                    h,
                    step: 0,
                    params: (&buf).into(),
                    grads: (&buf).into(),
                    m: (&buf).into(),
                    v: (&buf).into(),
                    norm: None,
                },
            )
        },
        "from 1",
    );
    let bad = AdamW { beta1: 1.0, ..h };
    assert_refused(
        || {
            k.record_adamw(
                dev,
                &mut enc,
                &AdamWArgs {
                    step_values: None,
                    n: 4,
                    h: bad,
                    step: 1,
                    params: (&buf).into(),
                    grads: (&buf).into(),
                    m: (&buf).into(),
                    v: (&buf).into(),
                    norm: None,
                },
            )
        },
        "β",
    );
    assert_refused(
        || {
            k.record_adamw(
                dev,
                &mut enc,
                &AdamWArgs {
                    step_values: None,
                    n: 64,
                    h,
                    step: 1,
                    params: (&buf).into(),
                    grads: (&buf).into(),
                    m: (&buf).into(),
                    v: (&buf).into(),
                    norm: None,
                },
            )
        },
        "`grads`",
    );
    assert_refused(
        || {
            k.record_grad_norm(
                dev,
                &mut enc,
                &GradNormArgs {
                    n: 4,
                    grads: (&buf).into(),
                    max_norm: f32::NAN,
                    norm: (&buf).into(),
                },
            )
        },
        "max_norm",
    );
    assert_refused(
        || {
            k.record_ema(
                dev,
                &mut enc,
                &EmaArgs {
                    step_values: None,
                    n: 4,
                    decay: 1.5,
                    params: (&buf).into(),
                    ema: (&buf).into(),
                },
            )
        },
        "decay",
    );
}
