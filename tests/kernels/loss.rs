//! The fused IMBA loss, the baseline MSE and the unfused chain against the f64 CPU
//! reference; the reference's gradients against central finite differences; bad input.

use crate::common;
use common::{assert_close, assert_refused, assert_scalar, gpu, Rand};
use imba::kernels::*;
use imba::reference::{loss as rl, noise as rn};

/// Host-side inputs of one loss launch.
pub(super) struct Inputs {
    pub(super) shape: TokenShape,
    pub(super) geometry: Option<ImageGeometry>,
    pub(super) flow: bool,
    pub(super) pred_cond: Vec<f32>,
    pub(super) pred_uncond: Vec<f32>,
    /// Target in token layout; for Philox targets, the CPU reference's regeneration.
    pub(super) target: Vec<f32>,
    pub(super) x0: Vec<f32>,
}

const SEED: u32 = 0x5EED;
const STEP: u32 = 17;

pub(super) fn geo(batch: u32, channels: u32, height: u32, width: u32, patch: u32) -> ImageGeometry {
    ImageGeometry {
        batch,
        channels,
        height,
        width,
        patch,
    }
}

pub(super) fn philox_inputs(g: ImageGeometry, flow: bool, seed: u64) -> Inputs {
    let mut r = Rand::new(seed);
    let shape = g.token_shape();
    let x0 = r.vec(g.elements() as usize, -1.0, 1.0);
    let target = rn::target_tokens(&g, SEED, STEP, flow.then_some(&x0[..]));
    with_predictions(shape, Some(g), flow, target, x0, &mut r)
}

pub(super) fn explicit_inputs(shape: TokenShape, seed: u64) -> Inputs {
    let mut r = Rand::new(seed);
    let target = r.vec(shape.elements() as usize, -2.0, 2.0);
    let mut i = with_predictions(shape, None, false, target, vec![], &mut r);
    // One token whose unconditional prediction is exact: D = 0 there (0^γ must be 0, not NaN).
    let k = shape.token_dim as usize;
    i.pred_uncond[k..2 * k].copy_from_slice(&i.target[k..2 * k]);
    i
}

/// Predictions near the target with a per-token error scale, so D varies across tokens.
fn with_predictions(
    shape: TokenShape,
    geometry: Option<ImageGeometry>,
    flow: bool,
    target: Vec<f32>,
    x0: Vec<f32>,
    r: &mut Rand,
) -> Inputs {
    let k = shape.token_dim as usize;
    let mut pred_cond = vec![0.0; target.len()];
    let mut pred_uncond = vec![0.0; target.len()];
    for t in 0..shape.rows() as usize {
        let scale = r.uniform(0.05, 1.5);
        for i in t * k..(t + 1) * k {
            pred_cond[i] = target[i] + r.uniform(-1.0, 1.0);
            pred_uncond[i] = target[i] + scale * r.uniform(-1.0, 1.0);
        }
    }
    Inputs {
        shape,
        geometry,
        flow,
        pred_cond,
        pred_uncond,
        target,
        x0,
    }
}

impl Inputs {
    /// The launch's target: Philox with this geometry, or the uploaded explicit target.
    pub(super) fn target<'a>(
        &self,
        explicit: &'a wgpu::Buffer,
        x0: &'a wgpu::Buffer,
    ) -> Target<'a> {
        match self.geometry {
            Some(geometry) => Target::Philox {
                step_values: None,
                first_sample: 0,
                seed: SEED,
                step: STEP,
                geometry,
                kind: if self.flow {
                    TargetKind::Velocity
                } else {
                    TargetKind::Epsilon
                },
                x0: self.flow.then_some(x0.into()),
            },
            None => Target::Explicit(explicit.into()),
        }
    }
}

struct Outputs {
    scalars: Vec<f32>,
    weights: Vec<f32>,
    grad_cond: Vec<f32>,
    grad_uncond: Vec<f32>,
}

#[derive(Clone, Copy, PartialEq)]
enum Path {
    /// The fused pass as launched by default: the vector kernel where the shape allows.
    Fused,
    /// The fused pass with the vector kernel disabled.
    Portable,
    /// The unfused chain of the benchmarks (built with the `workflow` feature).
    #[cfg(feature = "workflow")]
    Unfused,
}

fn run_imba(inp: &Inputs, p: &ImbaParams, path: Path) -> Outputs {
    let g = gpu();
    let dev = &g.device;
    let s = inp.shape;
    let (nk, bn) = (s.elements() as usize, s.rows() as usize);
    let pc = g.upload("pc", &inp.pred_cond);
    let pu = g.upload("pu", &inp.pred_uncond);
    let tb = g.upload("target", &inp.target);
    let x0 = g.upload("x0", &inp.x0);
    let weights = g.poisoned("weights", bn);
    let gc = g.poisoned("gc", nk);
    let gu = g.poisoned("gu", nk);
    let scalars = g.poisoned("scalars", 4);
    let target = inp.target(&tb, &x0);
    let mut enc = g.encoder();
    match path {
        Path::Fused | Path::Portable => {
            let k = LossKernels::new(dev)
                .unwrap()
                .with_vector_path(path == Path::Fused);
            let ws = k.workspace(dev, s).unwrap();
            let args = ImbaLossArgs {
                shape: s,
                pred_cond: (&pc).into(),
                pred_uncond: (&pu).into(),
                target,
                weights: (&weights).into(),
                grad_cond: (&gc).into(),
                grad_uncond: (&gu).into(),
                scalars: (&scalars).into(),
                workspace: &ws,
            };
            k.record_imba(dev, &mut enc, &args, p).unwrap();
        }
        #[cfg(feature = "workflow")]
        Path::Unfused => {
            use imba::bench::unfused::{UnfusedArgs, UnfusedImba, UnfusedWorkspace};
            let k = UnfusedImba::new(dev).unwrap();
            let ws = UnfusedWorkspace::new(dev, s).unwrap();
            let args = UnfusedArgs {
                pred_cond: &pc,
                pred_uncond: &pu,
                target,
                weights: &weights,
                grad_cond: &gc,
                grad_uncond: &gu,
                scalars: &scalars,
            };
            k.record(dev, &mut enc, &ws, &args, p).unwrap();
        }
    }
    g.submit_and_wait(enc).unwrap();
    Outputs {
        scalars: g.read(&scalars, 4).unwrap(),
        weights: g.read(&weights, bn).unwrap(),
        grad_cond: g.read(&gc, nk).unwrap(),
        grad_uncond: g.read(&gu, nk).unwrap(),
    }
}

/// The tolerances: scalars rel ≤ 1e-5; elementwise ≤ 1e-5 + 1e-5·|ref|. Gradients
/// carry the factor 1/(BNK); they are compared multiplied by BNK so that the absolute part
/// of the tolerance means the same at every size.
fn compare(what: &str, inp: &Inputs, p: &ImbaParams, out: &Outputs) {
    let want = rl::imba(
        inp.shape,
        &rl::widen(&inp.pred_cond),
        &rl::widen(&inp.pred_uncond),
        &rl::widen(&inp.target),
        p,
    );
    let what = format!(
        "{what} γ={} λ={} {:?} {:?} {:?}",
        p.gamma, p.lambda, p.form, p.granularity, p.normalize
    );
    compare_outputs(&what, inp.shape, &want, out);
}

/// A launch's outputs against the reference's: the scalars, D (or the given weights) and
/// both gradients, within the tolerances above.
fn compare_outputs(what: &str, shape: TokenShape, want: &rl::ImbaOut, out: &Outputs) {
    assert_scalar(&format!("{what}: L"), out.scalars[0], want.loss, 1e-5);
    assert_scalar(
        &format!("{what}: L_c"),
        out.scalars[1],
        want.loss_cond,
        1e-5,
    );
    assert_scalar(
        &format!("{what}: L_u"),
        out.scalars[2],
        want.loss_uncond,
        1e-5,
    );
    assert_scalar(
        &format!("{what}: mean D"),
        out.scalars[3],
        want.mean_d,
        1e-5,
    );
    assert_close(
        &format!("{what}: D"),
        &out.weights,
        &want.weights,
        1e-5,
        1e-5,
    );
    let n = shape.elements() as f32;
    let scaled = |g: &[f32]| g.iter().map(|x| x * n).collect::<Vec<f32>>();
    let scaled_ref = |g: &[f64]| g.iter().map(|x| x * n as f64).collect::<Vec<f64>>();
    assert_close(
        &format!("{what}: ∂L/∂ε_c·BNK"),
        &scaled(&out.grad_cond),
        &scaled_ref(&want.grad_cond),
        1e-5,
        1e-5,
    );
    assert_close(
        &format!("{what}: ∂L/∂ε_u·BNK"),
        &scaled(&out.grad_uncond),
        &scaled_ref(&want.grad_uncond),
        1e-5,
        1e-5,
    );
}

fn all_variants() -> Vec<ImbaParams> {
    let mut v = Vec::new();
    for form in [DForm::MeanAbsPow, DForm::PowOfRms, DForm::PowOfMse] {
        for granularity in [Granularity::Token, Granularity::Sample] {
            for normalize in [Normalize::None, Normalize::BatchMean] {
                v.push(ImbaParams {
                    form,
                    granularity,
                    normalize,
                    ..ImbaParams::default()
                });
            }
        }
    }
    v
}

#[test]
fn fused_imba_matches_reference_every_variant_philox_target() {
    // B=3, N=7, K=5 (C=5, 7×1 image, p=1): odd everywhere.
    let g = ImageGeometry {
        batch: 3,
        channels: 5,
        height: 7,
        width: 1,
        patch: 1,
    };
    let inp = philox_inputs(g, false, 1);
    for p in all_variants() {
        compare("philox", &inp, &p, &run_imba(&inp, &p, Path::Fused));
    }
}

#[test]
fn fused_imba_matches_reference_explicit_target_and_edge_parameters() {
    let inp = explicit_inputs(TokenShape::new(3, 7, 5), 2);
    let mut params = all_variants();
    params.push(ImbaParams::dual_baseline());
    params.push(ImbaParams {
        lambda: 0.0,
        ..Default::default()
    });
    params.push(ImbaParams {
        lambda: 1.0,
        gamma: 2.0,
        ..Default::default()
    });
    params.push(ImbaParams {
        gamma: 0.0,
        form: DForm::PowOfMse,
        granularity: Granularity::Sample,
        normalize: Normalize::BatchMean,
        ..Default::default()
    });
    for p in params {
        compare("explicit", &inp, &p, &run_imba(&inp, &p, Path::Fused));
    }
}

#[test]
fn fused_imba_velocity_target_and_patches() {
    let g = ImageGeometry {
        batch: 2,
        channels: 3,
        height: 6,
        width: 4,
        patch: 2,
    };
    let inp = philox_inputs(g, true, 3);
    for p in [
        ImbaParams::default(),
        ImbaParams {
            granularity: Granularity::Sample,
            ..Default::default()
        },
    ] {
        compare("flow", &inp, &p, &run_imba(&inp, &p, Path::Fused));
    }
    // Runs of adjacent tokens per invocation (T = 4/gcd(p, 4) where the token row allows),
    // and the staging of ∂L/∂ε_c in memory when T·K > 64.
    for (g, why) in [
        (geo(3, 3, 9, 6, 3), "p=3, T=1 (token row 2)"),
        (geo(3, 2, 3, 8, 1), "p=1, T=4"),
        (geo(2, 2, 6, 12, 3), "p=3, T=4, T·K=72 staged in memory"),
        (geo(2, 3, 10, 10, 5), "p=5, T=1, K=75 staged in memory"),
        (geo(3, 3, 4, 6, 2), "p=2, T=1 (token row 3)"),
        (geo(16, 4, 32, 32, 2), "p=2, T=2, DiT-S/2-like"),
    ] {
        let inp = philox_inputs(g, false, 4);
        for p in [
            ImbaParams::default(),
            ImbaParams {
                normalize: Normalize::BatchMean,
                ..Default::default()
            },
        ] {
            compare(why, &inp, &p, &run_imba(&inp, &p, Path::Fused));
        }
    }
}

/// Which fused kernel a default launch of these inputs uses.
fn fused_path(inp: &Inputs) -> FusedPath {
    let g = gpu();
    let dev = &g.device;
    let k = LossKernels::new(dev).unwrap();
    let ws = k.workspace(dev, inp.shape).unwrap();
    let buf = g.zeros("unused", 16);
    k.fused_path(inp.shape, &inp.target(&buf, &buf), &ws)
}

#[test]
fn vector_path_matches_reference_and_portable_path() {
    let vec4 = |run| FusedPath::Vec4 { run };
    // (geometry, velocity target, expected kernel, why)
    let cases = [
        (
            geo(3, 4, 6, 8, 2),
            false,
            vec4(2),
            "p=2, C=4: 8 slots in registers",
        ),
        (
            geo(3, 4, 6, 8, 2),
            true,
            vec4(2),
            "p=2, C=4, velocity target",
        ),
        (
            geo(2, 8, 3, 4, 1),
            false,
            vec4(4),
            "p=1, C=8: runs of 4 tokens",
        ),
        (
            geo(2, 4, 8, 8, 4),
            false,
            vec4(1),
            "p=4, C=4: K=64, 16 slots",
        ),
        (
            geo(2, 4, 6, 12, 3),
            false,
            vec4(4),
            "p=3: 36 slots, parked in memory",
        ),
        (
            geo(1, 4, 16, 16, 8),
            false,
            vec4(1),
            "p=8: K=256, parked in memory",
        ),
        (
            geo(5, 12, 2, 6, 2),
            false,
            FusedPath::Portable,
            "p=2, odd token row: portable",
        ),
    ];
    for (g, flow, expect, why) in cases {
        let inp = philox_inputs(g, flow, 9);
        assert_eq!(fused_path(&inp), expect, "{why}");
        let params = if why.starts_with("p=2, C=4:") {
            all_variants()
        } else {
            vec![
                ImbaParams::default(),
                ImbaParams {
                    form: DForm::PowOfRms,
                    granularity: Granularity::Sample,
                    normalize: Normalize::BatchMean,
                    ..Default::default()
                },
            ]
        };
        for p in params {
            compare(why, &inp, &p, &run_imba(&inp, &p, Path::Fused));
            compare(why, &inp, &p, &run_imba(&inp, &p, Path::Portable));
        }
    }
    // Explicit targets: any K that is a multiple of 4, one token per invocation (K = 68:
    // 17 slots, parked in memory).
    for k in [4, 12, 64, 68] {
        let inp = explicit_inputs(TokenShape::new(3, 7, k), 10);
        assert_eq!(fused_path(&inp), vec4(1), "explicit K={k}");
        for p in [ImbaParams::default(), ImbaParams::dual_baseline()] {
            compare("explicit", &inp, &p, &run_imba(&inp, &p, Path::Fused));
        }
    }
    // Shapes the vector kernel does not take: C not a multiple of 4, K not a multiple of 4.
    let inp = philox_inputs(geo(2, 3, 8, 8, 2), false, 11);
    assert_eq!(fused_path(&inp), FusedPath::Portable);
    let inp = explicit_inputs(TokenShape::new(2, 3, 6), 12);
    assert_eq!(fused_path(&inp), FusedPath::Portable);
}

#[test]
fn fused_imba_large() {
    // (B, N, K) = (64, 64, 48): 32×32×3 images, patch 4.
    let g = ImageGeometry {
        batch: 64,
        channels: 3,
        height: 32,
        width: 32,
        patch: 4,
    };
    let inp = philox_inputs(g, false, 5);
    compare(
        "large",
        &inp,
        &ImbaParams::default(),
        &run_imba(&inp, &ImbaParams::default(), Path::Fused),
    );
    let p = ImbaParams {
        normalize: Normalize::BatchMean,
        granularity: Granularity::Sample,
        ..Default::default()
    };
    compare("large", &inp, &p, &run_imba(&inp, &p, Path::Fused));
}

/// More tokens than 65535 workgroups of 64 hold: the launch takes a 2-D grid.
#[test]
fn fused_imba_two_dimensional_grid() {
    let g = gpu();
    let max = g.device.limits().max_compute_workgroups_per_dimension;
    let inp = explicit_inputs(TokenShape::new(1, max * 64 + 1000, 1), 6);
    compare(
        "2-D grid",
        &inp,
        &ImbaParams::default(),
        &run_imba(&inp, &ImbaParams::default(), Path::Fused),
    );
}

#[cfg(feature = "workflow")]
#[test]
fn unfused_chain_matches_reference() {
    let g = ImageGeometry {
        batch: 3,
        channels: 5,
        height: 7,
        width: 1,
        patch: 1,
    };
    let philox = philox_inputs(g, false, 7);
    let explicit = explicit_inputs(TokenShape::new(3, 7, 5), 8);
    for form in [DForm::MeanAbsPow, DForm::PowOfRms, DForm::PowOfMse] {
        for gamma in [0.8, 0.0] {
            let p = ImbaParams {
                form,
                gamma,
                ..Default::default()
            };
            compare(
                "unfused philox",
                &philox,
                &p,
                &run_imba(&philox, &p, Path::Unfused),
            );
            compare(
                "unfused explicit",
                &explicit,
                &p,
                &run_imba(&explicit, &p, Path::Unfused),
            );
        }
    }
    let g = ImageGeometry {
        batch: 16,
        channels: 4,
        height: 16,
        width: 16,
        patch: 2,
    };
    let inp = philox_inputs(g, false, 9);
    compare(
        "unfused large",
        &inp,
        &ImbaParams::default(),
        &run_imba(&inp, &ImbaParams::default(), Path::Unfused),
    );
}

#[test]
fn same_inputs_give_same_bits() {
    let g = ImageGeometry {
        batch: 8,
        channels: 4,
        height: 8,
        width: 8,
        patch: 2,
    };
    let inp = philox_inputs(g, false, 10);
    let p = ImbaParams::default();
    let a = run_imba(&inp, &p, Path::Fused);
    let b = run_imba(&inp, &p, Path::Fused);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a.scalars), bits(&b.scalars));
    assert_eq!(bits(&a.grad_cond), bits(&b.grad_cond));
    assert_eq!(bits(&a.grad_uncond), bits(&b.grad_uncond));
}

fn run_mse(inp: &Inputs) -> (Vec<f32>, Vec<f32>) {
    let g = gpu();
    let dev = &g.device;
    let s = inp.shape;
    let k = LossKernels::new(dev).unwrap();
    let ws = k.workspace(dev, s).unwrap();
    let pred = g.upload("pred", &inp.pred_cond);
    let tb = g.upload("target", &inp.target);
    let grad = g.poisoned("grad", s.elements() as usize);
    let scalars = g.poisoned("scalars", 4);
    let target = inp.target(&tb, &tb);
    let mut enc = g.encoder();
    k.record_mse(
        dev,
        &mut enc,
        &MseLossArgs {
            shape: s,
            pred: (&pred).into(),
            target,
            grad: (&grad).into(),
            scalars: (&scalars).into(),
            workspace: &ws,
        },
    )
    .unwrap();
    g.submit_and_wait(enc).unwrap();
    (
        g.read(&scalars, 4).unwrap(),
        g.read(&grad, s.elements() as usize).unwrap(),
    )
}

#[test]
fn baseline_mse_matches_reference() {
    let g = ImageGeometry {
        batch: 3,
        channels: 5,
        height: 7,
        width: 1,
        patch: 1,
    };
    for inp in [
        philox_inputs(g, false, 11),
        explicit_inputs(TokenShape::new(5, 3, 7), 12),
    ] {
        let (scalars, grad) = run_mse(&inp);
        let (loss, want) = rl::mse(&rl::widen(&inp.pred_cond), &rl::widen(&inp.target));
        assert_scalar("mse L", scalars[0], loss, 1e-5);
        assert_eq!(&scalars[1..], &[scalars[0], 0.0, 1.0]);
        let n = inp.shape.elements() as f32;
        let g: Vec<f32> = grad.iter().map(|x| x * n).collect();
        let w: Vec<f64> = want.iter().map(|x| x * n as f64).collect();
        assert_close("mse grad·BNK", &g, &w, 1e-5, 1e-5);
    }
}

/// The reference gradients equal central finite differences of the reference loss in f64,
/// with D held fixed (the stop-gradient), for every variant.
#[test]
fn reference_gradients_match_finite_differences() {
    let shape = TokenShape::new(2, 3, 4);
    let mut r = Rand::new(13);
    let n = shape.elements() as usize;
    let pc: Vec<f64> = r.vec(n, -1.0, 1.0).iter().map(|&x| x as f64).collect();
    let pu: Vec<f64> = r.vec(n, -1.0, 1.0).iter().map(|&x| x as f64).collect();
    let t: Vec<f64> = r.vec(n, -1.0, 1.0).iter().map(|&x| x as f64).collect();
    let mut params = all_variants();
    params.push(ImbaParams::dual_baseline());
    params.push(ImbaParams {
        lambda: 0.3,
        gamma: 1.7,
        ..Default::default()
    });
    let h = 1e-6;
    for p in params {
        let out = rl::imba(shape, &pc, &pu, &t, &p);
        for i in 0..n {
            let mut plus = pc.clone();
            let mut minus = pc.clone();
            plus[i] += h;
            minus[i] -= h;
            let fd = (rl::imba_value(shape, &plus, &pu, &pu, &t, &p)
                - rl::imba_value(shape, &minus, &pu, &pu, &t, &p))
                / (2.0 * h);
            assert!(
                (fd - out.grad_cond[i]).abs() <= 1e-8 + 1e-6 * fd.abs(),
                "{p:?} ∂/∂ε_c[{i}]: fd {fd} analytic {}",
                out.grad_cond[i]
            );
            let mut plus = pu.clone();
            let mut minus = pu.clone();
            plus[i] += h;
            minus[i] -= h;
            let fd = (rl::imba_value(shape, &pc, &plus, &pu, &t, &p)
                - rl::imba_value(shape, &pc, &minus, &pu, &t, &p))
                / (2.0 * h);
            assert!(
                (fd - out.grad_uncond[i]).abs() <= 1e-8 + 1e-6 * fd.abs(),
                "{p:?} ∂/∂ε_u[{i}]: fd {fd} analytic {}",
                out.grad_uncond[i]
            );
        }
    }
    // MSE.
    let (_, grad) = rl::mse(&pc, &t);
    for i in 0..n {
        let mut plus = pc.clone();
        let mut minus = pc.clone();
        plus[i] += h;
        minus[i] -= h;
        let fd = (rl::mse(&plus, &t).0 - rl::mse(&minus, &t).0) / (2.0 * h);
        assert!((fd - grad[i]).abs() <= 1e-8 + 1e-6 * fd.abs(), "mse[{i}]");
    }
}

/// The GPU gradients directly against finite differences of the f64 reference loss.
#[test]
fn gpu_gradients_match_finite_differences() {
    // K = 5 runs the portable kernel, K = 8 the vector kernel.
    for (k, path) in [(5, FusedPath::Portable), (8, FusedPath::Vec4 { run: 1 })] {
        let inp = explicit_inputs(TokenShape::new(2, 3, k), 14);
        assert_eq!(fused_path(&inp), path);
        gpu_gradients_vs_differences(&inp);
    }
}

fn gpu_gradients_vs_differences(inp: &Inputs) {
    let p = ImbaParams::default();
    let out = run_imba(inp, &p, Path::Fused);
    let (pc, pu, t) = (
        rl::widen(&inp.pred_cond),
        rl::widen(&inp.pred_uncond),
        rl::widen(&inp.target),
    );
    let h = 1e-6;
    for i in 0..pc.len() {
        let f = |pc: &[f64], pu: &[f64]| {
            rl::imba_value(inp.shape, pc, pu, &rl::widen(&inp.pred_uncond), &t, &p)
        };
        let (mut a, mut b) = (pc.clone(), pc.clone());
        a[i] += h;
        b[i] -= h;
        let fd = (f(&a, &pu) - f(&b, &pu)) / (2.0 * h);
        assert!(
            (out.grad_cond[i] as f64 - fd).abs() <= 1e-6 * fd.abs() + 1e-9,
            "ε_c[{i}] gpu {} fd {fd}",
            out.grad_cond[i]
        );
        let (mut a, mut b) = (pu.clone(), pu.clone());
        a[i] += h;
        b[i] -= h;
        let fd = (f(&pc, &a) - f(&pc, &b)) / (2.0 * h);
        assert!(
            (out.grad_uncond[i] as f64 - fd).abs() <= 1e-6 * fd.abs() + 1e-9,
            "ε_u[{i}] gpu {} fd {fd}",
            out.grad_uncond[i]
        );
    }
}

/// Bad input: each an error naming the problem, never a panic.
#[test]
fn bad_loss_inputs_are_errors() {
    let g = gpu();
    let dev = &g.device;
    let k = LossKernels::new(dev).unwrap();
    let s = TokenShape::new(2, 4, 3);
    let ws = k.workspace(dev, s).unwrap();
    let big = g.zeros("big", 1024);
    let small = g.zeros("small", 40);
    let no_storage = dev.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 1024,
        usage: wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let args = |shape, pc, target, ws| ImbaLossArgs {
        shape,
        pred_cond: pc,
        pred_uncond: (&big).into(),
        target,
        weights: (&big).into(),
        grad_cond: (&big).into(),
        grad_uncond: (&big).into(),
        scalars: (&big).into(),
        workspace: ws,
    };
    let ex = Target::Explicit((&big).into());
    let d = ImbaParams::default();
    let mut enc = g.encoder();
    let mut expect = |a: ImbaLossArgs, p: ImbaParams, needle: &str| {
        assert_refused(|| k.record_imba(dev, &mut enc, &a, &p), needle)
    };
    expect(args(s, (&small).into(), ex, &ws), d, "`pred_cond`");
    // An offset near the top of u64 is refused (checked sums: no wrap into a small end).
    let far = Region::new(&big, u64::MAX - 255);
    expect(args(s, far, ex, &ws), d, "`pred_cond`");
    expect(args(s, (&no_storage).into(), ex, &ws), d, "STORAGE");
    expect(
        args(s, (&big).into(), Target::Explicit((&small).into()), &ws),
        d,
        "`target`",
    );
    expect(
        args(TokenShape::new(2, 0, 3), (&big).into(), ex, &ws),
        d,
        "zero size",
    );
    expect(
        args(TokenShape::new(3, 4, 3), (&big).into(), ex, &ws),
        d,
        "workspace",
    );
    expect(
        args(s, (&big).into(), ex, &ws),
        ImbaParams { gamma: -0.5, ..d },
        "γ",
    );
    expect(
        args(s, (&big).into(), ex, &ws),
        ImbaParams {
            gamma: f32::NAN,
            ..d
        },
        "γ",
    );
    expect(
        args(s, (&big).into(), ex, &ws),
        ImbaParams { lambda: 1.5, ..d },
        "λ",
    );
    expect(
        args(s, (&big).into(), ex, &ws),
        ImbaParams {
            lambda: f32::NAN,
            ..d
        },
        "λ",
    );
    let geo = ImageGeometry {
        batch: 2,
        channels: 3,
        height: 4,
        width: 2,
        patch: 2,
    }; // N=2 ≠ 4
    let t = Target::Philox {
        step_values: None,
        first_sample: 0,
        seed: 0,
        step: 0,
        geometry: geo,
        kind: TargetKind::Epsilon,
        x0: None,
    };
    expect(args(s, (&big).into(), t, &ws), d, "geometry");
    let geo = ImageGeometry {
        batch: 2,
        channels: 3,
        height: 4,
        width: 2,
        patch: 1,
    }; // (2, 8, 3)
    let ws8 = k.workspace(dev, geo.token_shape()).unwrap();
    let t = Target::Philox {
        step_values: None,
        first_sample: 0,
        seed: 0,
        step: 0,
        geometry: geo,
        kind: TargetKind::Velocity,
        x0: None,
    };
    expect(args(geo.token_shape(), (&big).into(), t, &ws8), d, "x0");

    // Larger than this device lets one binding be.
    let max = dev.limits().max_storage_buffer_binding_size;
    if max < (1 << 30) {
        let k_dim = (max / 4 + 16) as u32;
        let huge_shape = TokenShape::new(1, 1, k_dim);
        let huge = g.zeros("huge", k_dim as u64 * 4);
        let ws_h = k.workspace(dev, huge_shape).unwrap();
        let a = ImbaLossArgs {
            shape: huge_shape,
            pred_cond: (&huge).into(),
            pred_uncond: (&huge).into(),
            target: Target::Explicit((&huge).into()),
            weights: (&huge).into(),
            grad_cond: (&huge).into(),
            grad_uncond: (&huge).into(),
            scalars: (&huge).into(),
            workspace: &ws_h,
        };
        assert_refused(|| k.record_imba(dev, &mut enc, &a, &d), "device allows");
    } else {
        crate::common::skip(
            "loss binding-limit case",
            &format!("this device allows {max}-byte bindings"),
        );
    }
}

/// Runs `record_weighted` with the given weights; returns the outputs and the weights buffer
/// as the launch left it.
fn run_weighted(inp: &Inputs, lambda: f32, w: &[f32], vector: bool) -> Outputs {
    let g = gpu();
    let dev = &g.device;
    let s = inp.shape;
    let nk = s.elements() as usize;
    let pc = g.upload("pc", &inp.pred_cond);
    let pu = g.upload("pu", &inp.pred_uncond);
    let tb = g.upload("target", &inp.target);
    let x0 = g.upload("x0", &inp.x0);
    let weights = g.upload("weights", w);
    let gc = g.poisoned("gc", nk);
    let gu = g.poisoned("gu", nk);
    let scalars = g.poisoned("scalars", 4);
    let k = LossKernels::new(dev).unwrap().with_vector_path(vector);
    let ws = k.workspace(dev, s).unwrap();
    let args = ImbaLossArgs {
        shape: s,
        pred_cond: (&pc).into(),
        pred_uncond: (&pu).into(),
        target: inp.target(&tb, &x0),
        weights: (&weights).into(),
        grad_cond: (&gc).into(),
        grad_uncond: (&gu).into(),
        scalars: (&scalars).into(),
        workspace: &ws,
    };
    let mut enc = g.encoder();
    k.record_weighted(dev, &mut enc, &args, lambda).unwrap();
    g.submit_and_wait(enc).unwrap();
    Outputs {
        scalars: g.read(&scalars, 4).unwrap(),
        weights: g.read(&weights, s.rows() as usize).unwrap(),
        grad_cond: g.read(&gc, nk).unwrap(),
        grad_uncond: g.read(&gu, nk).unwrap(),
    }
}

/// Caller-given weights: the loss, scalars and gradients equal the f64 reference with those
/// weights in place of D, on both fused paths and both targets, at odd sizes; the weights are
/// read and left as given (zeros and large values included).
#[test]
fn given_weights_match_reference() {
    let cases = [
        explicit_inputs(TokenShape::new(3, 5, 7), 31),
        explicit_inputs(TokenShape::new(2, 3, 8), 32),
        philox_inputs(geo(3, 4, 6, 6, 2), false, 33),
        philox_inputs(geo(2, 4, 4, 4, 2), true, 34),
    ];
    for (c, inp) in cases.iter().enumerate() {
        let mut r = Rand::new(40 + c as u64);
        let mut w = r.vec(inp.shape.rows() as usize, 0.0, 3.0);
        w[0] = 0.0;
        w[1] = 57.0;
        for lambda in [0.9, 0.35] {
            let want = rl::weighted(
                inp.shape,
                &rl::widen(&inp.pred_cond),
                &rl::widen(&inp.pred_uncond),
                &rl::widen(&inp.target),
                lambda,
                &rl::widen(&w),
            );
            for vector in [true, false] {
                let out = run_weighted(inp, lambda, &w, vector);
                let what = format!("case {c} λ={lambda} vector path allowed {vector}");
                assert_eq!(out.weights, w, "{what}: the weights changed");
                compare_outputs(&what, inp.shape, &want, &out);
            }
        }
    }
}

/// The given-weights gradients against central finite differences of the f64 reference loss.
#[test]
fn given_weights_gradients_match_finite_differences() {
    let inp = explicit_inputs(TokenShape::new(2, 3, 5), 35);
    let w = Rand::new(36).vec(inp.shape.rows() as usize, 0.1, 2.0);
    let lambda = 0.7;
    let out = run_weighted(&inp, lambda, &w, true);
    let (pc, pu, t, wd) = (
        rl::widen(&inp.pred_cond),
        rl::widen(&inp.pred_uncond),
        rl::widen(&inp.target),
        rl::widen(&w),
    );
    let loss = |pc: &[f64], pu: &[f64]| rl::weighted(inp.shape, pc, pu, &t, lambda, &wd).loss;
    let h = 1e-6;
    for i in 0..pc.len() {
        let (mut a, mut b) = (pc.clone(), pc.clone());
        a[i] += h;
        b[i] -= h;
        let fd = (loss(&a, &pu) - loss(&b, &pu)) / (2.0 * h);
        let gpu = out.grad_cond[i] as f64;
        assert!(
            (gpu - fd).abs() <= 1e-6 * fd.abs() + 1e-9,
            "ε_c[{i}] gpu {gpu} fd {fd}"
        );
        let (mut a, mut b) = (pu.clone(), pu.clone());
        a[i] += h;
        b[i] -= h;
        let fd = (loss(&pc, &a) - loss(&pc, &b)) / (2.0 * h);
        let gpu = out.grad_uncond[i] as f64;
        assert!(
            (gpu - fd).abs() <= 1e-6 * fd.abs() + 1e-9,
            "ε_u[{i}] gpu {gpu} fd {fd}"
        );
    }
}

/// A given-weights launch refuses λ outside [0, 1] and a short weights buffer, recording
/// nothing.
#[test]
fn given_weights_bad_input_is_refused() {
    let g = gpu();
    let dev = &g.device;
    let k = LossKernels::new(dev).unwrap();
    let s = TokenShape::new(2, 4, 3);
    let ws = k.workspace(dev, s).unwrap();
    let floats = |label: &str, n: u64| g.zeros(label, 4 * n);
    let n = s.elements();
    let (a, b, c, d, t) = (
        floats("a", n),
        floats("b", n),
        floats("c", n),
        floats("d", n),
        floats("t", n),
    );
    let (w, short, scalars) = (floats("w", s.rows()), floats("short", 3), floats("s", 4));
    let mut enc = g.encoder();
    for (weights, lambda, needle) in [(&w, 1.5, "[0, 1]"), (&short, 0.9, "`weights`")] {
        let args = ImbaLossArgs {
            shape: s,
            pred_cond: (&a).into(),
            pred_uncond: (&b).into(),
            target: Target::Explicit((&t).into()),
            weights: weights.into(),
            grad_cond: (&c).into(),
            grad_uncond: (&d).into(),
            scalars: (&scalars).into(),
            workspace: &ws,
        };
        assert_refused(|| k.record_weighted(dev, &mut enc, &args, lambda), needle);
    }
    // Nothing was recorded: the encoder finishes empty and submits cleanly.
    g.submit_and_wait(enc).unwrap();
}

/// The rule for non-finite inputs (docs/kernels.md): a NaN or infinity anywhere in an operand
/// makes L non-finite, and with it the part of the loss that reads the operand — L_c for the
/// conditional prediction, L_u for the unconditional one, both for the target — on every
/// path, so a caller that checks L (as the trainer does) never takes such a step as
/// finite. D, mean D and the gradients are left unspecified.
#[test]
fn a_non_finite_input_makes_the_loss_non_finite() {
    let clean = explicit_inputs(TokenShape::new(3, 5, 12), 41);
    for path in [Path::Fused, Path::Portable] {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let operands: [(&str, &[usize]); 3] = [
                ("pred_cond", &[0, 1]),
                ("pred_uncond", &[0, 2]),
                ("target", &[0, 1, 2]),
            ];
            for (operand, reads) in operands {
                let mut inp = explicit_inputs(clean.shape, 41);
                let at = 7 * clean.shape.token_dim as usize + 3;
                match operand {
                    "pred_cond" => inp.pred_cond[at] = bad,
                    "pred_uncond" => inp.pred_uncond[at] = bad,
                    _ => inp.target[at] = bad,
                }
                let out = run_imba(&inp, &ImbaParams::default(), path);
                let s = &out.scalars;
                let which = if path == Path::Fused {
                    "vector"
                } else {
                    "portable"
                };
                for &i in reads {
                    let name = ["L", "L_c", "L_u"][i];
                    assert!(
                        !s[i].is_finite(),
                        "{which}: {bad} in {operand}: {name} = {}",
                        s[i]
                    );
                }
            }
        }
    }
}
