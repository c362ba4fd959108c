//! The fused forward process (x_t straight into patch tokens) and label dropout against
//! their CPU references, at odd sizes with poisoned outputs.

use crate::common;
use common::{assert_close, assert_refused, gpu, Rand};
use imba::diffusion::DdpmSchedule;
use imba::kernels::LabelDropoutArgs;
use imba::kernels::{noise::dropout_threshold, ImageGeometry, NoiseArgs, NoiseKernels, Schedule};
use imba::reference::noise as ref_noise;

fn run(g: ImageGeometry, seed: u32, step: u32, flow: bool, t: &[f32], x0: &[f32]) -> Vec<f32> {
    let gpu = gpu();
    let k = NoiseKernels::new(&gpu.device).unwrap();
    let sched = DdpmSchedule::default_linear();
    let table = gpu.upload("table", &sched.coefficients());
    let x0b = gpu.upload("x0", x0);
    let tb = gpu.upload("t", t);
    let out = gpu.poisoned("xt", x0.len());
    let schedule = if flow {
        Schedule::Flow
    } else {
        Schedule::Ddpm {
            table: (&table).into(),
            steps: sched.steps(),
        }
    };
    let mut enc = gpu.encoder();
    let args = NoiseArgs {
        step_values: None,
        geometry: g,
        seed,
        step,
        schedule,
        x0: (&x0b).into(),
        timesteps: (&tb).into(),
        out_tokens: (&out).into(),
        first_sample: 0,
    };
    k.record_noise_to_tokens(&gpu.device, &mut enc, &args)
        .unwrap();
    gpu.submit_and_wait(enc).unwrap();
    gpu.read(&out, x0.len()).unwrap()
}

fn check(g: ImageGeometry, flow: bool, seed: u64) {
    let mut r = Rand::new(seed);
    let x0 = r.vec(g.elements() as usize, -1.0, 1.0);
    let sched = DdpmSchedule::default_linear();
    let table = sched.coefficients();
    let t: Vec<f32> = (0..g.batch)
        .map(|_| {
            if flow {
                r.uniform(0.0, 1.0)
            } else {
                r.below(1000) as f32
            }
        })
        .collect();
    let coef: Vec<[f32; 2]> = t
        .iter()
        .map(|&t| {
            if flow {
                [1.0 - t, t]
            } else {
                table[t as usize]
            }
        })
        .collect();
    let got = run(g, 99, 3, flow, &t, &x0);
    let want = ref_noise::noise_to_tokens(&g, 99, 3, &x0, &coef);
    let want: Vec<f64> = want.iter().map(|&x| x as f64).collect();
    assert_close(&format!("x_t {g:?} flow={flow}"), &got, &want, 1e-6, 1e-6);
}

#[test]
fn noise_to_tokens_matches_reference_at_odd_sizes() {
    let geo = |batch, channels, height, width, patch| ImageGeometry {
        batch,
        channels,
        height,
        width,
        patch,
    };
    for (g, seed) in [
        (geo(3, 5, 7, 7, 1), 1),
        (geo(3, 3, 6, 10, 2), 2),
        (geo(5, 1, 9, 3, 3), 3),
        (geo(2, 4, 8, 8, 4), 4),
        (geo(7, 2, 1, 1, 1), 5), // toy2d: one "pixel" with two channels
    ] {
        check(g, false, seed);
        check(g, true, seed + 100);
    }
}

#[test]
fn noise_to_tokens_large() {
    check(
        ImageGeometry {
            batch: 64,
            channels: 4,
            height: 32,
            width: 32,
            patch: 2,
        },
        false,
        7,
    );
}

/// Timesteps outside the schedule give NaN tokens for that sample only (a bad timestep must
/// not pass silently into training).
#[test]
fn out_of_range_timesteps_give_nan() {
    let g = ImageGeometry {
        batch: 4,
        channels: 1,
        height: 2,
        width: 2,
        patch: 1,
    };
    let x0 = vec![0.5; 16];
    let out = run(g, 1, 1, false, &[0.0, 1000.0, 2.5, 999.0], &x0);
    let sample = |b: usize| &out[b * 4..b * 4 + 4];
    assert!(sample(0).iter().all(|x| x.is_finite()));
    assert!(sample(1).iter().all(|x| x.is_nan()));
    assert!(sample(2).iter().all(|x| x.is_nan()));
    assert!(sample(3).iter().all(|x| x.is_finite()));
    let out = run(g, 1, 1, true, &[0.0, 1.5, -0.1, 1.0], &x0);
    assert!(out[4..12].iter().all(|x| x.is_nan()) && out[12..].iter().all(|x| x.is_finite()));
}

#[test]
fn label_dropout_matches_reference_and_rate() {
    let gpu = gpu();
    let k = NoiseKernels::new(&gpu.device).unwrap();
    let batch = 20_001u32;
    let labels: Vec<u32> = (0..batch).map(|i| i % 7).collect();
    let inb = gpu.upload("labels", &labels);
    let out = gpu.upload("out", &vec![u32::MAX; batch as usize]);
    let mut enc = gpu.encoder();
    k.record_label_dropout(
        &gpu.device,
        &mut enc,
        &LabelDropoutArgs {
            seed: 5,
            step: 9,
            drop_prob: 0.1,
            null_label: 7,
            batch,
            labels_in: (&inb).into(),
            labels_out: (&out).into(),
        },
    )
    .unwrap();
    gpu.submit_and_wait(enc).unwrap();
    let got: Vec<u32> = gpu.read(&out, batch as usize).unwrap();
    let want = ref_noise::label_dropout(5, 9, dropout_threshold(0.1), 7, &labels);
    assert_eq!(got, want);
    let rate = got.iter().filter(|&&l| l == 7).count() as f64 / batch as f64;
    // Binomial standard error √(0.09/20001) ≈ 0.0021; 5σ.
    assert!((rate - 0.1).abs() < 0.011, "dropout rate {rate}");
}

#[test]
fn bad_noise_inputs_are_errors() {
    let gpu = gpu();
    let k = NoiseKernels::new(&gpu.device).unwrap();
    let buf = gpu.zeros("b", 4096);
    let small = gpu.zeros("s", 8);
    let mut enc = gpu.encoder();
    let mk = |g, x0, out| NoiseArgs {
        step_values: None,
        geometry: g,
        seed: 0,
        step: 0,
        schedule: Schedule::Flow,
        x0,
        timesteps: (&buf).into(),
        out_tokens: out,
        first_sample: 0,
    };
    let good = ImageGeometry {
        batch: 2,
        channels: 2,
        height: 4,
        width: 4,
        patch: 2,
    };
    let cases = [
        (
            mk(
                ImageGeometry { batch: 0, ..good },
                (&buf).into(),
                (&buf).into(),
            ),
            "at least 1",
        ),
        (
            mk(
                ImageGeometry { patch: 3, ..good },
                (&buf).into(),
                (&buf).into(),
            ),
            "must divide",
        ),
        (mk(good, (&small).into(), (&buf).into()), "`x0`"),
        (mk(good, (&buf).into(), (&small).into()), "`out_tokens`"),
    ];
    for (args, needle) in cases {
        assert_refused(
            || k.record_noise_to_tokens(&gpu.device, &mut enc, &args),
            needle,
        );
    }
    assert_refused(
        || {
            k.record_label_dropout(
                &gpu.device,
                &mut enc,
                &LabelDropoutArgs {
                    seed: 0,
                    step: 0,
                    drop_prob: 1.5,
                    null_label: 0,
                    batch: 4,
                    labels_in: (&buf).into(),
                    labels_out: (&buf).into(),
                },
            )
        },
        "[0, 1]",
    );
}
