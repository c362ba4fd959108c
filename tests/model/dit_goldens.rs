//! The whole tiny DiT against goldens from PyTorch's autograd (scripts/make_dit_goldens.py,
//! float64): weights loaded through the safetensors import, the dual forward on the saved
//! x_t, timesteps and labels, the fused IMBA loss on the saved noise (explicit-target mode),
//! the backward — output, loss and every gradient within 1e-4 relative per tensor on the GPU.
//! The f64 CPU reference must match PyTorch to f32 rounding of the files (1e-6). Also:
//! export → import is exact, and bad checkpoints are refused with the reason.

use crate::common;
use common::*;
use imba::kernels::{ImbaParams, LossKernels, Paths, Target};
use imba::model::{checkpoint, tokens, Activations, Dit, DitConfig, LossPass, ParamLayout};
use imba::objectives::DualLoss;
use imba::reference::{dit as rdit, embed};
use safetensors::{Dtype, SafeTensors};
use std::path::PathBuf;

fn golden(name: &str) -> PathBuf {
    common::repo_root().join("tests/goldens").join(name)
}

/// A tensor of the IO file as f64 (F32 or F64) or, for labels, I64.
fn read(st: &SafeTensors, name: &str) -> Vec<f64> {
    let v = st
        .tensor(name)
        .unwrap_or_else(|_| panic!("golden {name} missing"));
    let d = v.data();
    match v.dtype() {
        Dtype::F32 => d
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect(),
        Dtype::F64 => d
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        Dtype::I64 => d
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect(),
        other => panic!("{name}: unexpected dtype {other:?}"),
    }
}

fn rel(got: &[f64], want: &[f64]) -> f64 {
    let num: f64 = got.iter().zip(want).map(|(a, b)| (a - b) * (a - b)).sum();
    let den: f64 = want.iter().map(|b| b * b).sum();
    assert!(den > 0.0);
    (num / den).sqrt()
}

struct Goldens {
    cfg: DitConfig,
    batch: usize,
    params: Vec<f32>,
    patches: Vec<f32>,
    target: Vec<f32>,
    t: Vec<f32>,
    labels: Vec<u32>,
    out_tokens: Vec<f64>,
    loss: Vec<f64>,
    grads: Vec<(String, Vec<f64>)>,
}

fn load() -> Goldens {
    let cfg = DitConfig::tiny();
    let params = checkpoint::load(&golden("dit_tiny_weights.safetensors"), &cfg).unwrap();
    let bytes = std::fs::read(golden("dit_tiny_io.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let t: Vec<f32> = read(&st, "t").iter().map(|&v| v as f32).collect();
    let batch = t.len();
    let geo = cfg.geometry(batch as u32);
    let x_t: Vec<f32> = read(&st, "x_t").iter().map(|&v| v as f32).collect();
    let noise: Vec<f32> = read(&st, "noise").iter().map(|&v| v as f32).collect();
    let y = read(&st, "labels");
    // Dual labels: y, then ∅.
    let mut labels: Vec<u32> = y.iter().map(|&v| v as u32).collect();
    labels.extend(std::iter::repeat_n(cfg.null_label(), batch));
    let out: Vec<f32> = read(&st, "out").iter().map(|&v| v as f32).collect();
    let out_tokens = f64s(&tokens::output_tokens(
        &out,
        &cfg.geometry(2 * batch as u32),
    ));
    let layout = ParamLayout::new(&cfg);
    let grads = layout
        .tensors
        .iter()
        .map(|t| (t.name.clone(), read(&st, &format!("grad.{}", t.name))))
        .collect();
    Goldens {
        patches: tokens::patchify(&x_t, &geo),
        target: tokens::output_tokens(&noise, &geo),
        loss: read(&st, "loss"),
        cfg,
        batch,
        params,
        t,
        labels,
        out_tokens,
        grads,
    }
}

#[test]
fn reference_dit_matches_pytorch_goldens() {
    let gd = load();
    let layout = ParamLayout::new(&gd.cfg);
    let flat = f64s(&gd.params);
    let p = rdit::Params {
        layout: &layout,
        flat: &flat,
    };
    let t64: Vec<f64> = gd.t.iter().map(|&v| v as f64).collect();
    let f = rdit::forward(
        &gd.cfg,
        &p,
        &f64s(&gd.patches),
        &embed::timestep_features(&t64),
        &gd.labels,
    );
    assert!(
        rel(&f.out, &gd.out_tokens) < 1e-6,
        "reference output vs PyTorch: {:.3e}",
        rel(&f.out, &gd.out_tokens)
    );
    let half = f.out.len() / 2;
    let (n, k) = (gd.cfg.tokens(), gd.cfg.token_dim());
    let shape = imba::kernels::TokenShape::new(gd.batch as u32, n, k);
    let l = imba::reference::loss::imba(
        shape,
        &f.out[..half],
        &f.out[half..],
        &f64s(&gd.target),
        &ImbaParams::default(),
    );
    for (what, got, want) in [
        ("L", l.loss, gd.loss[0]),
        ("L_c", l.loss_cond, gd.loss[1]),
        ("L_u", l.loss_uncond, gd.loss[2]),
        ("mean D", l.mean_d, gd.loss[3]),
    ] {
        assert!(
            (got - want).abs() <= 1e-9 * want.abs(),
            "{what}: reference {got} vs PyTorch {want}"
        );
    }
    let mut dout = l.grad_cond.clone();
    dout.extend(&l.grad_uncond);
    let grads = rdit::backward(&gd.cfg, &p, &f, &dout);
    for (name, want) in &gd.grads {
        let t = layout.get(name);
        let e = rel(&grads[t.offset..t.offset + t.len()], want);
        assert!(e < 1e-6, "reference grad {name} vs PyTorch: {e:.3e}");
    }
}

/// The whole model's forward, loss and backward against PyTorch, on the device's own kernel
/// paths and on each path forced (the GPU kernels run here on whatever adapter tests run on).
#[test]
fn gpu_dit_matches_pytorch_goldens() {
    let dev = &gpu().device;
    let chosen = Paths::choose(dev).unwrap();
    for paths in [chosen, Paths::Tiled, Paths::Portable, Paths::Texture] {
        dit_step_matches_goldens(paths);
    }
}

fn dit_step_matches_goldens(paths: Paths) {
    let g = gpu();
    let dev = &g.device;
    let gd = load();
    let cfg = &gd.cfg;
    let layout = ParamLayout::new(cfg);
    let dit = Dit::with_paths(dev, cfg.clone(), &gd.params, paths).unwrap();
    let acts = Activations::new(dev, cfg, gd.batch as u32, 2).unwrap();
    acts.set_conditions(&g.queue, cfg, &gd.t, &gd.labels)
        .unwrap();
    let lk = LossKernels::new(dev).unwrap();
    let dual = DualLoss::new(dev, &lk, cfg, gd.batch as u32).unwrap();
    let (pb, tb) = (
        g.upload("patches", &gd.patches),
        g.upload("noise", &gd.target),
    );
    let mut enc = g.encoder();
    let pass = LossPass {
        tap: None,
        dout: &dual.dout,
        inject: None,
    };
    let how = imba::objectives::ComputedWeights {
        target: Target::Explicit((&tb).into()),
        params: &ImbaParams::default(),
        time: None,
        across: None,
    };
    dit.record_with_loss(dev, &mut enc, &acts, &pb, pass, |enc| {
        dual.record(dev, enc, &lk, &acts, how)
    })
    .unwrap();
    g.submit_and_wait(enc).unwrap();
    let out = f64s(&g.read::<f32>(&acts.out, gd.out_tokens.len()).unwrap());
    let e = rel(&out, &gd.out_tokens);
    assert!(e < 1e-5, "{paths:?}: output vs PyTorch: {e:.3e}");
    let s = g.read::<f32>(&dual.scalars, 4).unwrap();
    for (i, what) in ["L", "L_c", "L_u", "mean D"].iter().enumerate() {
        assert_scalar(what, s[i], gd.loss[i], 1e-4);
    }
    let got = f64s(&g.read::<f32>(&dit.grads, layout.total).unwrap());
    for (name, want) in &gd.grads {
        let t = layout.get(name);
        let e = rel(&got[t.offset..t.offset + t.len()], want);
        assert!(
            e <= 1e-4,
            "{paths:?}: grad {name} vs PyTorch: relative error {e:.3e}"
        );
    }
}

#[test]
fn checkpoint_round_trip_is_exact_and_bad_files_are_refused() {
    let cfg = DitConfig::tiny();
    let layout = ParamLayout::new(&cfg);
    let flat = layout.init_all_nonzero(5);
    let dir = std::env::temp_dir().join(format!("imba-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    checkpoint::save(&path, &cfg, &flat).unwrap();
    let back = checkpoint::load(&path, &cfg).unwrap();
    assert!(
        back.iter()
            .zip(&flat)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "round trip changed bits"
    );
    // The PyTorch-written file's pos_embed is DiT's (checked by the import) and the file
    // written here holds every reference name.
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.names().len(), layout.tensors.len() + 1);
    // Another config: a shape mismatch names the tensor.
    let mut other = cfg.clone();
    other.num_labels = 7;
    assert_error_mentions(
        checkpoint::load(&path, &other),
        "y_embedder.embedding_table.weight",
    );
    let mut deeper = cfg.clone();
    deeper.depth = 3;
    assert_error_mentions(
        checkpoint::load(&path, &deeper),
        "blocks.2.attn.qkv.weight` is missing",
    );
    // Truncated and missing files.
    let cut = dir.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert_error_mentions(checkpoint::load(&cut, &cfg), "not a valid safetensors file");
    assert_error_mentions(
        checkpoint::load(&dir.join("none.safetensors"), &cfg),
        "cannot read",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A learn_sigma = true state dict (the reference's default, its output layer predicting the
/// variance's C channels after ε's) imports by its ε half: the f64 reference's forward of
/// the imported weights is the first C channels of PyTorch's output, not the last.
#[test]
fn learn_sigma_state_dicts_import_by_their_epsilon_half() {
    let cfg = DitConfig::tiny();
    let params = checkpoint::load(&golden("dit_tiny_sigma_weights.safetensors"), &cfg).unwrap();
    let bytes = std::fs::read(golden("dit_tiny_sigma_io.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let t = read(&st, "t");
    let batch = t.len();
    let x_t: Vec<f32> = read(&st, "x_t").iter().map(|&v| v as f32).collect();
    let mut labels: Vec<u32> = read(&st, "labels").iter().map(|&v| v as u32).collect();
    labels.extend(std::iter::repeat_n(cfg.null_label(), batch));
    // PyTorch's output per sample: ε's C channels, then the variance's C.
    let image = cfg.image_len();
    let out: Vec<f32> = read(&st, "out").iter().map(|&v| v as f32).collect();
    assert_eq!(
        out.len(),
        2 * batch * 2 * image,
        "the golden holds 2C channels"
    );
    let half = |k: usize| -> Vec<f64> {
        let part: Vec<f32> = out
            .chunks_exact(2 * image)
            .flat_map(|sample| &sample[k * image..(k + 1) * image])
            .copied()
            .collect();
        f64s(&tokens::output_tokens(
            &part,
            &cfg.geometry(2 * batch as u32),
        ))
    };
    let layout = ParamLayout::new(&cfg);
    let flat = f64s(&params);
    let p = rdit::Params {
        layout: &layout,
        flat: &flat,
    };
    let patches = tokens::patchify(&x_t, &cfg.geometry(batch as u32));
    let f = rdit::forward(
        &cfg,
        &p,
        &f64s(&patches),
        &embed::timestep_features(&t),
        &labels,
    );
    let (eps, variance) = (rel(&f.out, &half(0)), rel(&f.out, &half(1)));
    assert!(eps < 1e-6, "imported ε half vs PyTorch: {eps:.3e}");
    assert!(
        variance > 0.1,
        "the variance half matched instead: {variance:.3e}"
    );
    // A learn_sigma weight beside a plain bias (two models mixed) is refused.
    let sigma = std::fs::read(golden("dit_tiny_sigma_weights.safetensors")).unwrap();
    let plain = std::fs::read(golden("dit_tiny_weights.safetensors")).unwrap();
    let (sigma, plain) = (
        SafeTensors::deserialize(&sigma).unwrap(),
        SafeTensors::deserialize(&plain).unwrap(),
    );
    let bias = "final_layer.linear.bias";
    let mut views = sigma.tensors();
    views.retain(|(n, _)| n != bias);
    views.push((bias.to_string(), plain.tensor(bias).unwrap()));
    let path = std::env::temp_dir().join(format!("imba-mixed-{}.safetensors", std::process::id()));
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    assert_error_mentions(checkpoint::load(&path, &cfg), "mixes two models");
    std::fs::remove_file(&path).unwrap();
}

/// A state dict saved in half precision (`model.to(torch.float16)` or `bfloat16`, then
/// safetensors) loads: every weight is the stored value widened exactly, and the position
/// embedding, rounded to the type, is accepted; one off by more than that is refused.
#[test]
fn half_precision_checkpoints_import() {
    use safetensors::tensor::TensorView;
    let cfg = DitConfig::tiny();
    let flat = ParamLayout::new(&cfg).init_all_nonzero(9);
    let dir = std::env::temp_dir().join(format!("imba-half-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f32_path = dir.join("model.safetensors");
    checkpoint::save(&f32_path, &cfg, &flat).unwrap();
    let bytes = std::fs::read(&f32_path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    type Round = fn(f32) -> [u8; 2];
    let to_f16: Round = |x| half::f16::from_f32(x).to_le_bytes();
    let to_bf16: Round = |x| half::bf16::from_f32(x).to_le_bytes();
    let widen_f16 = |x: f32| half::f16::from_f32(x).to_f32();
    let widen_bf16 = |x: f32| half::bf16::from_f32(x).to_f32();
    for (dtype, round, widen, shift) in [
        (
            Dtype::F16,
            to_f16,
            &widen_f16 as &dyn Fn(f32) -> f32,
            0.01f32,
        ),
        (Dtype::BF16, to_bf16, &widen_bf16, 0.05),
    ] {
        // Every tensor rounded to the type; `shift` moves one pos_embed value in a second file.
        let write = |name: &str, shift_pos: f32| {
            let data: Vec<(String, Vec<u8>, Vec<usize>)> = st
                .tensors()
                .into_iter()
                .map(|(n, v)| {
                    let mut xs: Vec<f32> = bytemuck::cast_slice::<u8, f32>(v.data()).to_vec();
                    if n == checkpoint::POS_EMBED {
                        xs[3] += shift_pos;
                    }
                    let b = xs.iter().flat_map(|&x| round(x)).collect();
                    (n, b, v.shape().to_vec())
                })
                .collect();
            let views: Vec<(String, TensorView)> = data
                .iter()
                .map(|(n, b, s)| (n.clone(), TensorView::new(dtype, s.clone(), b).unwrap()))
                .collect();
            let path = dir.join(name);
            std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
            path
        };
        let path = write(&format!("{dtype:?}.safetensors"), 0.0);
        let back = checkpoint::load(&path, &cfg).unwrap();
        for (i, (&a, &b)) in back.iter().zip(&flat).enumerate() {
            assert_eq!(a.to_bits(), widen(b).to_bits(), "{dtype:?}: weight {i}");
        }
        let off = write(&format!("{dtype:?}-off.safetensors"), shift);
        assert_error_mentions(checkpoint::load(&off, &cfg), "pos_embed differs");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// CBDM and CCUA on the GPU (tapped forward, PairLoss, injected backward) against PyTorch's
/// autograd of the same objectives (scripts/make_objective_goldens.py): the loss and every
/// gradient within 1e-4 relative per tensor. Independent of our f64 reference: the
/// stop-gradients, the t/T weights and the contrastive loss come from PyTorch's own ops.
#[test]
fn gpu_objectives_match_pytorch_goldens() {
    use imba::objectives::{PairKind, PairLoss};
    let gd = load();
    let g = gpu();
    let dev = &g.device;
    let bytes = std::fs::read(golden("objectives_tiny.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let b = gd.batch;
    let layout = ParamLayout::new(&gd.cfg);
    let lk = LossKernels::new(dev).unwrap();
    let f32c = |v: f64| v as f32;
    for (name, kind) in [
        ("cbdm", PairKind::Cbdm { tau: 1.0 }),
        (
            "ccua",
            PairKind::Ccua {
                alpha: f32c(0.7),
                gamma: f32c(0.5),
                tau: f32c(0.1),
                block: gd.cfg.depth / 4,
            },
        ),
    ] {
        let mut labels = gd.labels[..b].to_vec();
        if name == "cbdm" {
            labels.extend(read(&st, "cbdm.labels2").iter().map(|&v| v as u32));
        } else {
            labels.extend(std::iter::repeat_n(gd.cfg.null_label(), b));
        }
        let dit = Dit::new(dev, gd.cfg.clone(), &gd.params).unwrap();
        let acts = Activations::new(dev, &gd.cfg, b as u32, 2).unwrap();
        acts.set_conditions(&g.queue, &gd.cfg, &gd.t, &labels)
            .unwrap();
        let pl = PairLoss::new(dev, &lk, &gd.cfg, b as u32, kind).unwrap();
        let w: Vec<f32> = gd.t.iter().map(|&t| t / 1000.0).collect();
        g.queue
            .write_buffer(&pl.weight, 0, bytemuck::cast_slice(&w));
        let (pb, tb) = (
            g.upload("patches", &gd.patches),
            g.upload("target", &gd.target),
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
        let s = g.read::<f32>(&pl.scalars, 3).unwrap();
        assert_scalar(
            &format!("{name} loss"),
            kind.total([s[0], s[1], s[2]]),
            read(&st, &format!("{name}.loss"))[0],
            1e-4,
        );
        let got = f64s(&g.read::<f32>(&dit.grads, layout.total).unwrap());
        for t in &layout.tensors {
            let want = read(&st, &format!("{name}.grad.{}", t.name));
            let e = rel(&got[t.offset..t.offset + t.len()], &want);
            assert!(e <= 1e-4, "{name} grad {}: relative error {e:.3e}", t.name);
        }
    }
}
