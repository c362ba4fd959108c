//! SeedSelect: the step coefficients against the sampler, the encoder's and the loss's
//! gradients against finite differences, the chain's backward (GPU, recomputed per step)
//! against finite differences of the chain itself, the chain against `generate`, and an
//! optimisation that lowers the loss.

use crate::common;
use common::*;
use imba::diffusion::generate::{generate, SampleSpec};
use imba::diffusion::{DdpmSchedule, Sampler};
use imba::eval::classifier::Classifier;
use imba::model::{DitConfig, ParamLayout};
use imba::remedies::seedselect::{self, step_coef, Chain, Options, Target};
use imba::rng::noise_range;
use imba::train::Process;

fn model() -> (DitConfig, Vec<f32>) {
    let mut cfg = DitConfig::tiny();
    cfg.height = 6;
    cfg.width = 6;
    cfg.depth = 1;
    // Every weight non-zero: DiT's own initialisation zeroes the output layer, and a model
    // that predicts ε = 0 everywhere would make the chain's Jacobian trivial.
    let params: Vec<f32> = ParamLayout::new(&cfg)
        .init_all_nonzero(5)
        .iter()
        .map(|v| v * 0.5)
        .collect();
    (cfg, params)
}

/// A small encoder trained on random images of two classes.
fn target(image: usize, seed: u64) -> Target {
    let mut r = Rand::new(seed);
    let n = 24;
    let mut images = r.vec(n * image, -1.0, 1.0);
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 2).collect();
    for (i, img) in images.chunks_mut(image).enumerate() {
        if i % 2 == 1 {
            img.iter_mut().take(image / 2).for_each(|v| *v = 0.8);
        }
    }
    let clf = Classifier::train(&images, &labels, 2, 20, 3);
    let refs: Vec<f32> = images
        .chunks(image)
        .skip(1)
        .step_by(2)
        .take(3)
        .flatten()
        .copied()
        .collect();
    Target::new(clf, &refs)
}

#[test]
fn step_coefficients_reproduce_the_samplers_update() {
    let schedule = DdpmSchedule::default_linear();
    let mut r = Rand::new(1);
    for sampler in [
        Sampler::Ddim { steps: 7, eta: 0.0 },
        Sampler::Euler { steps: 5 },
    ] {
        for st in sampler.steps(&schedule).unwrap() {
            let x = r.vec(9, -2.0, 2.0);
            let e = r.vec(9, -2.0, 2.0);
            let mut y = x.clone();
            sampler.update(&schedule, &st, &mut y, &e, &[]);
            let c = step_coef(&sampler, &schedule, &st).unwrap();
            let want: Vec<f64> = x
                .iter()
                .zip(&e)
                .map(|(&a, &b)| c.a * a as f64 + c.b * b as f64)
                .collect();
            assert_close(&format!("{sampler:?} step {st:?}"), &y, &want, 1e-5, 1e-5);
        }
    }
    let stochastic = Sampler::Ddim { steps: 7, eta: 1.0 };
    let st = stochastic.steps(&schedule).unwrap()[0];
    assert_error_mentions(
        step_coef(&stochastic, &schedule, &st).map(|_| ()),
        "deterministic",
    );
}

#[test]
fn encoder_and_loss_gradients_match_finite_differences() {
    let image = 30;
    let t = target(image, 2);
    // Inputs on a 2⁻¹² grid and a step of 2⁻¹⁰: x ± h is exact in f32, which the encoder
    // reads (a 1e-6 step would be lost to f32 rounding).
    let x: Vec<f32> = Rand::new(3)
        .vec(image, -1.0, 1.0)
        .iter()
        .map(|v| (v * 4096.0).round() / 4096.0)
        .collect();
    let check = |what: &str, grad: &[f64], loss: &dyn Fn(&[f32]) -> f64| {
        assert!(grad.iter().any(|&v| v != 0.0), "{what}: all-zero gradient");
        let h = 1.0 / 1024.0;
        for i in 0..image {
            let mut y = x.clone();
            y[i] = x[i] + h;
            let up = loss(&y);
            y[i] = x[i] - h;
            let fd = (up - loss(&y)) / (2.0 * h as f64);
            assert!(
                (grad[i] - fd).abs() <= 1e-4 * (1.0 + fd.abs()),
                "{what}[{i}]: analytic {} vs finite difference {fd}",
                grad[i]
            );
        }
    };
    check("semantic", &t.semantic(&x).1, &|v| t.semantic(v).0);
    check("appearance", &t.appearance(&x).1, &|v| t.appearance(v).0);
    // The whole loss through its three x̂0 and the final image, all set to x.
    let (_, g0, gl) = t.loss([&x, &x, &x], &x);
    let sum: Vec<f64> = (0..image)
        .map(|i| g0[0][i] + g0[1][i] + g0[2][i] + gl[i])
        .collect();
    check("loss", &sum, &|v| t.loss([v, v, v], v).0);
}

#[test]
fn chain_runs_as_generate_does() {
    let g = gpu();
    let (cfg, params) = model();
    let image = (cfg.channels * cfg.height * cfg.width) as usize;
    let labels = vec![1u32, 2];
    let chain = Chain::new(g, &cfg, &params, Process::Ddpm, 4, 1.5, &labels).unwrap();
    let (xs, _) = chain.run(&noise_range(9, 0, 0, 2 * image)).unwrap();
    let spec = SampleSpec {
        model: &cfg,
        params: &params,
        process: Process::Ddpm,
        sampler: Sampler::Ddim { steps: 4, eta: 0.0 },
        guidance: 1.5,
        seed: 9,
        batch: 2,
        delta: None,
    };
    let want = generate(g, &spec, &labels).unwrap();
    assert_eq!(xs[4], want, "the chain and generate disagree");
}

/// The analytic ∂L/∂x_T of the whole chain (3 DDIM steps, guided) against a central
/// difference of the chain's loss along a random direction.
#[test]
fn chain_gradient_matches_finite_differences() {
    let g = gpu();
    let (cfg, params) = model();
    let image = (cfg.channels * cfg.height * cfg.width) as usize;
    let t = target(image, 4);
    for process in [Process::Ddpm, Process::Flow] {
        let chain = Chain::new(g, &cfg, &params, process, 3, 2.0, &[0, 2]).unwrap();
        let x_t = noise_range(1, 0, 0, 2 * image);
        let loss = |x: &[f32]| -> (f64, Vec<f64>) {
            let (xs, preds) = chain.run(x).unwrap();
            let (total, g_final, g_x0) = seedselect::batch_loss(&chain, &t, &xs, &preds).unwrap();
            (total, chain.backward(&xs, &g_final, &g_x0).unwrap())
        };
        let (_, grad) = loss(&x_t);
        let u = Rand::new(6).vec(x_t.len(), -1.0, 1.0);
        let analytic: f64 = grad.iter().zip(&u).map(|(a, &b)| a * b as f64).sum();
        let moved = |s: f32| -> Vec<f32> { x_t.iter().zip(&u).map(|(&a, &b)| a + s * b).collect() };
        assert!(
            analytic.abs() > 1e-3,
            "{process:?}: the directional derivative {analytic} is too small to test"
        );
        // The encoder's ReLUs make the loss piecewise smooth: the central difference
        // converges to the gradient as h shrinks (at h = 1e-2 a kink can still be inside the
        // step), so the best of three step sizes must agree to 1%.
        let fds: Vec<f64> = [1e-2f32, 3e-3, 1e-3]
            .iter()
            .map(|&h| (loss(&moved(h)).0 - loss(&moved(-h)).0) / (2.0 * h as f64))
            .collect();
        let best = fds
            .iter()
            .map(|fd| (analytic - fd).abs() / fd.abs().max(1e-3))
            .fold(f64::INFINITY, f64::min);
        assert!(
            best <= 1e-2,
            "{process:?}: analytic {analytic} vs finite differences {fds:?}"
        );
    }
}

#[test]
fn optimising_the_seeds_lowers_the_loss() {
    let g = gpu();
    let (cfg, params) = model();
    let image = (cfg.channels * cfg.height * cfg.width) as usize;
    let t = target(image, 7);
    let o = Options {
        samples: 3,
        batch: 2,
        steps: 4,
        iters: 6,
        ..Options::default()
    };
    let out = seedselect::optimise(g, &cfg, &params, Process::Ddpm, &[1], &t, &o).unwrap();
    assert_eq!(out.losses.len(), 7);
    assert_eq!(out.plain.len(), 3 * image);
    assert!(
        out.losses[6] < 0.9 * out.losses[0],
        "the loss went {:?}",
        out.losses
    );
    // Iteration 0 is plain sampling with the same seed.
    let spec = SampleSpec {
        model: &cfg,
        params: &params,
        process: Process::Ddpm,
        sampler: Sampler::Ddim { steps: 4, eta: 0.0 },
        guidance: 1.5,
        seed: 0,
        batch: 3,
        delta: None,
    };
    assert_eq!(out.plain, generate(g, &spec, &[1, 1, 1]).unwrap());
    assert_error_mentions(
        seedselect::optimise(
            g,
            &cfg,
            &params,
            Process::Ddpm,
            &[1],
            &t,
            &Options {
                steps: 2,
                ..o.clone()
            },
        ),
        "`steps` must be at least 3",
    );
}

/// The near-copy check's distances on known points: a copy is at 0, the references' own
/// spacing skips each reference itself.
#[test]
fn nearest_reference_distances() {
    use imba::remedies::seedselect::nearest_mean;
    let refs = [0.0f32, 0.0, 3.0, 4.0, 0.0, 10.0];
    // Samples: a copy of the first reference (0) and a point 1 from the second (1).
    assert_eq!(nearest_mean(&[0.0, 0.0, 3.0, 5.0], &refs, 2, false), 0.5);
    // Spacing: 0→(3,4) 5, (3,4)→0 5, (0,10)→(3,4) √45.
    let want = (5.0 + 5.0 + 45f64.sqrt()) / 3.0;
    assert!((nearest_mean(&refs, &refs, 2, true) - want).abs() < 1e-12);
    assert!(nearest_mean(&[1.0, 1.0], &[1.0, 1.0], 2, true).is_nan());
}
