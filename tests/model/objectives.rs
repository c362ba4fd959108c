//! CBDM and CCUA on a tiny DiT: the f64 reference objective (reference DiT + pair and
//! contrastive references, the features' gradient injected at block ⌊depth/4⌋) against
//! finite differences of its loss, and the GPU objective (tapped forward, PairLoss, injected
//! backward) against that reference, parameter by parameter. Then the trainer's label rows:
//! CBDM's y' follow their prior and its unconditional steps their probability.

use crate::common;
use common::*;
use imba::kernels::{LossKernels, Target, NO_LABEL};
use imba::model::{Activations, Dit, DitConfig, LossPass, ParamLayout};
use imba::objectives::{PairKind, PairLoss};
use imba::reference::{contrastive as rcon, dit as rdit, embed, loss as rloss, pair as rpair};
use imba::train::{setup, TrainOptions, Trainer};

struct Case {
    cfg: DitConfig,
    batch: usize,
    params: Vec<f32>,
    patches: Vec<f32>,
    t: Vec<f32>,
    labels: Vec<u32>,
    target: Vec<f32>,
}

/// B samples, two label rows each: y, then y' (CBDM) or ∅ (CCUA).
fn case(cfg: DitConfig, batch: usize, second_null: bool, seed: u64) -> Case {
    let layout = ParamLayout::new(&cfg);
    let mut r = Rand::new(seed);
    let (n, k) = (cfg.tokens() as usize, cfg.token_dim() as usize);
    let t = (0..batch)
        .map(|i| [3.0, 999.0, 500.0, 41.0][i % 4])
        .collect();
    let mut labels: Vec<u32> = (0..batch).map(|_| r.below(cfg.num_labels)).collect();
    for _ in 0..batch {
        labels.push(if second_null {
            cfg.null_label()
        } else {
            r.below(cfg.num_labels)
        });
    }
    assert_eq!(cfg.label_slots, 1);
    Case {
        params: layout.init_all_nonzero(seed),
        patches: r.vec(batch * n * k, -1.5, 1.5),
        target: r.vec(batch * n * k, -2.0, 2.0),
        cfg,
        batch,
        t,
        labels,
    }
}

fn weights(c: &Case) -> Vec<f64> {
    c.t.iter().map(|&t| t as f64 / 1000.0).collect()
}

fn forward(c: &Case, layout: &ParamLayout, flat: &[f64]) -> rdit::Forward {
    let t64: Vec<f64> = c.t.iter().map(|&v| v as f64).collect();
    rdit::forward(
        &c.cfg,
        &rdit::Params { layout, flat },
        &f64s(&c.patches),
        &embed::timestep_features(&t64),
        &c.labels,
    )
}

/// The reference objective at parameters `flat`: (loss, ∂L/∂out, injected feature gradient).
/// `frozen` is the output at the point of differentiation: CBDM's stop-gradient halves read
/// it, so the loss is the surrogate whose gradient at that point is CBDM's gradient.
fn objective(
    c: &Case,
    kind: PairKind,
    f: &rdit::Forward,
    frozen: &[f64],
) -> (f64, Vec<f64>, Option<Vec<f64>>) {
    let half = f.out.len() / 2;
    let per = half / c.batch;
    let w = weights(c);
    let (a, b) = f.out.split_at(half);
    let (mse, mut grad) = rloss::mse(a, &f64s(&c.target));
    match kind {
        PairKind::Cbdm { tau } => {
            let (fa, fb) = frozen.split_at(half);
            let pull_a = rpair::pair(a, fb, &w, per, tau as f64, 0.0);
            let pull_b = rpair::pair(fa, b, &w, per, 0.0, 0.25 * tau as f64);
            let loss = mse + tau as f64 * (pull_a.distance + 0.25 * pull_b.distance);
            grad.iter_mut()
                .zip(&pull_a.grad_a)
                .for_each(|(g, p)| *g += p);
            grad.extend(&pull_b.grad_b);
            (loss, grad, None)
        }
        PairKind::Ccua {
            alpha,
            gamma,
            tau,
            block,
        } => {
            let al = rpair::pair(a, b, &w, per, gamma as f64, gamma as f64);
            grad.iter_mut().zip(&al.grad_a).for_each(|(g, p)| *g += p);
            grad.extend(&al.grad_b);
            let feats = f.block_output(block as usize);
            let null = &feats[feats.len() / 2..];
            let features = null.len() / c.batch;
            let u = rcon::ucl(null, &w, features, tau as f64, alpha as f64);
            let mut inject = vec![0.0; feats.len() / 2];
            inject.extend(&u.grad);
            let loss = mse + gamma as f64 * al.distance + alpha as f64 * u.loss;
            (loss, grad, Some(inject))
        }
    }
}

fn kinds(cfg: &DitConfig) -> [PairKind; 2] {
    [
        PairKind::Cbdm { tau: 1.0 },
        // Larger weights than the defaults (0.05) so that a wrong regulariser gradient
        // cannot hide under the MSE's.
        PairKind::Ccua {
            alpha: 0.7,
            gamma: 0.5,
            tau: 0.1,
            block: cfg.depth / 4,
        },
    ]
}

#[test]
fn reference_objectives_match_finite_differences() {
    let mut cfg = DitConfig::tiny();
    cfg.height = 4;
    cfg.width = 6;
    let layout = ParamLayout::new(&cfg);
    for kind in kinds(&cfg) {
        let c = case(cfg.clone(), 3, matches!(kind, PairKind::Ccua { .. }), 11);
        let flat = f64s(&c.params);
        let f = forward(&c, &layout, &flat);
        let (_, dout, inject) = objective(&c, kind, &f, &f.out);
        let grads = rdit::backward_injected(
            &cfg,
            &rdit::Params {
                layout: &layout,
                flat: &flat,
            },
            &f,
            &dout,
            inject.as_deref().map(|g| (cfg.depth as usize / 4, g)),
        );
        let loss = |v: &[f64]| objective(&c, kind, &forward(&c, &layout, v), &f.out).0;
        assert_fd_tensors(&format!("{kind:?}"), &layout, &flat, &grads, loss, 1e-6);
    }
}

#[test]
fn gpu_objectives_match_reference() {
    let g = gpu();
    let dev = &g.device;
    let cfg = DitConfig::tiny();
    let layout = ParamLayout::new(&cfg);
    let lk = LossKernels::new(dev).unwrap();
    for kind in kinds(&cfg) {
        let c = case(cfg.clone(), 5, matches!(kind, PairKind::Ccua { .. }), 12);
        let dit = Dit::new(dev, cfg.clone(), &c.params).unwrap();
        let acts = Activations::new(dev, &cfg, c.batch as u32, 2).unwrap();
        acts.set_conditions(&g.queue, &cfg, &c.t, &c.labels)
            .unwrap();
        let pl = PairLoss::new(dev, &lk, &cfg, c.batch as u32, kind).unwrap();
        let w: Vec<f32> = weights(&c).iter().map(|&v| v as f32).collect();
        g.queue
            .write_buffer(&pl.weight, 0, bytemuck::cast_slice(&w));
        let (pb, tb) = (
            g.upload("patches", &c.patches),
            g.upload("target", &c.target),
        );
        let mut enc = g.encoder();
        let pass = LossPass {
            tap: pl.tap(),
            dout: &pl.dout,
            inject: pl.inject(),
        };
        dit.record_with_loss(dev, &mut enc, &acts, &pb, pass, |enc| {
            pl.record(dev, enc, &lk, &acts, Target::Explicit((&tb).into()), true)
        })
        .unwrap();
        g.submit_and_wait(enc).unwrap();

        let flat = f64s(&c.params);
        let f = forward(&c, &layout, &flat);
        let (loss, dout, inject) = objective(&c, kind, &f, &f.out);
        let want = rdit::backward_injected(
            &cfg,
            &rdit::Params {
                layout: &layout,
                flat: &flat,
            },
            &f,
            &dout,
            inject.as_deref().map(|g| (cfg.depth as usize / 4, g)),
        );
        let s = g.read::<f32>(&pl.scalars, 3).unwrap();
        assert_scalar(
            &format!("{kind:?} loss"),
            kind.total([s[0], s[1], s[2]]),
            loss,
            1e-4,
        );
        let got = f64s(&g.read::<f32>(&dit.grads, layout.total).unwrap());
        for t in &layout.tensors {
            let span = t.offset..t.offset + t.len();
            assert_rel(
                &format!("{kind:?} grad {}", t.name),
                &got[span.clone()],
                &want[span],
                1e-4,
            );
        }
    }
}

/// The CCUA gradient differs from the same loss without the contrastive term: the injected
/// gradient reaches the parameters (a test that the injection is not silently dropped).
#[test]
fn ccua_contrastive_term_changes_the_gradient() {
    let cfg = DitConfig::tiny();
    let layout = ParamLayout::new(&cfg);
    let c = case(cfg.clone(), 3, true, 13);
    let flat = f64s(&c.params);
    let f = forward(&c, &layout, &flat);
    let [_, kind] = kinds(&cfg);
    let (_, dout, inject) = objective(&c, kind, &f, &f.out);
    let p = rdit::Params {
        layout: &layout,
        flat: &flat,
    };
    let with = rdit::backward_injected(&cfg, &p, &f, &dout, inject.as_deref().map(|g| (0, g)));
    let without = rdit::backward(&cfg, &p, &f, &dout);
    let qkv = layout.get("blocks.0.attn.qkv.weight");
    let diff: f64 = (qkv.offset..qkv.offset + qkv.len())
        .map(|i| (with[i] - without[i]).abs())
        .sum();
    assert!(
        diff > 1e-6,
        "the contrastive gradient did not reach block 0"
    );
    let last = layout.get("blocks.1.attn.qkv.weight");
    assert_eq!(
        &with[last.offset..last.offset + last.len()],
        &without[last.offset..last.offset + last.len()],
        "block 1 comes after the tapped block 0 and must not see its gradient"
    );
}

fn trainer(extra: &str) -> Trainer<'static> {
    let opts = TrainOptions::from_toml(extra)
        .unwrap()
        .or(TrainOptions::from_toml(
            "dataset = 'toy2d'\nclasses = 4\nhead_count = 200\nimbalance = 10.0\nbatch = 16\n\
             objective = 'cbdm'\n",
        )
        .unwrap());
    let config = opts.resolve().unwrap();
    let (data, _) = setup::load_data(&config).unwrap();
    let model = setup::model_config(&config, &data).unwrap();
    Trainer::new(gpu(), config, model, data, None).unwrap()
}

/// y' rows follow the prior: the label frequencies (frequency) or flat over the labels
/// (uniform); whole-batch unconditional steps come with probability `cbdm_uncond`, and then
/// every first-half row is ∅.
#[test]
fn cbdm_label_rows_follow_their_prior() {
    for (prior, uncond) in [("frequency", 0.1f64), ("uniform", 0.3)] {
        let mut t = trainer(&format!("cbdm_prior = '{prior}'\ncbdm_uncond = {uncond}\n"));
        let classes = 4;
        let mut data_counts = vec![0f64; classes];
        for i in 0..t.data.len() {
            data_counts[t.data.labels_of(i)[0] as usize] += 1.0;
        }
        let mut counts = vec![0f64; classes];
        let (steps, b) = (400u32, 16usize);
        let mut unconditional = 0;
        for s in 0..steps {
            let idx = t.batch_indices(s);
            let rows = t.label_rows(s, &idx);
            assert_eq!(rows.len(), 2 * b);
            let null = t.model.null_label();
            if t.whole_batch_unconditional(s) {
                unconditional += 1;
                assert!(rows[..b].iter().all(|&l| l == null));
            } else {
                for (j, &i) in idx.iter().enumerate() {
                    assert_eq!(rows[j], t.data.labels_of(i)[0]);
                }
            }
            for &l in &rows[b..] {
                assert!(l != null && l != NO_LABEL);
                counts[l as usize] += 1.0;
            }
        }
        let share = unconditional as f64 / steps as f64;
        assert!(
            (share - uncond).abs() < 0.06,
            "{prior}: {share} unconditional steps for p = {uncond}"
        );
        let total: f64 = counts.iter().sum();
        let data_total: f64 = data_counts.iter().sum();
        for c in 0..classes {
            let want = match prior {
                "frequency" => data_counts[c] / data_total,
                _ => 1.0 / classes as f64,
            };
            let got = counts[c] / total;
            assert!(
                (got - want).abs() < 0.03,
                "{prior}: class {c} drawn {got:.3}, want {want:.3}"
            );
        }
    }
}
