//! InvDiff: the group objectives' gradients against finite differences, group inference
//! separating losses, the δ-model's zero start, a δ training that lowers the group loss, and
//! mixed sampling (r = 0 is the frozen model; the mix is r·ε_δ + (1 − r)·ε).

use crate::common;
use common::*;
use imba::diffusion::generate::{generate, Delta, SampleSpec};
use imba::diffusion::Sampler;
use imba::model::{DitConfig, ParamLayout};
use imba::remedies::invdiff::{self, group_loss, group_spread, infer_groups, DeltaInit};
use imba::train::Process;

#[test]
fn group_objectives_match_finite_differences() {
    let mut r = Rand::new(1);
    let (n, g) = (13, 4);
    let l = f64s(&r.vec(n, 0.1, 2.0));
    let mut w = f64s(&r.vec(n * g, 0.05, 1.0));
    for row in w.chunks_mut(g) {
        let s: f64 = row.iter().sum();
        row.iter_mut().for_each(|v| *v /= s);
    }
    let (_, grad) = group_spread(&l, &w, g);
    assert_fd("spread/W", &w, &grad, |v| group_spread(&l, v, g).0, 1e-6);
    for var_weight in [0.0, 1.0] {
        let (_, dl) = group_loss(&l, &w, g, var_weight);
        assert_fd(
            &format!("group loss/l (λ = {var_weight})"),
            &l,
            &dl,
            |v| group_loss(v, &w, g, var_weight).0,
            1e-6,
        );
    }
    // An empty group is left out: the loss of 3 live groups equals the 3-group loss.
    let mut w4 = w.clone();
    for i in 0..n {
        w4[i * g + 3] = 0.0;
    }
    let w3: Vec<f64> = (0..n).flat_map(|i| w4[i * g..i * g + 3].to_vec()).collect();
    let (a, _) = group_loss(&l, &w4, g, 1.0);
    let (b, _) = group_loss(&l, &w3, 3, 1.0);
    assert!((a - b).abs() < 1e-12, "{a} vs {b}");
}

#[test]
fn group_inference_separates_high_and_low_losses() {
    // Two populations of losses: inference must raise the spread and put them apart.
    let l: Vec<f64> = (0..40)
        .map(|i| {
            if i % 4 == 0 {
                2.0 + 0.01 * i as f64
            } else {
                0.5
            }
        })
        .collect();
    let g = 8;
    let start = infer_groups(&l, g, 0, 0.01, 3);
    let w = infer_groups(&l, g, 500, 0.01, 3);
    for row in w.chunks(g) {
        assert!(row.iter().all(|&v| v >= 0.0));
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }
    let (s0, s1) = (group_spread(&l, &start, g).0, group_spread(&l, &w, g).0);
    assert!(s1 > 5.0 * s0, "spread {s0} -> {s1}");
    // The dominant group of the high losses differs from that of the low ones.
    let top = |i: usize| {
        (0..g)
            .max_by(|&a, &b| w[i * g + a].total_cmp(&w[i * g + b]))
            .unwrap()
    };
    assert_ne!(top(0), top(1));
}

fn tiny() -> (DitConfig, Vec<f32>) {
    let mut cfg = DitConfig::tiny();
    cfg.height = 6;
    cfg.width = 6;
    let p = ParamLayout::new(&cfg)
        .init_all_nonzero(3)
        .iter()
        .map(|v| v * 0.5)
        .collect();
    (cfg, p)
}

#[test]
fn mixed_sampling_is_the_weighted_sum() {
    let g = gpu();
    let (cfg, base) = tiny();
    let mut dcfg = cfg.clone();
    dcfg.depth = 1;
    let delta: Vec<f32> = ParamLayout::new(&dcfg).init_all_nonzero(4);
    let spec = |params: &'static str, d: Option<Delta>| -> Vec<f32> {
        let p: &[f32] = if params == "base" { &base } else { &delta };
        let m = if params == "base" { &cfg } else { &dcfg };
        generate(
            g,
            &SampleSpec {
                model: m,
                params: p,
                process: Process::Flow,
                sampler: Sampler::Euler { steps: 1 },
                guidance: 1.0,
                seed: 5,
                batch: 3,
                delta: d,
            },
            &[0, 1, 2],
        )
        .unwrap()
    };
    // One Euler step from t = 1: x1 = x − v, linear in v, so the mix of the two models'
    // one-step samples is the one-step sample of the mix.
    let (xb, xd) = (spec("base", None), spec("delta", None));
    let mixed = spec(
        "base",
        Some(Delta {
            model: &dcfg,
            params: &delta,
            r: 0.8,
        }),
    );
    let want: Vec<f64> = xb
        .iter()
        .zip(&xd)
        .map(|(&b, &d)| 0.8 * d as f64 + 0.2 * b as f64)
        .collect();
    assert_close("mixed sample", &mixed, &want, 1e-5, 1e-5);
    let mut bad = dcfg.clone();
    bad.num_labels += 1;
    let p = ParamLayout::new(&bad).init(0);
    let r = generate(
        g,
        &SampleSpec {
            model: &cfg,
            params: &base,
            process: Process::Flow,
            sampler: Sampler::Euler { steps: 1 },
            guidance: 1.0,
            seed: 5,
            batch: 3,
            delta: Some(Delta {
                model: &bad,
                params: &p,
                r: 0.8,
            }),
        },
        &[0],
    );
    assert_error_mentions(r, "δ-model");
}

#[test]
fn delta_starts_at_zero_and_training_lowers_the_group_loss() {
    let g = gpu();
    let data = imba::data::toy2d(&imba::data::Toy2dSpec {
        classes: 3,
        head_count: 40,
        imbalance: 10.0,
        ..Default::default()
    })
    .unwrap();
    let mut cfg = DitConfig::tiny();
    cfg.height = 1;
    cfg.width = 1;
    cfg.patch = 1;
    cfg.channels = 2;
    cfg.num_labels = data.num_labels();
    let base = ParamLayout::new(&cfg).init_all_nonzero(2);
    let tc = imba::train::TrainConfig {
        dataset: imba::train::DatasetKind::Toy2d,
        process: Process::Ddpm,
        ..Default::default()
    };
    let mut o = invdiff::Options::for_base(&tc);
    o.batch = 16;
    o.steps = 0;
    o.draws = 2;
    o.lr = 3e-3;
    o.warmup = 0;
    o.cosine = false;
    let losses = invdiff::per_sample_losses(g, &cfg, &base, Process::Ddpm, &data, &o).unwrap();
    assert_eq!(losses.len(), data.len());
    assert!(losses.iter().all(|l| l.is_finite() && *l > 0.0));
    let w = infer_groups(&losses, 8, 50, 0.01, 0);
    // Zero steps, either start: the δ-model's output layer is zero, so with r = 1 the mix
    // predicts ε = 0 and DDIM only rescales x_T: each step maps x to √(ᾱ_prev/ᾱ)·x.
    let eval = imba::eval::EvalOptions {
        steps: 2,
        guidance: 1.0,
        ema: false,
        ..Default::default()
    };
    let labels = [0u32, 1, 2];
    let x_t = imba::rng::noise_range(eval.seed, 0, 0, 6);
    let schedule = imba::diffusion::DdpmSchedule::default_linear();
    let scale: f64 = Sampler::Ddim { steps: 2, eta: 0.0 }
        .steps(&schedule)
        .unwrap()
        .iter()
        .map(|s| {
            let ab = schedule.alpha_bars[s.t as usize];
            let prev = if s.prev < 0.0 {
                1.0
            } else {
                schedule.alpha_bars[s.prev as usize]
            };
            (prev / ab).sqrt()
        })
        .product();
    let want: Vec<f64> = x_t.iter().map(|&v| v as f64 * scale).collect();
    for init in [DeltaInit::Copy, DeltaInit::Scratch { depth: 1 }] {
        o.delta_init = init;
        o.steps = 0;
        let t0 = invdiff::train_delta(
            g,
            &invdiff::Base {
                config: &tc,
                model: &cfg,
                params: &base,
            },
            &data,
            &w,
            &o,
        )
        .unwrap();
        let depth = match init {
            DeltaInit::Copy => cfg.depth,
            DeltaInit::Scratch { depth } => depth,
        };
        assert_eq!(t0.model.depth, depth);
        let full = invdiff::sample_mixed(
            g,
            &invdiff::Base {
                config: &tc,
                model: &cfg,
                params: &base,
            },
            &t0,
            1.0,
            &eval,
            &labels,
        )
        .unwrap();
        assert_close(&format!("{init:?}: zero δ"), &full, &want, 1e-5, 1e-5);
        o.steps = 60;
        let t = invdiff::train_delta(
            g,
            &invdiff::Base {
                config: &tc,
                model: &cfg,
                params: &base,
            },
            &data,
            &w,
            &o,
        )
        .unwrap();
        let first: f64 = t.losses[..10].iter().sum::<f64>() / 10.0;
        let last: f64 = t.losses[50..].iter().sum::<f64>() / 10.0;
        assert!(
            last < 0.8 * first,
            "{init:?}: the group loss went {first} -> {last}"
        );
    }
    o.groups = 1;
    assert_error_mentions(
        invdiff::train_delta(
            g,
            &invdiff::Base {
                config: &tc,
                model: &cfg,
                params: &base,
            },
            &data,
            &w,
            &o,
        )
        .map(|_| ()),
        "at least 2 groups",
    );
}

/// The δ learning rate: linear warm-up to the peak, then a cosine to 0 at the last step;
/// constant after the warm-up without the cosine.
#[test]
fn delta_learning_rate_schedule() {
    let tc = imba::train::TrainConfig::default();
    let mut o = invdiff::Options::for_base(&tc);
    assert_eq!((o.lr, o.cosine), (1e-4, true));
    (o.lr, o.steps, o.warmup) = (1.0, 110, 10);
    assert!((o.lr_at(0) - 0.1).abs() < 1e-7);
    assert!((o.lr_at(9) - 1.0).abs() < 1e-7);
    assert!((o.lr_at(10) - 1.0).abs() < 1e-7);
    assert!((o.lr_at(60) - 0.5).abs() < 1e-6, "{}", o.lr_at(60));
    assert!(o.lr_at(109) < 1e-3 && o.lr_at(109) > 0.0);
    o.cosine = false;
    assert_eq!(o.lr_at(109), 1.0);
}
