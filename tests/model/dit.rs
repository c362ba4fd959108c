//! The whole tiny DiT: the f64 reference's gradients against finite differences, and the GPU
//! model (dual forward, fused IMBA loss, backward) against the reference — output, loss and
//! every parameter's gradient, rel. error ≤ 1e-4 per tensor. Also a single forward with
//! multi-concept labels, and bad input.

use crate::common;
use common::*;
use imba::kernels::{ImbaParams, LossKernels, Target, TokenShape, NO_LABEL};
use imba::model::{Activations, Dit, DitConfig, LossPass, ParamLayout};
use imba::objectives::DualLoss;
use imba::reference::{dit as rdit, embed, loss as rloss};

struct Case {
    cfg: DitConfig,
    batch: usize,
    params: Vec<f32>,
    patches: Vec<f32>,
    t: Vec<f32>,
    labels: Vec<u32>,
}

fn case(cfg: DitConfig, batch: usize, repeats: usize, seed: u64) -> Case {
    let layout = ParamLayout::new(&cfg);
    let mut r = Rand::new(seed);
    let (n, k, slots) = (
        cfg.tokens() as usize,
        cfg.token_dim() as usize,
        cfg.label_slots as usize,
    );
    let t: Vec<f32> = (0..batch)
        .map(|i| [3.0, 999.0, 500.0, 41.0][i % 4])
        .collect();
    let mut labels = Vec::new();
    for row in 0..batch * repeats {
        for s in 0..slots {
            labels.push(if row >= batch {
                if s == 0 {
                    cfg.null_label()
                } else {
                    NO_LABEL
                }
            } else if s > 0 && r.below(3) == 0 {
                NO_LABEL
            } else {
                r.below(cfg.num_labels)
            });
        }
    }
    Case {
        params: layout.init_all_nonzero(seed),
        patches: r.vec(batch * n * k, -1.5, 1.5),
        cfg,
        batch,
        t,
        labels,
    }
}

fn reference_forward(c: &Case, layout: &ParamLayout, flat: &[f64]) -> rdit::Forward {
    let p = rdit::Params { layout, flat };
    let t64: Vec<f64> = c.t.iter().map(|&v| v as f64).collect();
    rdit::forward(
        &c.cfg,
        &p,
        &f64s(&c.patches),
        &embed::timestep_features(&t64),
        &c.labels,
    )
}

#[test]
fn reference_dit_gradients_match_finite_differences() {
    let mut cfg = DitConfig::tiny();
    cfg.depth = 1;
    cfg.height = 4;
    cfg.width = 6;
    let c = case(cfg.clone(), 2, 2, 7);
    let layout = ParamLayout::new(&cfg);
    let flat = f64s(&c.params);
    let f = reference_forward(&c, &layout, &flat);
    let mut r = Rand::new(8);
    let w = f64s(&r.vec(f.out.len(), -1.0, 1.0));
    let grads = rdit::backward(
        &cfg,
        &rdit::Params {
            layout: &layout,
            flat: &flat,
        },
        &f,
        &w,
    );
    let loss = |v: &[f64]| dot(&w, &reference_forward(&c, &layout, v).out);
    assert_fd_tensors("dit", &layout, &flat, &grads, loss, 1e-6);
}

#[test]
fn gpu_dit_matches_reference_dual_forward_imba_loss_and_gradients() {
    let g = gpu();
    let dev = &g.device;
    let cfg = DitConfig::tiny();
    let c = case(cfg.clone(), 3, 2, 1);
    let layout = ParamLayout::new(&cfg);
    let (n, k) = (cfg.tokens() as usize, cfg.token_dim() as usize);
    let mut r = Rand::new(2);
    let target = r.vec(c.batch * n * k, -2.0, 2.0);

    let dit = Dit::new(dev, cfg.clone(), &c.params).unwrap();
    let acts = Activations::new(dev, &cfg, c.batch as u32, 2).unwrap();
    acts.set_conditions(&g.queue, &cfg, &c.t, &c.labels)
        .unwrap();
    let loss_kernels = LossKernels::new(dev).unwrap();
    let dual = DualLoss::new(dev, &loss_kernels, &cfg, c.batch as u32).unwrap();
    let (pb, tb) = (g.upload("patches", &c.patches), g.upload("target", &target));
    let params = ImbaParams::default();
    let mut enc = g.encoder();
    let pass = LossPass {
        tap: None,
        dout: &dual.dout,
        inject: None,
    };
    let how = imba::objectives::ComputedWeights {
        target: Target::Explicit((&tb).into()),
        params: &params,
        time: None,
        across: None,
    };
    dit.record_with_loss(dev, &mut enc, &acts, &pb, pass, |enc| {
        dual.record(dev, enc, &loss_kernels, &acts, how)
    })
    .unwrap();
    g.submit_and_wait(enc).unwrap();

    let flat = f64s(&c.params);
    let f = reference_forward(&c, &layout, &flat);
    let half = c.batch * n * k;
    let shape = TokenShape::new(c.batch as u32, n as u32, k as u32);
    let want = rloss::imba(
        shape,
        &f.out[..half],
        &f.out[half..],
        &f64s(&target),
        &params,
    );
    let mut dout = want.grad_cond.clone();
    dout.extend(&want.grad_uncond);
    let grads = rdit::backward(
        &cfg,
        &rdit::Params {
            layout: &layout,
            flat: &flat,
        },
        &f,
        &dout,
    );

    let out = f64s(&g.read::<f32>(&acts.out, 2 * half).unwrap());
    assert_rel("output", &out, &f.out, 1e-5);
    let s = g.read::<f32>(&dual.scalars, 4).unwrap();
    assert_scalar("L", s[0], want.loss, 1e-4);
    assert_scalar("L_c", s[1], want.loss_cond, 1e-4);
    assert_scalar("L_u", s[2], want.loss_uncond, 1e-4);
    let got = f64s(&g.read::<f32>(&dit.grads, layout.total).unwrap());
    for t in &layout.tensors {
        let span = t.offset..t.offset + t.len();
        assert_rel(
            &format!("grad {}", t.name),
            &got[span.clone()],
            &grads[span],
            1e-4,
        );
    }
    // The padding between tensors stays zero (AdamW and the norm run over it).
    for w in layout.tensors.windows(2) {
        let gap = &got[w[0].offset + w[0].len()..w[1].offset];
        assert!(
            gap.iter().all(|&v| v == 0.0),
            "padding after {} was written",
            w[0].name
        );
    }
}

#[test]
fn gpu_dit_single_forward_with_concept_lists_matches_reference() {
    let g = gpu();
    let dev = &g.device;
    let mut cfg = DitConfig::tiny();
    cfg.label_slots = 3;
    cfg.num_labels = 5;
    cfg.height = 6;
    cfg.width = 10;
    let c = case(cfg.clone(), 2, 1, 3);
    let layout = ParamLayout::new(&cfg);
    let dit = Dit::new(dev, cfg.clone(), &c.params).unwrap();
    let acts = Activations::new(dev, &cfg, c.batch as u32, 1).unwrap();
    acts.set_conditions(&g.queue, &cfg, &c.t, &c.labels)
        .unwrap();
    let f = reference_forward(&c, &layout, &f64s(&c.params));
    let mut r = Rand::new(4);
    let dout = r.vec(f.out.len(), -1.0, 1.0);
    let (pb, db) = (g.upload("patches", &c.patches), g.upload("dout", &dout));
    let mut enc = g.encoder();
    dit.record_forward(dev, &mut enc, &acts, &pb, None).unwrap();
    dit.record_backward(dev, &mut enc, &acts, &pb, &db, None)
        .unwrap();
    g.submit_and_wait(enc).unwrap();
    let flat = f64s(&c.params);
    let grads = rdit::backward(
        &cfg,
        &rdit::Params {
            layout: &layout,
            flat: &flat,
        },
        &f,
        &f64s(&dout),
    );
    assert_rel(
        "output",
        &f64s(&g.read::<f32>(&acts.out, f.out.len()).unwrap()),
        &f.out,
        1e-5,
    );
    let got = f64s(&g.read::<f32>(&dit.grads, layout.total).unwrap());
    for t in &layout.tensors {
        let span = t.offset..t.offset + t.len();
        assert_rel(
            &format!("grad {}", t.name),
            &got[span.clone()],
            &grads[span],
            1e-4,
        );
    }
}

/// The memory report is the allocation: the arena's buffers add up to its activation and
/// scratch bytes.
#[test]
fn memory_report_matches_the_allocation() {
    let g = gpu();
    let cfg = DitConfig::tiny();
    for repeats in [1, 2] {
        let acts = Activations::new(&g.device, &cfg, 3, repeats).unwrap();
        let allocated: u64 = acts.sizes().iter().map(|s| s.1).sum();
        let r = imba::model::MemoryReport::new(&cfg, 3, repeats);
        assert_eq!(allocated, r.activation_bytes + r.scratch_bytes);
        assert_eq!(r.flat_bytes, ParamLayout::new(&cfg).total as u64 * 4);
    }
}

#[test]
fn dit_bad_input_is_an_error() {
    let g = gpu();
    let dev = &g.device;
    let cfg = DitConfig::tiny();
    let layout = ParamLayout::new(&cfg);
    assert_error_mentions(Dit::new(dev, cfg.clone(), &[0.0; 10]), "parameter values");
    let acts = Activations::new(dev, &cfg, 2, 2).unwrap();
    assert_error_mentions(
        acts.set_conditions(&g.queue, &cfg, &[1.0, 2.0], &[0, 1, 3, 4]),
        "label 4 is out of range",
    );
    assert_error_mentions(
        acts.set_conditions(&g.queue, &cfg, &[1.0], &[0, 1, 3, 3]),
        "1 timesteps",
    );
    assert_error_mentions(
        acts.set_conditions(&g.queue, &cfg, &[1.0, f32::NAN], &[0, 1, 3, 3]),
        "not finite",
    );
    let mut bad = cfg.clone();
    bad.dim = 30;
    assert_error_mentions(
        Dit::new(dev, bad, &vec![0.0; layout.total]),
        "multiple of the heads",
    );
    assert_error_mentions(DitConfig::preset("M/2", 32, 3, 10), "unknown model");
    assert_eq!(DitConfig::preset("XL/2", 32, 4, 1000).unwrap().dim, 1152);
}

/// ∂L/∂patches (SeedSelect's way back to the noise): the reference's against finite
/// differences of its forward, over a dual forward whose repeats share the patches.
#[test]
fn reference_input_gradient_matches_finite_differences() {
    let mut cfg = DitConfig::tiny();
    cfg.depth = 1;
    cfg.height = 4;
    cfg.width = 6;
    let c = case(cfg.clone(), 2, 2, 11);
    let layout = ParamLayout::new(&cfg);
    let flat = f64s(&c.params);
    let f = reference_forward(&c, &layout, &flat);
    let w = f64s(&Rand::new(12).vec(f.out.len(), -1.0, 1.0));
    let p = rdit::Params {
        layout: &layout,
        flat: &flat,
    };
    let (_, dpatches) = rdit::backward_full(&cfg, &p, &f, &w, None);
    let t64: Vec<f64> = c.t.iter().map(|&v| v as f64).collect();
    let tf = embed::timestep_features(&t64);
    let loss = |x: &[f64]| dot(&w, &rdit::forward(&cfg, &p, x, &tf, &c.labels).out);
    assert_fd("dpatches", &f64s(&c.patches), &dpatches, loss, 1e-6);
}

/// The GPU's ∂L/∂patches against the reference's, into a NaN-poisoned buffer.
#[test]
fn gpu_input_gradient_matches_reference() {
    let g = gpu();
    let dev = &g.device;
    let mut cfg = DitConfig::tiny();
    cfg.height = 6;
    cfg.width = 10;
    let c = case(cfg.clone(), 3, 2, 13);
    let layout = ParamLayout::new(&cfg);
    let dit = Dit::new(dev, cfg.clone(), &c.params).unwrap();
    let acts = Activations::new(dev, &cfg, c.batch as u32, 2).unwrap();
    acts.set_conditions(&g.queue, &cfg, &c.t, &c.labels)
        .unwrap();
    let flat = f64s(&c.params);
    let f = reference_forward(&c, &layout, &flat);
    let dout = Rand::new(14).vec(f.out.len(), -1.0, 1.0);
    let (pb, db) = (g.upload("patches", &c.patches), g.upload("dout", &dout));
    let dp = g.upload("dpatches", &vec![f32::NAN; c.patches.len()]);
    let mut enc = g.encoder();
    dit.record_forward(dev, &mut enc, &acts, &pb, None).unwrap();
    dit.record_backward(dev, &mut enc, &acts, &pb, &db, None)
        .unwrap();
    dit.record_input_grad(dev, &mut enc, &acts, &dp).unwrap();
    g.submit_and_wait(enc).unwrap();
    let p = rdit::Params {
        layout: &layout,
        flat: &flat,
    };
    let (_, want) = rdit::backward_full(&cfg, &p, &f, &f64s(&dout), None);
    let got = f64s(&g.read::<f32>(&dp, c.patches.len()).unwrap());
    assert_rel("dpatches", &got, &want, 1e-4);
}
