//! Every launcher refuses an output that shares memory with another operand (an input that is
//! also an output, two outputs that overlap), naming both slots, instead of leaving a wgpu
//! validation error or racing results; and two outputs in disjoint regions of one buffer (an
//! engine's arena) are fine.

use crate::common;
use common::*;
use imba::kernels::*;

/// A zeroed buffer of `floats` f32.
fn buf(label: &str, floats: u64) -> wgpu::Buffer {
    gpu().zeros(label, floats * 4)
}

/// The launch was refused as aliased, naming both slots.
fn refused<T>(r: imba::Result<T>, first: &str, second: &str) {
    match r {
        Err(imba::Error::Alias(m)) => {
            assert!(
                m.contains(&format!("`{first}`")) && m.contains(&format!("`{second}`")),
                "the message should name `{first}` and `{second}`: {m}"
            );
        }
        Err(e) => panic!("expected an aliasing error naming {first} and {second}, got: {e}"),
        Ok(_) => panic!("{first} aliasing {second} was accepted"),
    }
}

#[test]
fn loss_launchers_refuse_aliased_outputs_and_take_regions_of_one_arena() {
    let g = gpu();
    let dev = &g.device;
    let k = LossKernels::new(dev).unwrap();
    let s = TokenShape::new(3, 5, 7);
    let ws = k.workspace(dev, s).unwrap();
    let [pc, pu, t, w, gc, gu, sc] = ["pc", "pu", "t", "w", "gc", "gu", "sc"].map(|l| buf(l, 256));
    let base = ImbaLossArgs {
        shape: s,
        pred_cond: (&pc).into(),
        pred_uncond: (&pu).into(),
        target: Target::Explicit((&t).into()),
        weights: (&w).into(),
        grad_cond: (&gc).into(),
        grad_uncond: (&gu).into(),
        scalars: (&sc).into(),
        workspace: &ws,
    };
    let p = ImbaParams::default();
    let mut enc = g.encoder();
    // Named by the arguments: an output bound over an input, two overlapping outputs.
    let over_input = ImbaLossArgs {
        weights: (&pc).into(),
        ..base
    };
    refused(
        k.record_imba(dev, &mut enc, &over_input, &p),
        "pred_cond",
        "weights",
    );
    let overlapping = ImbaLossArgs {
        grad_uncond: (&gc).into(),
        ..base
    };
    refused(
        k.record_imba(dev, &mut enc, &overlapping, &p),
        "grad_cond",
        "grad_uncond",
    );
    // Two outputs in disjoint 256-byte-aligned regions of one arena: accepted.
    let arena = buf("arena", 1024);
    let disjoint = ImbaLossArgs {
        grad_cond: Region::new(&arena, 0),
        grad_uncond: Region::new(&arena, 512),
        ..base
    };
    k.record_imba(dev, &mut enc, &disjoint, &p).unwrap();
    let mse = MseLossArgs {
        shape: s,
        pred: (&pc).into(),
        target: Target::Explicit((&t).into()),
        grad: (&pc).into(),
        scalars: (&sc).into(),
        workspace: &ws,
    };
    // Named by the arguments' fields (`MseLossArgs` has `pred` and `grad`), not by the
    // shader's variables.
    refused(k.record_mse(dev, &mut enc, &mse), "pred", "grad");
    let tm = TokenMseArgs {
        shape: s,
        pred: (&pc).into(),
        target: Target::Explicit((&t).into()),
        out: (&t).into(),
        workspace: &ws,
    };
    refused(k.record_token_mse(dev, &mut enc, &tm), "out", "target");
    // A workspace serves a smaller (short final) batch, not a larger one.
    let short = MseLossArgs {
        shape: TokenShape::new(2, 5, 7),
        grad: (&gc).into(),
        ..mse
    };
    k.record_mse(dev, &mut enc, &short).unwrap();
    let long = MseLossArgs {
        shape: TokenShape::new(4, 5, 7),
        ..short
    };
    assert_refused(|| k.record_mse(dev, &mut enc, &long), "largest shape");
}

#[test]
fn dense_launchers_refuse_an_output_over_an_input() {
    let g = gpu();
    let dev = &g.device;
    let mut enc = g.encoder();
    let (a, b) = (buf("a", 4096), buf("b", 4096));

    let mm = MatmulKernels::new(dev).unwrap();
    let args = MatmulArgs {
        m: 5,
        k: 7,
        n: 3,
        a: (&a).into(),
        a_layout: Layout::RowMajor,
        b: (&b).into(),
        b_layout: Layout::RowMajor,
        bias: None,
        c: (&a).into(),
        accumulate: false,
    };
    refused(mm.record(dev, &mut enc, &args), "a", "c");
    let e = mm.record(dev, &mut enc, &args);
    assert!(
        matches!(e, Err(imba::Error::Alias(_))),
        "matmul: {:?}",
        e.err()
    );

    let act = ActivationKernels::new(dev).unwrap();
    let e = act.record_forward(
        dev,
        &mut enc,
        &ActivationArgs {
            act: Activation::Silu,
            n: 33,
            x: (&a).into(),
            y: (&a).into(),
        },
    );
    assert!(
        matches!(e, Err(imba::Error::Alias(_))),
        "activation: {:?}",
        e.err()
    );

    let opt = OptimKernels::new(dev).unwrap();
    let e = opt.record_ema(
        dev,
        &mut enc,
        &EmaArgs {
            step_values: None,
            n: 33,
            decay: 0.9,
            params: (&a).into(),
            ema: (&a).into(),
        },
    );
    assert!(
        matches!(e, Err(imba::Error::Alias(_))),
        "ema: {:?}",
        e.err()
    );
    let e = opt.record_adamw(
        dev,
        &mut enc,
        &AdamWArgs {
            step_values: None,
            n: 33,
            h: AdamW {
                lr: 1e-3,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0,
            },
            step: 1,
            params: (&a).into(),
            grads: (&b).into(),
            m: (&b).into(),
            v: Region::new(&b, 1024),
            norm: None,
        },
    );
    assert!(
        matches!(e, Err(imba::Error::Alias(_))),
        "adamw: {:?}",
        e.err()
    );

    let att = AttentionKernels::new(dev).unwrap();
    let e = att.record_forward(
        dev,
        &mut enc,
        &AttentionArgs {
            shape: AttentionShape {
                samples: 1,
                tokens: 4,
                heads: 1,
                head_dim: 8,
            },
            qkv: (&a).into(),
            o: (&a).into(),
            lse: (&b).into(),
        },
    );
    assert!(
        matches!(e, Err(imba::Error::Alias(_))),
        "attention: {:?}",
        e.err()
    );

    let emb = EmbedKernels::new(dev).unwrap();
    let e = emb.record_fold_repeats(
        dev,
        &mut enc,
        &FoldArgs {
            len: 33,
            repeats: 2,
            x: (&a).into(),
            out: (&a).into(),
            write: Write::Overwrite,
        },
    );
    assert!(
        matches!(e, Err(imba::Error::Alias(_))),
        "fold: {:?}",
        e.err()
    );

    let red = ReduceKernel::new(dev).unwrap();
    let e = red.record(
        dev,
        &mut enc,
        &ReduceArgs {
            input: (&a).into(),
            items: 5,
            width: 4,
            scratch: [(&b).into(), (&b).into()],
            out: (&a).into(),
        },
    );
    assert!(
        matches!(e, Err(imba::Error::Alias(_))),
        "reduce: {:?}",
        e.err()
    );

    let noise = NoiseKernels::new(dev).unwrap();
    let e = noise.record_label_dropout(
        dev,
        &mut enc,
        &LabelDropoutArgs {
            seed: 1,
            step: 1,
            drop_prob: 0.1,
            null_label: 3,
            batch: 5,
            labels_in: (&a).into(),
            labels_out: (&a).into(),
        },
    );
    assert!(
        matches!(e, Err(imba::Error::Alias(_))),
        "label dropout: {:?}",
        e.err()
    );

    let pair = PairKernels::new(dev).unwrap();
    let e = pair.record(
        dev,
        &mut enc,
        &PairArgs {
            half: 14,
            per_sample: 7,
            pred: (&a).into(),
            weight: (&b).into(),
            ka: 1.0,
            kb: 1.0,
            accumulate: false,
            dout: (&a).into(),
            partials: (&b).into(),
            scalars: (&b).into(),
        },
    );
    assert!(
        matches!(e, Err(imba::Error::Alias(_))),
        "pair: {:?}",
        e.err()
    );
}

/// The check knows buffers by identity, never by a process-wide list: on a second
/// `wgpu::Instance` (whose first buffers share ids with the first instance's objects), every
/// aliased launch is still refused.
#[test]
fn aliasing_is_refused_on_a_second_instance() {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: gpu().info.backend.into(),
        ..wgpu::InstanceDescriptor::new_without_display_handle_from_env()
    });
    let adapter = pollster::block_on(instance.enumerate_adapters(gpu().info.backend.into()))
        .into_iter()
        .find(|a| a.get_info().name == gpu().info.name)
        .expect("the test adapter on a second instance");
    let (dev, _queue) = pollster::block_on(adapter.request_device(&Default::default())).unwrap();
    let k = ActivationKernels::new(&dev).unwrap();
    for i in 0..16 {
        let b = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("second-instance"),
            size: 64,
            usage: imba::gpu::storage_usage(),
            mapped_at_creation: false,
        });
        let mut enc = dev.create_command_encoder(&Default::default());
        let args = ActivationArgs {
            act: Activation::Gelu,
            n: 16,
            x: (&b).into(),
            y: (&b).into(),
        };
        match k.record_forward(&dev, &mut enc, &args) {
            Err(imba::Error::Alias(_)) => {}
            other => panic!("buffer {i} of the second instance: {other:?}"),
        }
    }
}
