//! The per-step values from a buffer written once per step give the bits of the same launches
//! given the values as arguments: the noise, the loss's regenerated target, AdamW and the
//! EMA.

use crate::common;
use common::*;
use imba::kernels::{
    AdamW, AdamWArgs, EmaArgs, ImageGeometry, NoiseArgs, NoiseKernels, OptimKernels, Schedule,
    StepValues,
};

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// A buffer holding `values`, written through the queue as a trainer does.
fn written(values: StepValues) -> wgpu::Buffer {
    let g = gpu();
    let b = StepValues::buffer(&g.device);
    values.write(&g.queue, &b);
    b
}

#[test]
fn noise_from_the_step_buffer_is_the_noise_of_the_step_argument() {
    let g = gpu();
    let k = NoiseKernels::new(&g.device).unwrap();
    let geometry = ImageGeometry {
        batch: 3,
        channels: 3,
        height: 6,
        width: 10,
        patch: 2,
    };
    let n = geometry.elements() as usize;
    let mut r = Rand::new(7);
    let x0 = g.upload("x0", &r.vec(n, -1.0, 1.0));
    let t = g.upload("t", &[0.1f32, 0.5, 0.9]);
    let run = |step: u32, buffer: Option<&wgpu::Buffer>| {
        let out = g.poisoned("xt", n);
        let mut enc = g.encoder();
        let args = NoiseArgs {
            geometry,
            seed: 11,
            step,
            schedule: Schedule::Flow,
            x0: (&x0).into(),
            timesteps: (&t).into(),
            out_tokens: (&out).into(),
            first_sample: 0,
            step_values: buffer,
        };
        k.record_noise_to_tokens(&g.device, &mut enc, &args)
            .unwrap();
        g.submit_and_wait(enc).unwrap();
        bits(&g.read(&out, n).unwrap())
    };
    let buffer = written(StepValues::philox(5));
    let from_buffer = run(0, Some(&buffer));
    assert_eq!(from_buffer, run(5, None));
    assert_ne!(from_buffer, run(6, None), "the step changes the noise");
}

#[test]
fn adamw_and_ema_from_the_step_buffer_are_those_of_the_arguments() {
    let g = gpu();
    let k = OptimKernels::new(&g.device).unwrap();
    let n = 1001;
    let mut r = Rand::new(3);
    let (p0, grads) = (r.vec(n, -1.0, 1.0), r.vec(n, -0.1, 0.1));
    let h = AdamW {
        lr: 3e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.05,
    };
    let (step, decay) = (7, 0.93);
    let run = |buffer: Option<&wgpu::Buffer>| {
        let (p, m, v, e) = (
            g.upload("p", &p0),
            g.zeros("m", 4 * n as u64),
            g.zeros("v", 4 * n as u64),
            g.upload("e", &p0),
        );
        let gb = g.upload("g", &grads);
        let mut enc = g.encoder();
        let adam = AdamWArgs {
            n: n as u32,
            h,
            step,
            params: (&p).into(),
            grads: (&gb).into(),
            m: (&m).into(),
            v: (&v).into(),
            norm: None,
            step_values: buffer,
        };
        k.record_adamw(&g.device, &mut enc, &adam).unwrap();
        let ema = EmaArgs {
            n: n as u32,
            decay,
            params: (&p).into(),
            ema: (&e).into(),
            step_values: buffer,
        };
        k.record_ema(&g.device, &mut enc, &ema).unwrap();
        g.submit_and_wait(enc).unwrap();
        [&p, &m, &v, &e].map(|b| bits(&g.read(b, n).unwrap()))
    };
    let values = StepValues::default()
        .with_adamw(&h, step)
        .with_ema_decay(decay);
    assert_eq!(run(Some(&written(values))), run(None));
}
