//! Philox4x32-10 and the normals: known answers, GPU = CPU bit for bit on the words, the
//! normals within last-bit differences, and their distribution (moments, Kolmogorov–Smirnov).

use crate::common;
use common::gpu;
use imba::kernels::NoiseKernels;
use imba::kernels::NormalsArgs;
use imba::kernels::PhiloxWordsArgs;
use imba::rng;

/// Known-answer vectors published with Random123 (Salmon et al.), kat_vectors.
#[test]
fn cpu_philox_matches_random123_known_answers() {
    let cases: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
        (
            [0; 4],
            [0; 2],
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
        ),
        (
            [u32::MAX; 4],
            [u32::MAX; 2],
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
        ),
        (
            [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
            [0xa4093822, 0x299f31d0],
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
        ),
    ];
    for (ctr, key, want) in cases {
        assert_eq!(
            rng::philox4x32_10(ctr, key),
            want,
            "counter {ctr:x?} key {key:x?}"
        );
    }
}

#[test]
fn gpu_philox_words_are_bit_exact() {
    let g = gpu();
    let k = NoiseKernels::new(&g.device).unwrap();
    for (seed, step, stream, count) in [
        (0u32, 0u32, 0u32, 1001u32),
        (0xDEAD_BEEF, 77, 1, 4099),
        (u32::MAX, u32::MAX, 5, 333),
    ] {
        let out = g.zeros("words", count as u64 * 16);
        let mut enc = g.encoder();
        k.record_philox_words(
            &g.device,
            &mut enc,
            &PhiloxWordsArgs {
                seed,
                step,
                stream,
                count,
                out: (&out).into(),
            },
        )
        .unwrap();
        g.submit_and_wait(enc).unwrap();
        let got: Vec<u32> = g.read(&out, count as usize * 4).unwrap();
        for i in 0..count {
            let want = rng::philox4x32_10([i, stream, 0, 0], [seed, step]);
            assert_eq!(
                &got[4 * i as usize..4 * i as usize + 4],
                &want,
                "counter {i}, seed {seed}, step {step}"
            );
        }
    }
}

fn gpu_normals(seed: u32, step: u32, count: u32) -> Vec<f32> {
    let g = gpu();
    let k = NoiseKernels::new(&g.device).unwrap();
    let out = g.poisoned("normals", count as usize);
    let mut enc = g.encoder();
    k.record_normals(
        &g.device,
        &mut enc,
        &NormalsArgs {
            seed,
            step,
            count,
            out: (&out).into(),
        },
    )
    .unwrap();
    g.submit_and_wait(enc).unwrap();
    g.read(&out, count as usize).unwrap()
}

/// The normals agree with the CPU reference to a few ulps: the words are identical, and the
/// only freedom left is the rounding of division/sqrt and fused multiply-adds, which SPIR-V
/// permits. The report prints how many are bit-identical.
#[test]
fn gpu_normals_match_cpu_reference() {
    let count = 100_003u32; // not a multiple of 4 or of the workgroup
    let got = gpu_normals(42, 7, count);
    let want = rng::noise(42, 7, count as usize);
    let mut identical = 0;
    let mut worst = 0.0f32;
    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
        let err = (g - w).abs();
        assert!(
            err <= 4e-6 * w.abs().max(1.0),
            "normal {i}: gpu {g} cpu {w}"
        );
        identical += (g.to_bits() == w.to_bits()) as usize;
        worst = worst.max(err);
    }
    eprintln!("normals: {identical}/{count} bit-identical, max |gpu − cpu| = {worst:.2e}");
}

/// Mean, variance and a Kolmogorov–Smirnov test against Φ on 2^20 GPU normals.
#[test]
fn gpu_normals_are_standard_normal() {
    let n = 1 << 20;
    let mut z = gpu_normals(1234, 0, n);
    let mean = z.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
    let var = z.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    // Standard errors: 1/√n ≈ 1e-3 for the mean, √(2/n) ≈ 1.4e-3 for the variance; 5σ bounds.
    assert!(mean.abs() < 5e-3, "mean {mean}");
    assert!((var - 1.0).abs() < 7e-3, "variance {var}");
    z.sort_by(|a, b| a.total_cmp(b));
    let phi = |x: f64| 0.5 * libm::erfc(-x / std::f64::consts::SQRT_2);
    let mut d: f64 = 0.0;
    for (i, &x) in z.iter().enumerate() {
        let f = phi(x as f64);
        d = d
            .max((f - i as f64 / n as f64).abs())
            .max(((i + 1) as f64 / n as f64 - f).abs());
    }
    // Critical value at α = 0.001: 1.95/√n.
    let crit = 1.95 / (n as f64).sqrt();
    eprintln!("KS statistic {d:.2e} (critical {crit:.2e}), mean {mean:.2e}, var {var:.5}");
    assert!(d < crit, "KS statistic {d} ≥ {crit}");
}

/// Different keys and streams give different noise; the same key gives the same bits.
#[test]
fn seeds_steps_and_streams_separate_and_repeat() {
    let a = gpu_normals(1, 1, 4096);
    let b = gpu_normals(1, 1, 4096);
    assert_eq!(
        a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        b.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
    );
    let c = gpu_normals(1, 2, 4096);
    let d = gpu_normals(2, 1, 4096);
    let same = |x: &[f32], y: &[f32]| x.iter().zip(y).filter(|(p, q)| p == q).count();
    assert!(same(&a, &c) < 5 && same(&a, &d) < 5);
    assert_ne!(rng::normal(5, 0, 1, 1), rng::normal(5, 1, 1, 1));
}

/// The CPU log and sin/cos polynomials are accurate on their whole domain.
#[test]
fn cpu_ln_and_sincos_are_accurate() {
    let mut worst_ln = 0.0f64;
    for i in 0..(1u32 << 16) {
        let u = ((i << 8) as f32 + 1.0) * 5.960_464_5e-8;
        let e = (rng::ln(u) as f64 - (u as f64).ln()).abs();
        worst_ln = worst_ln.max(e / (u as f64).ln().abs().max(1e-7));
    }
    assert!(worst_ln < 5e-7, "ln relative error {worst_ln}");
    let mut worst = 0.0f64;
    for i in 0..(1u32 << 16) {
        let v = (i << 8) as f32 * 5.960_464_5e-8;
        let (c, s) = rng::cos_sin_turns(v);
        let a = 2.0 * std::f64::consts::PI * v as f64;
        worst = worst
            .max((c as f64 - a.cos()).abs())
            .max((s as f64 - a.sin()).abs());
    }
    assert!(worst < 3e-7, "sin/cos abs error {worst}");
}
