//! Shards of a batch: the noise and the loss's Philox target of samples f..f+b, launched with
//! `first_sample = f`, equal those rows of the whole batch's launch (what data-parallel
//! training relies on), on both loss paths, for ε and velocity targets, at odd sizes.

use crate::common;
use common::{assert_close, assert_refused, gpu, Rand};
use imba::kernels::*;
use imba::reference::noise as rn;

const SEED: u32 = 0xD15C;
const STEP: u32 = 23;

fn geo(batch: u32, channels: u32, height: u32, width: u32, patch: u32) -> ImageGeometry {
    ImageGeometry {
        batch,
        channels,
        height,
        width,
        patch,
    }
}

/// x_t tokens of a batch (geometry `g`) whose first sample is `first` of the whole batch.
fn noise(g: ImageGeometry, first: u32, t: &[f32], x0: &[f32]) -> imba::Result<Vec<f32>> {
    let gpu = gpu();
    let k = NoiseKernels::new(&gpu.device)?;
    let x0b = gpu.upload("x0", x0);
    let tb = gpu.upload("t", t);
    let out = gpu.poisoned("xt", x0.len());
    let mut enc = gpu.encoder();
    let args = NoiseArgs {
        step_values: None,
        geometry: g,
        seed: SEED,
        step: STEP,
        schedule: Schedule::Flow,
        x0: (&x0b).into(),
        timesteps: (&tb).into(),
        out_tokens: (&out).into(),
        first_sample: first,
    };
    k.record_noise_to_tokens(&gpu.device, &mut enc, &args)?;
    gpu.submit_and_wait(enc)?;
    gpu.read(&out, x0.len())
}

#[test]
fn a_shards_noise_is_its_rows_of_the_whole_batch() {
    // C·H·W = 3·6·10 = 180: every sample starts on a quad.
    let whole = geo(7, 3, 6, 10, 2);
    let mut r = Rand::new(5);
    let x0 = r.vec(whole.elements() as usize, -1.0, 1.0);
    let t = r.vec(7, 0.0, 1.0);
    let all = noise(whole, 0, &t, &x0).unwrap();
    // The whole launch against the CPU reference, so that the shards below are checked
    // against an independent implementation too.
    let coef: Vec<[f32; 2]> = t.iter().map(|&t| [1.0 - t, t]).collect();
    let want = rn::noise_to_tokens(&whole, SEED, STEP, &x0, &coef);
    let want: Vec<f64> = want.iter().map(|&v| v as f64).collect();
    assert_close("whole batch x_t", &all, &want, 1e-6, 1e-6);
    let image = 180;
    for (first, b) in [(0u32, 3u32), (3, 4), (2, 1), (6, 1)] {
        let (f, n) = (first as usize, b as usize);
        let part = geo(b, 3, 6, 10, 2);
        let got = noise(part, first, &t[f..f + n], &x0[f * image..(f + n) * image]).unwrap();
        assert_eq!(
            got,
            all[f * image..(f + n) * image],
            "shard {first}..{} differs from the whole batch's rows",
            first + b
        );
    }
}

#[test]
fn a_shard_must_start_on_a_philox_quad() {
    // C·H·W = 9: sample 1 starts inside a quad.
    let g = geo(2, 1, 3, 3, 1);
    let x0 = vec![0.0; 18];
    let t = vec![0.5; 2];
    assert_refused(|| noise(g, 1, &t, &x0), "Philox quad");
    assert!(noise(g, 4, &t, &x0).is_ok(), "4·9 values start on a quad");
}

/// IMBA's D and gradients for `g`'s predictions and the Philox target of samples first.. .
fn imba(
    g: ImageGeometry,
    first: u32,
    vector: bool,
    (pc, pu, x0): (&[f32], &[f32], Option<&[f32]>),
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let gpu = gpu();
    let dev = &gpu.device;
    let s = g.token_shape();
    let (nk, bn) = (s.elements() as usize, s.rows() as usize);
    let k = LossKernels::new(dev).unwrap().with_vector_path(vector);
    let ws = k.workspace(dev, s).unwrap();
    let (pcb, pub_) = (gpu.upload("pc", pc), gpu.upload("pu", pu));
    let x0b = gpu.upload("x0", x0.unwrap_or(&[0.0]));
    let (w, gc, gu) = (
        gpu.poisoned("w", bn),
        gpu.poisoned("gc", nk),
        gpu.poisoned("gu", nk),
    );
    let scalars = gpu.poisoned("scalars", 4);
    let target = Target::Philox {
        step_values: None,
        seed: SEED,
        step: STEP,
        geometry: g,
        first_sample: first,
        kind: match x0 {
            Some(_) => TargetKind::Velocity,
            None => TargetKind::Epsilon,
        },
        x0: x0.map(|_| (&x0b).into()),
    };
    let args = ImbaLossArgs {
        shape: s,
        pred_cond: (&pcb).into(),
        pred_uncond: (&pub_).into(),
        target,
        weights: (&w).into(),
        grad_cond: (&gc).into(),
        grad_uncond: (&gu).into(),
        scalars: (&scalars).into(),
        workspace: &ws,
    };
    let mut enc = gpu.encoder();
    k.record_imba(dev, &mut enc, &args, &ImbaParams::default())
        .unwrap();
    gpu.submit_and_wait(enc).unwrap();
    (
        gpu.read(&w, bn).unwrap(),
        gpu.read(&gc, nk).unwrap(),
        gpu.read(&gu, nk).unwrap(),
    )
}

/// Half the batch against the whole: D is the same per token, and the gradients (means
/// over half as many values) are exactly twice the whole batch's rows.
fn check_loss_shard(whole: ImageGeometry, vector: bool, velocity: bool) {
    let half = geo(
        whole.batch / 2,
        whole.channels,
        whole.height,
        whole.width,
        whole.patch,
    );
    let s = whole.token_shape();
    let mut r = Rand::new(11);
    let x0 = r.vec(whole.elements() as usize, -1.0, 1.0);
    let target = rn::target_tokens(&whole, SEED, STEP, velocity.then_some(&x0[..]));
    let pc: Vec<f32> = target.iter().map(|v| v + r.uniform(-1.0, 1.0)).collect();
    let pu: Vec<f32> = target.iter().map(|v| v + r.uniform(-0.5, 0.5)).collect();
    let x0_all = velocity.then_some(&x0[..]);
    let (w, gc, gu) = imba(whole, 0, vector, (&pc, &pu, x0_all));
    let (rows, values) = (
        half.token_shape().rows() as usize,
        half.token_shape().elements() as usize,
    );
    let image = (whole.elements() / whole.batch as u64) as usize;
    let first = half.batch;
    let x0_half = velocity.then_some(&x0[first as usize * image..]);
    let (hw, hgc, hgu) = imba(half, first, vector, (&pc[values..], &pu[values..], x0_half));
    let what = format!("{whole:?} vector={vector} velocity={velocity}");
    assert_eq!(s.rows() as usize, 2 * rows);
    let widen = |v: &[f32], k: f64| v.iter().map(|&x| x as f64 * k).collect::<Vec<_>>();
    assert_close(
        &format!("D, {what}"),
        &hw,
        &widen(&w[rows..], 1.0),
        0.0,
        1e-6,
    );
    assert_close(
        &format!("∂ε_c, {what}"),
        &hgc,
        &widen(&gc[values..], 2.0),
        0.0,
        1e-6,
    );
    assert_close(
        &format!("∂ε_u, {what}"),
        &hgu,
        &widen(&gu[values..], 2.0),
        0.0,
        1e-6,
    );
}

#[test]
fn a_shards_loss_target_is_its_rows_of_the_whole_batch() {
    // Four channels and patch 2: the vector path; then odd channels (the portable path only).
    for velocity in [false, true] {
        check_loss_shard(geo(6, 4, 6, 8, 2), true, velocity);
        check_loss_shard(geo(6, 4, 6, 8, 2), false, velocity);
        check_loss_shard(geo(4, 3, 5, 4, 1), false, velocity);
    }
}
