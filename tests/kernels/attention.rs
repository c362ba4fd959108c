//! Multi-head self-attention: the GPU forward and backward against the f64 reference (which
//! forms the probability matrix explicitly) at odd sizes with poisoned outputs, the reference
//! backward against finite differences, and bad input.

use crate::common;
use common::*;
use imba::kernels::AttentionArgs;
use imba::kernels::AttentionBackwardArgs;
use imba::kernels::{AttentionKernels, AttentionPath, AttentionShape};
use imba::reference::attention as ra;
use wgpu::util::DeviceExt;

fn ref_shape(s: AttentionShape) -> ra::AttentionShape {
    ra::AttentionShape {
        samples: s.samples as usize,
        tokens: s.tokens as usize,
        heads: s.heads as usize,
        head_dim: s.head_dim as usize,
    }
}

#[test]
fn attention_matches_reference() {
    let g = gpu();
    let dev = &g.device;
    let mut r = Rand::new(21);
    let fast = AttentionKernels::new(dev).unwrap();
    let portable = AttentionKernels::new(dev).unwrap().with_texture_path(false);
    let shapes = [
        (1u32, 1u32, 1u32, 1u32),
        (2, 7, 3, 5),
        (3, 17, 2, 16),
        (1, 65, 1, 128),
        (5, 9, 3, 4),
    ];
    // The texture path copies qkv and dO into its textures where their buffers allow copies,
    // and packs them with a kernel where they do not (no COPY_SRC usage): both are run.
    for (s, k, copyable) in shapes
        .iter()
        .flat_map(|&s| [(s, &fast, true), (s, &fast, false), (s, &portable, true)])
    {
        let path = check(g, k, shape(s), copyable, &mut r);
        let want = if std::ptr::eq(k, &portable) {
            AttentionPath::Portable
        } else {
            match imba::kernels::Paths::choose(dev).unwrap() {
                imba::kernels::Paths::Tiled => AttentionPath::Tiled,
                imba::kernels::Paths::Texture
                    if s.3 % 4 == 0 && AttentionKernels::texture_path_supported(dev) =>
                {
                    AttentionPath::Texture
                }
                _ => AttentionPath::Portable,
            }
        };
        assert_eq!(path, want, "{s:?}");
    }
}

/// The GPU kernels, forced onto whatever adapter runs the tests: head sizes from 1 to 128
/// (odd ones, and ones that leave the staged-row count odd), token counts below, at and past
/// the 64-row block and the staged tiles, up to 300.
#[test]
fn tiled_attention_matches_reference() {
    let g = gpu();
    let dev = &g.device;
    let mut r = Rand::new(23);
    let tiled = AttentionKernels::with_paths(dev, imba::kernels::Paths::Tiled).unwrap();
    let shapes = [
        (1u32, 1u32, 1u32, 1u32),
        (2, 7, 3, 5),
        (1, 63, 2, 3),
        (2, 64, 1, 16),
        (1, 65, 2, 31),
        (1, 129, 1, 64),
        (1, 300, 1, 8),
        (1, 70, 1, 100),
        (2, 33, 1, 128),
    ];
    for s in shapes {
        assert_eq!(
            check(g, &tiled, shape(s), true, &mut r),
            AttentionPath::Tiled
        );
    }
}

fn shape((samples, tokens, heads, head_dim): (u32, u32, u32, u32)) -> AttentionShape {
    AttentionShape {
        samples,
        tokens,
        heads,
        head_dim,
    }
}

/// Forward and backward of `sh` on `k` into poisoned outputs, against the f64 reference;
/// returns the path that ran.
fn check(
    g: &imba::gpu::Gpu,
    k: &AttentionKernels,
    sh: AttentionShape,
    copyable: bool,
    r: &mut Rand,
) -> AttentionPath {
    let dev = &g.device;
    let e = sh.elements() as usize;
    let l = sh.query_rows() as usize;
    // Scores up to ~±10: the softmax is far from uniform but not one-hot.
    let qkv = r.vec(3 * e, -1.5, 1.5);
    let d_o = r.vec(e, -1.0, 1.0);
    let upload = |label, data: &[f32]| {
        if copyable {
            g.upload(label, data)
        } else {
            dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::cast_slice(data),
                usage: wgpu::BufferUsages::STORAGE,
            })
        }
    };
    let (qb, dob) = (upload("qkv", &qkv), upload("dO", &d_o));
    let (o, lse, dqkv, delta) = (
        g.poisoned("o", e),
        g.poisoned("lse", l),
        g.poisoned("dqkv", 3 * e),
        g.poisoned("delta", l),
    );
    let mut enc = g.encoder();
    k.record_forward(
        dev,
        &mut enc,
        &AttentionArgs {
            shape: sh,
            qkv: (&qb).into(),
            o: (&o).into(),
            lse: (&lse).into(),
        },
    )
    .unwrap();
    k.record_backward(
        dev,
        &mut enc,
        &AttentionBackwardArgs {
            shape: sh,
            qkv: (&qb).into(),
            o: (&o).into(),
            lse: (&lse).into(),
            d_o: (&dob).into(),
            dqkv: (&dqkv).into(),
            delta: (&delta).into(),
        },
    )
    .unwrap();
    g.submit_and_wait(enc).unwrap();
    let q64 = f64s(&qkv);
    let want_o = ra::attention(&q64, ref_shape(sh));
    let want_d = ra::attention_backward(&q64, &f64s(&d_o), ref_shape(sh));
    let path = k.path(dev, sh);
    let what = format!("{sh:?} {path:?} copyable={copyable}");
    assert_close(
        &format!("{what} O"),
        &g.read(&o, e).unwrap(),
        &want_o,
        1e-5,
        1e-4,
    );
    assert_close(
        &format!("{what} dqkv"),
        &g.read(&dqkv, 3 * e).unwrap(),
        &want_d,
        1e-5,
        1e-4,
    );
    path
}

#[test]
fn attention_reference_backward_matches_finite_differences() {
    let mut r = Rand::new(22);
    let sh = ra::AttentionShape {
        samples: 2,
        tokens: 5,
        heads: 2,
        head_dim: 3,
    };
    let e = 2 * 5 * 6;
    let qkv = f64s(&r.vec(3 * e, -1.5, 1.5));
    let w = f64s(&r.vec(e, -1.0, 1.0));
    let d = ra::attention_backward(&qkv, &w, sh);
    assert_fd("dqkv", &qkv, &d, |v| dot(&w, &ra::attention(v, sh)), 1e-6);
}

#[test]
fn attention_bad_input_is_an_error() {
    let g = gpu();
    let dev = &g.device;
    let k = AttentionKernels::new(dev).unwrap();
    let buf = g.zeros("buf", 1 << 16);
    let mut enc = g.encoder();
    let big = AttentionShape {
        samples: 1,
        tokens: 4,
        heads: 1,
        head_dim: 129,
    };
    assert_refused(
        || {
            k.record_forward(
                dev,
                &mut enc,
                &AttentionArgs {
                    shape: big,
                    qkv: (&buf).into(),
                    o: (&buf).into(),
                    lse: (&buf).into(),
                },
            )
        },
        "head size",
    );
    let sh = AttentionShape {
        samples: 2,
        tokens: 64,
        heads: 4,
        head_dim: 32,
    };
    assert_refused(
        || {
            k.record_forward(
                dev,
                &mut enc,
                &AttentionArgs {
                    shape: sh,
                    qkv: (&buf).into(),
                    o: (&buf).into(),
                    lse: (&buf).into(),
                },
            )
        },
        "`qkv`",
    );
}
