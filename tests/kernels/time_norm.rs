//! IMBA with time-bucket normalised D and the per-token MSE pass against the f64 CPU
//! reference: several consecutive launches carrying the running state, odd sizes, poisoned
//! outputs, every D granularity, ε and velocity targets; bad input.

use super::loss::{explicit_inputs, geo, philox_inputs, Inputs};
use crate::common::{assert_close, assert_refused, assert_scalar, gpu};
use imba::kernels::*;
use imba::reference::loss as rl;

/// Runs `launches` time-normalised launches of the same predictions with the given buckets,
/// carrying the state on the GPU and in f64, and compares every output and the state after
/// each launch.
fn check_against_reference(what: &str, inp: &Inputs, p: &ImbaParams, rounds: &[Vec<u32>]) {
    let g = gpu();
    let dev = &g.device;
    let s = inp.shape;
    let (nk, bn) = (s.elements() as usize, s.rows() as usize);
    let (buckets, decay) = (6u32, 0.9f32);
    let k = LossKernels::new(dev).unwrap();
    let ws = k.workspace(dev, s).unwrap();
    let pc = g.upload("pc", &inp.pred_cond);
    let pu = g.upload("pu", &inp.pred_uncond);
    let tb = g.upload("target", &inp.target);
    let x0 = g.upload("x0", &inp.x0);
    let state = g.zeros("state", 8 * buckets as u64);
    let mut ref_state = vec![0.0f64; 2 * buckets as usize];
    for (round, sample_bucket) in rounds.iter().enumerate() {
        let what = format!("{what} launch {round}");
        let weights = g.poisoned("weights", bn);
        let gc = g.poisoned("gc", nk);
        let gu = g.poisoned("gu", nk);
        let scalars = g.poisoned("scalars", 4);
        let sb = g.upload("sample_bucket", sample_bucket);
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
        let time = TimeBuckets {
            buckets,
            decay,
            sample_bucket: (&sb).into(),
            state: (&state).into(),
        };
        let mut enc = g.encoder();
        k.record_imba_time_normalized(dev, &mut enc, &args, p, &time, None)
            .unwrap();
        g.submit_and_wait(enc).unwrap();
        let time = rl::TimeState {
            sample_bucket,
            state: &mut ref_state,
            decay: decay as f64,
        };
        let want = rl::imba_time_normalized(
            s,
            &rl::widen(&inp.pred_cond),
            &rl::widen(&inp.pred_uncond),
            &rl::widen(&inp.target),
            p,
            time,
        );
        let got_state: Vec<f32> = g.read(&state, 2 * buckets as usize).unwrap();
        assert_close(
            &format!("{what}: state"),
            &got_state,
            &ref_state,
            1e-6,
            1e-5,
        );
        let sc: Vec<f32> = g.read(&scalars, 4).unwrap();
        assert_scalar(&format!("{what}: L"), sc[0], want.loss, 1e-5);
        assert_scalar(&format!("{what}: mean D"), sc[3], want.mean_d, 1e-5);
        let d: Vec<f32> = g.read(&weights, bn).unwrap();
        assert_close(&format!("{what}: D"), &d, &want.weights, 1e-5, 1e-5);
        let n = nk as f32;
        let scaled = |b: &wgpu::Buffer| -> Vec<f32> {
            let v: Vec<f32> = g.read(b, nk).unwrap();
            v.iter().map(|x| x * n).collect()
        };
        let scaled_ref = |v: &[f64]| v.iter().map(|x| x * n as f64).collect::<Vec<f64>>();
        assert_close(
            &format!("{what}: ∂L/∂ε_c·BNK"),
            &scaled(&gc),
            &scaled_ref(&want.grad_cond),
            1e-5,
            1e-5,
        );
        assert_close(
            &format!("{what}: ∂L/∂ε_u·BNK"),
            &scaled(&gu),
            &scaled_ref(&want.grad_uncond),
            1e-5,
            1e-5,
        );
    }
}

/// Three launches of B = 5: buckets repeat within a launch, some stay empty, one value is
/// past the last bucket (counted as the last), and the second launch revisits buckets the
/// first filled while the third reaches new ones.
fn rounds() -> Vec<Vec<u32>> {
    vec![
        vec![0, 3, 3, 5, 9],
        vec![3, 0, 1, 1, 3],
        vec![2, 2, 4, 0, 5],
    ]
}

#[test]
fn time_normalized_imba_matches_reference_over_several_launches() {
    let inp = philox_inputs(geo(5, 3, 7, 3, 1), false, 11);
    for granularity in [Granularity::Token, Granularity::Sample] {
        for form in [DForm::MeanAbsPow, DForm::PowOfMse] {
            let p = ImbaParams {
                normalize: Normalize::TBucket,
                granularity,
                form,
                ..ImbaParams::default()
            };
            check_against_reference(&format!("{granularity:?} {form:?}"), &inp, &p, &rounds());
        }
    }
}

#[test]
fn time_normalized_imba_velocity_vector_path_and_explicit_target() {
    // C = 4 and patch 2: the vector fused pass reads the normalised D from the weight buffer.
    let flow = philox_inputs(geo(5, 4, 6, 6, 2), true, 12);
    let p = ImbaParams {
        normalize: Normalize::TBucket,
        ..ImbaParams::default()
    };
    check_against_reference("velocity", &flow, &p, &rounds());
    // An explicit target with one exact token (D = 0 there) and γ = 0 (D ≡ 1 → 1 after
    // normalisation: each bucket's mean is 1).
    let ex = explicit_inputs(TokenShape::new(5, 7, 5), 13);
    check_against_reference("explicit", &ex, &p, &rounds());
    let dual = ImbaParams { gamma: 0.0, ..p };
    check_against_reference("γ = 0", &ex, &dual, &rounds());
}

#[test]
fn token_mse_matches_reference() {
    let g = gpu();
    let dev = &g.device;
    let k = LossKernels::new(dev).unwrap();
    for inp in [
        philox_inputs(geo(3, 3, 5, 5, 1), false, 21),
        philox_inputs(geo(2, 4, 6, 6, 3), true, 22),
        explicit_inputs(TokenShape::new(3, 7, 5), 23),
    ] {
        let s = inp.shape;
        let ws = k.workspace(dev, s).unwrap();
        let pc = g.upload("pc", &inp.pred_cond);
        let tb = g.upload("target", &inp.target);
        let x0 = g.upload("x0", &inp.x0);
        let out = g.poisoned("out", s.rows() as usize);
        let mut enc = g.encoder();
        let args = TokenMseArgs {
            shape: s,
            pred: (&pc).into(),
            target: inp.target(&tb, &x0),
            out: (&out).into(),
            workspace: &ws,
        };
        k.record_token_mse(dev, &mut enc, &args).unwrap();
        g.submit_and_wait(enc).unwrap();
        let got: Vec<f32> = g.read(&out, s.rows() as usize).unwrap();
        let want = rl::token_mse(s, &rl::widen(&inp.pred_cond), &rl::widen(&inp.target));
        assert_close(&format!("token mse {s:?}"), &got, &want, 1e-6, 1e-5);
    }
}

#[test]
fn time_bucket_of_a_fraction() {
    assert_eq!(time_bucket(0.0, 10), 0);
    assert_eq!(time_bucket(0.0999, 10), 0);
    assert_eq!(time_bucket(0.1, 10), 1);
    assert_eq!(time_bucket(0.999, 10), 9);
    assert_eq!(time_bucket(1.0, 10), 9);
    assert_eq!(time_bucket(-0.5, 10), 0);
    assert_eq!(time_bucket(999.0 / 1000.0, 1), 0);
}

/// Each misuse an error naming the problem.
#[test]
fn bad_time_normalisation_is_an_error() {
    let g = gpu();
    let dev = &g.device;
    let k = LossKernels::new(dev).unwrap();
    let s = TokenShape::new(2, 4, 3);
    let ws = k.workspace(dev, s).unwrap();
    let big = g.zeros("big", 1024);
    let small = g.zeros("small", 4);
    // Every operand a buffer of its own: outputs may not alias inputs.
    let b: Vec<_> = (0..6).map(|_| g.zeros("operand", 1024)).collect();
    let args = ImbaLossArgs {
        shape: s,
        pred_cond: (&b[0]).into(),
        pred_uncond: (&b[1]).into(),
        target: Target::Explicit((&b[1]).into()),
        weights: (&b[2]).into(),
        grad_cond: (&b[3]).into(),
        grad_uncond: (&b[4]).into(),
        scalars: (&b[5]).into(),
        workspace: &ws,
    };
    let tb = ImbaParams {
        normalize: Normalize::TBucket,
        ..ImbaParams::default()
    };
    let time = |buckets, decay, state| TimeBuckets {
        buckets,
        decay,
        sample_bucket: (&big).into(),
        state,
    };
    let mut enc = g.encoder();
    assert_refused(
        || k.record_imba(dev, &mut enc, &args, &tb),
        "record_imba_time_normalized",
    );
    let plain = ImbaParams::default();
    let t = time(4, 0.9, (&big).into());
    assert_refused(
        || k.record_imba_time_normalized(dev, &mut enc, &args, &plain, &t, None),
        "t-bucket",
    );
    for (t, needle) in [
        (time(0, 0.9, (&big).into()), "buckets"),
        (time(MAX_TIME_BUCKETS + 1, 0.9, (&big).into()), "buckets"),
        (time(4, 1.0, (&big).into()), "decay"),
        (time(4, f32::NAN, (&big).into()), "decay"),
        (time(4, 0.9, (&small).into()), "`state`"),
        // The running state over an operand of another pass: grad_cond's or pred_cond's.
        (time(4, 0.9, (&b[3]).into()), "`state`"),
        (time(4, 0.9, (&b[0]).into()), "`state`"),
        (
            TimeBuckets {
                sample_bucket: (&small).into(),
                ..time(4, 0.9, (&big).into())
            },
            "`sample_bucket`",
        ),
    ] {
        // A refused launch records nothing: no pass is left in the encoder to overwrite
        // `weights` when it is submitted.
        let before = dispatches_recorded();
        assert_refused(
            || k.record_imba_time_normalized(dev, &mut enc, &args, &tb, &t, None),
            needle,
        );
        assert_eq!(
            dispatches_recorded(),
            before,
            "{needle}: a refused launch recorded"
        );
    }
}

/// Adds up values over the threads of one test, in thread (rank) order: an in-process stand-in
/// for data-parallel processes.
struct ThreadSum {
    rank: usize,
    shared: std::sync::Arc<(std::sync::Barrier, std::sync::Mutex<Vec<Vec<f32>>>)>,
}

impl ShardSum for ThreadSum {
    fn sum(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        values: &wgpu::Buffer,
        count: usize,
    ) -> imba::Result<()> {
        let g = gpu();
        let recorded = std::mem::replace(encoder, g.encoder());
        g.submit_and_wait(recorded)?;
        let mine: Vec<f32> = g.read(values, count)?;
        let (barrier, all) = &*self.shared;
        all.lock().unwrap()[self.rank] = mine;
        barrier.wait();
        let mut total = vec![0.0f32; count];
        for part in all.lock().unwrap().iter() {
            for (t, v) in total.iter_mut().zip(part) {
                *t += v;
            }
        }
        barrier.wait();
        g.queue
            .write_buffer(values, 0, bytemuck::cast_slice(&total));
        Ok(())
    }
}

/// Two shards of a batch of 6, each on its own thread with its own state, summing the
/// per-bucket sums across: both states and every D follow the whole batch's reference.
#[test]
fn sharded_time_normalization_follows_the_whole_batch() {
    let inp = explicit_inputs(TokenShape::new(6, 5, 7), 21);
    let p = ImbaParams {
        normalize: Normalize::TBucket,
        ..ImbaParams::default()
    };
    let (buckets, decay) = (6u32, 0.9f32);
    let rounds = [vec![0, 3, 3, 5, 9, 1], vec![3, 0, 1, 1, 3, 3]];
    let mut ref_state = vec![0.0f64; 2 * buckets as usize];
    let wants: Vec<_> = rounds
        .iter()
        .map(|sb| {
            let time = rl::TimeState {
                sample_bucket: sb,
                state: &mut ref_state,
                decay: decay as f64,
            };
            rl::imba_time_normalized(
                inp.shape,
                &rl::widen(&inp.pred_cond),
                &rl::widen(&inp.pred_uncond),
                &rl::widen(&inp.target),
                &p,
                time,
            )
        })
        .collect();
    let shared = std::sync::Arc::new((
        std::sync::Barrier::new(2),
        std::sync::Mutex::new(vec![Vec::new(), Vec::new()]),
    ));
    let shard = TokenShape::new(3, 5, 7);
    let (values, rows) = (shard.elements() as usize, shard.rows() as usize);
    let results: Vec<(Vec<Vec<f32>>, Vec<f32>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|rank| {
                let shared = shared.clone();
                let (inp, rounds, p) = (&inp, &rounds, &p);
                scope.spawn(move || {
                    let g = gpu();
                    let dev = &g.device;
                    let k = LossKernels::new(dev).unwrap();
                    let ws = k.workspace(dev, shard).unwrap();
                    let part = |v: &[f32]| g.upload("part", &v[rank * values..(rank + 1) * values]);
                    let (pc, pu, tb) = (
                        part(&inp.pred_cond),
                        part(&inp.pred_uncond),
                        part(&inp.target),
                    );
                    let state = g.zeros("state", 8 * buckets as u64);
                    let mut across = ThreadSum { rank, shared };
                    let mut ds = Vec::new();
                    for sb in rounds {
                        let (weights, gc, gu, scalars) = (
                            g.poisoned("w", rows),
                            g.poisoned("gc", values),
                            g.poisoned("gu", values),
                            g.poisoned("s", 4),
                        );
                        let sb = g.upload("sb", &sb[rank * 3..rank * 3 + 3]);
                        let args = ImbaLossArgs {
                            shape: shard,
                            pred_cond: (&pc).into(),
                            pred_uncond: (&pu).into(),
                            target: Target::Explicit((&tb).into()),
                            weights: (&weights).into(),
                            grad_cond: (&gc).into(),
                            grad_uncond: (&gu).into(),
                            scalars: (&scalars).into(),
                            workspace: &ws,
                        };
                        let time = TimeBuckets {
                            buckets,
                            decay,
                            sample_bucket: (&sb).into(),
                            state: (&state).into(),
                        };
                        let mut enc = g.encoder();
                        k.record_imba_time_normalized(
                            dev,
                            &mut enc,
                            &args,
                            p,
                            &time,
                            Some(&mut across),
                        )
                        .unwrap();
                        g.submit_and_wait(enc).unwrap();
                        ds.push(g.read(&weights, rows).unwrap());
                    }
                    (ds, g.read(&state, 2 * buckets as usize).unwrap())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (rank, (ds, state)) in results.iter().enumerate() {
        assert_close(
            &format!("shard {rank}: state"),
            state,
            &ref_state,
            1e-6,
            1e-5,
        );
        for (round, (d, want)) in ds.iter().zip(&wants).enumerate() {
            let rows_want = &want.weights[rank * rows..(rank + 1) * rows];
            assert_close(
                &format!("shard {rank} launch {round}: D"),
                d,
                rows_want,
                1e-5,
                1e-5,
            );
        }
    }
    assert_eq!(
        results[0].1, results[1].1,
        "the shards' states differ in bits"
    );
}
