//! The optimiser the trainer, InvDiff and the benchmark share: clip, AdamW and the warmed-up
//! EMA over several steps against the f64 reference; a state of the wrong length refused.

use crate::common::*;
use imba::model::{Optimizer, OptimizerSettings, OptimizerState};
use imba::reference::optim::{self as ro, AdamW};

const SETTINGS: OptimizerSettings = OptimizerSettings {
    beta1: 0.9,
    beta2: 0.99,
    weight_decay: 0.01,
    clip: 0.5,
    ema: 0.95,
};

#[test]
fn a_step_is_clip_then_adamw_then_the_warmed_up_ema() {
    let g = gpu();
    let mut r = Rand::new(7);
    let n = 1237;
    let (p0, m0, v0) = (
        r.vec(n, -1.0, 1.0),
        r.vec(n, -0.1, 0.1),
        r.vec(n, 0.0, 0.01),
    );
    let e0 = r.vec(n, -1.0, 1.0);
    let state = OptimizerState {
        m: &m0,
        v: &v0,
        ema: &e0,
    };
    let opt = Optimizer::new(g, SETTINGS, state).unwrap();
    let params = g.upload("p", &p0);
    let (mut p, mut m, mut v, mut e) = (f64s(&p0), f64s(&m0), f64s(&v0), f64s(&e0));
    for s in 0..4u32 {
        let lr = 1e-2 * (s + 1) as f32;
        let grads = r.vec(n, -0.05, 0.05);
        let gb = g.upload("g", &grads);
        let mut enc = g.encoder();
        let at = imba::model::StepAt {
            s,
            lr,
            step_values: None,
        };
        opt.record_step(&g.device, &mut enc, &params, &gb, at)
            .unwrap();
        g.submit_and_wait(enc).unwrap();
        let g64 = f64s(&grads);
        let clip = ro::clip_factor(ro::grad_norm(&g64), SETTINGS.clip as f64);
        let clipped: Vec<f64> = g64.iter().map(|x| x * clip).collect();
        let h = AdamW {
            lr: lr as f64,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.01,
        };
        ro::adamw_step(&mut p, &clipped, &mut m, &mut v, s + 1, h);
        // The EMA's warm-up: min(0.95, (1 + s)/(10 + s)) = 0.1, 0.18, 0.25, 0.31.
        let decay = (SETTINGS.ema as f64).min((1.0 + s as f64) / (10.0 + s as f64));
        assert_eq!(opt.ema_decay_at(s), decay as f32, "step {s}");
        ro::ema(&mut e, &p, decay);
    }
    assert_close("params", &g.read(&params, n).unwrap(), &p, 1e-6, 1e-5);
    assert_close("m", &g.read(&opt.m, n).unwrap(), &m, 1e-7, 1e-5);
    assert_close("v", &g.read(&opt.v, n).unwrap(), &v, 1e-9, 1e-5);
    assert_close("ema", &g.read(&opt.ema, n).unwrap(), &e, 1e-6, 1e-5);
}

#[test]
fn a_state_of_the_wrong_length_is_refused() {
    let (short, full) = (vec![0.0; 3], vec![0.0; 4]);
    let state = OptimizerState {
        m: &short,
        v: &full,
        ema: &full,
    };
    let e = Optimizer::new(gpu(), SETTINGS, state)
        .err()
        .expect("refused");
    assert!(e.to_string().contains("one value per parameter"), "{e}");
}
