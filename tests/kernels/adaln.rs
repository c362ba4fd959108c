//! LayerNorm + adaLN modulation, the gated residual and segment sums: the GPU against the
//! f64 reference at odd sizes with poisoned outputs, the reference backward against finite
//! differences, and bad input.

use crate::common;
use common::*;
use imba::kernels::{AdaLnKernels, AdaLnPath, Columns, Modulation, Region, Stream};
use imba::kernels::{
    GatedResidualArgs, GatedResidualBackwardArgs, LnModulateArgs, LnModulateBackwardArgs,
    SegmentSumsArgs, Write,
};
use imba::reference::adaln as ra;

const TOL: (f64, f64) = (2e-5, 2e-5);

/// shift, scale, gate chunks of a (samples, 6·dim) modulation, as a DiT block's first three.
fn chunk(m: &[f64], samples: usize, dim: usize, c: usize) -> Vec<f64> {
    (0..samples)
        .flat_map(|s| m[s * 6 * dim + c * dim..s * 6 * dim + (c + 1) * dim].to_vec())
        .collect()
}

#[test]
fn adaln_kernels_match_reference() {
    let g = gpu();
    let k = AdaLnKernels::new(&g.device).unwrap();
    let sizes = [
        (1usize, 1usize, 1usize),
        (3, 5, 37),
        (2, 67, 13),
        (4, 16, 64),
        (3, 5, 36),
        (2, 67, 12),
        // 4352 texels: a whole 4096-texel texture row and part of the next.
        (4, 64, 68),
    ];
    let texture = imba::kernels::Paths::choose(&g.device).unwrap() == imba::kernels::Paths::Texture
        && AdaLnKernels::texture_path_supported(&g.device);
    let tiled = imba::kernels::Paths::choose(&g.device).unwrap() == imba::kernels::Paths::Tiled;
    check_against_reference(g, &k, &sizes, &|dim| match (dim % 4, texture, tiled) {
        (_, _, true) => AdaLnPath::Workgroup,
        (0, true, _) => AdaLnPath::Texture,
        _ => AdaLnPath::Portable,
    });
}

/// The GPU kernels forced: rows of 1 to 200 values (more than one 64-lane stride), column
/// sums over enough rows to take the two-pass chunked sums (a partial last chunk) and over
/// too few.
#[test]
fn adaln_workgroup_kernels_match_reference() {
    let g = gpu();
    let k = AdaLnKernels::with_paths(&g.device, imba::kernels::Paths::Tiled).unwrap();
    let sizes = [
        (1, 1, 1),
        (2, 67, 13),
        (3, 130, 37),
        (2, 5, 200),
        (1, 64, 65),
    ];
    check_against_reference(g, &k, &sizes, &|_| AdaLnPath::Workgroup);
}

/// The same with the texture path off: every size on the storage-buffer kernels.
#[test]
fn adaln_portable_kernels_match_reference() {
    let g = gpu();
    let k = AdaLnKernels::new(&g.device)
        .unwrap()
        .with_texture_path(false);
    let sizes = [(3, 5, 37), (4, 16, 64), (2, 67, 12)];
    check_against_reference(g, &k, &sizes, &|_| AdaLnPath::Portable);
}

/// Every launch against the f64 reference at `sizes` (samples, tokens, dim); `want(dim)` is
/// the path launches of that width must take.
fn check_against_reference(
    g: &imba::gpu::Gpu,
    k: &AdaLnKernels,
    sizes: &[(usize, usize, usize)],
    want: &dyn Fn(usize) -> AdaLnPath,
) {
    let dev = &g.device;
    let mut r = Rand::new(11);
    for &(samples, tokens, dim) in sizes {
        let rows = samples * tokens;
        let n = rows * dim;
        let x: Vec<f32> = r.vec(n, -2.0, 3.0);
        let modv = r.vec(samples * 6 * dim, -1.0, 1.0);
        let dh = r.vec(n, -1.0, 1.0);
        let dx0 = r.vec(n, -1.0, 1.0);
        let a = r.vec(n, -1.0, 1.0);
        let s = Stream {
            rows: rows as u32,
            dim: dim as u32,
            tokens: tokens as u32,
        };
        let (xb, mb, dhb, ab) = (
            g.upload("x", &x),
            // 64 values ahead of the modulation: its region starts 256 bytes in.
            g.upload("mod", &[vec![f32::NAN; 64], modv.clone()].concat()),
            g.upload("dh", &dh),
            g.upload("a", &a),
        );
        let m = Modulation {
            region: Region {
                buffer: &mb,
                offset: 256,
            },
            stride: 6 * dim as u32,
            shift: 0,
            scale: dim as u32,
            gate: 2 * dim as u32,
        };
        let (h, xhat, rstd) = (
            g.poisoned("h", n),
            g.poisoned("xhat", n),
            g.poisoned("rstd", rows),
        );
        let dx = g.upload("dx", &dx0);
        let dmod = g.poisoned("dmod", samples * 6 * dim);
        let xr = g.upload("x-residual", &x);
        let da = g.poisoned("da", n);
        let dbias = g.poisoned("dbias", dim);
        let want_path = want(dim);
        assert_eq!(k.ln_path(s, &m), want_path, "D={dim}");
        assert_eq!(
            k.segment_sums_path(dim as u32, &Columns::whole(&dhb, dim as u32), None),
            want_path
        );
        let mut enc = g.encoder();
        k.record_ln_modulate(
            dev,
            &mut enc,
            &LnModulateArgs {
                stream: s,
                x: (&xb).into(),
                modulation: m,
                h: (&h).into(),
                xhat: (&xhat).into(),
                rstd: (&rstd).into(),
            },
        )
        .unwrap();
        k.record_ln_modulate_backward(
            dev,
            &mut enc,
            &LnModulateBackwardArgs {
                stream: s,
                xhat: (&xhat).into(),
                rstd: (&rstd).into(),
                modulation: m,
                dh: (&dhb).into(),
                dx: (&dx).into(),
                write: Write::Accumulate,
            },
        )
        .unwrap();
        let cols = |c: u32| Columns {
            region: (&dmod).into(),
            stride: 6 * dim as u32,
            col: c * dim as u32,
        };
        let whole = |b| Columns::whole(b, dim as u32);
        let (ss, ts, d) = (samples as u32, tokens as u32, dim as u32);
        k.record_segment_sums(
            dev,
            &mut enc,
            &SegmentSumsArgs {
                segments: ss,
                rows_per_segment: ts,
                dim: d,
                a: whole(&dhb),
                b: None,
                out: cols(0),
                write: Write::Overwrite,
            },
        )
        .unwrap();
        k.record_segment_sums(
            dev,
            &mut enc,
            &SegmentSumsArgs {
                segments: ss,
                rows_per_segment: ts,
                dim: d,
                a: whole(&dhb),
                b: Some(whole(&xhat)),
                out: cols(1),
                write: Write::Overwrite,
            },
        )
        .unwrap();
        k.record_gated_residual(
            dev,
            &mut enc,
            &GatedResidualArgs {
                stream: s,
                a: (&ab).into(),
                modulation: m,
                x: (&xr).into(),
            },
        )
        .unwrap();
        k.record_gated_residual_backward(
            dev,
            &mut enc,
            &GatedResidualBackwardArgs {
                stream: s,
                dx: (&dhb).into(),
                modulation: m,
                da: (&da).into(),
                write: Write::Overwrite,
            },
        )
        .unwrap();
        k.record_segment_sums(
            dev,
            &mut enc,
            &SegmentSumsArgs {
                segments: ss,
                rows_per_segment: ts,
                dim: d,
                a: whole(&dhb),
                b: Some(whole(&ab)),
                out: cols(2),
                write: Write::Overwrite,
            },
        )
        .unwrap();
        k.record_segment_sums(
            dev,
            &mut enc,
            &SegmentSumsArgs {
                segments: 1,
                rows_per_segment: rows as u32,
                dim: d,
                a: whole(&dhb),
                b: None,
                out: whole(&dbias),
                write: Write::Overwrite,
            },
        )
        .unwrap();
        g.submit_and_wait(enc).unwrap();

        let (x64, m64, dh64, a64) = (f64s(&x), f64s(&modv), f64s(&dh), f64s(&a));
        let (shift, scale, gate) = (
            chunk(&m64, samples, dim, 0),
            chunk(&m64, samples, dim, 1),
            chunk(&m64, samples, dim, 2),
        );
        let (want_xhat, want_rstd) = ra::layer_norm(&x64, dim);
        let want_h = ra::modulate(&want_xhat, &shift, &scale, tokens, dim);
        let (dxhat, dshift, dscale) = ra::modulate_backward(&want_xhat, &scale, &dh64, tokens, dim);
        let want_dx: Vec<f64> = ra::layer_norm_backward(&want_xhat, &want_rstd, &dxhat, dim)
            .iter()
            .zip(&dx0)
            .map(|(a, &b)| a + b as f64)
            .collect();
        let mut want_xr = x64.clone();
        ra::gated_residual(&mut want_xr, &a64, &gate, tokens, dim);
        let (want_da, dgate) = ra::gated_residual_backward(&dh64, &a64, &gate, tokens, dim);
        let what = format!("{want_path:?} S={samples} N={tokens} D={dim}");
        let (at, rt) = TOL;
        assert_close(
            &format!("{what} xhat"),
            &g.read(&xhat, n).unwrap(),
            &want_xhat,
            at,
            rt,
        );
        assert_close(
            &format!("{what} rstd"),
            &g.read(&rstd, rows).unwrap(),
            &want_rstd,
            at,
            rt,
        );
        assert_close(
            &format!("{what} h"),
            &g.read(&h, n).unwrap(),
            &want_h,
            at,
            rt,
        );
        assert_close(
            &format!("{what} dx"),
            &g.read(&dx, n).unwrap(),
            &want_dx,
            1e-4,
            1e-4,
        );
        assert_close(
            &format!("{what} x+gate·a"),
            &g.read(&xr, n).unwrap(),
            &want_xr,
            at,
            rt,
        );
        assert_close(
            &format!("{what} da"),
            &g.read(&da, n).unwrap(),
            &want_da,
            at,
            rt,
        );
        let got_mod = f64s(&g.read::<f32>(&dmod, samples * 6 * dim).unwrap());
        for (c, want) in [(0, &dshift), (1, &dscale), (2, &dgate)] {
            assert_close(
                &format!("{what} dmod chunk {c}"),
                &f32s(&chunk(&got_mod, samples, dim, c)),
                want,
                1e-4,
                1e-4,
            );
        }
        assert_close(
            &format!("{what} dbias"),
            &g.read(&dbias, dim).unwrap(),
            &ra::column_sums(&dh64, dim),
            1e-4,
            1e-4,
        );
    }
}

#[test]
fn adaln_reference_backward_matches_finite_differences() {
    let mut r = Rand::new(12);
    let (samples, tokens, dim) = (2, 3, 7);
    let n = samples * tokens * dim;
    let x = f64s(&r.vec(n, -2.0, 2.0));
    let a = f64s(&r.vec(n, -2.0, 2.0));
    let shift = f64s(&r.vec(samples * dim, -1.0, 1.0));
    let scale = f64s(&r.vec(samples * dim, -1.0, 1.0));
    let gate = f64s(&r.vec(samples * dim, -1.0, 1.0));
    let w = f64s(&r.vec(n, -1.0, 1.0));
    let h = |x: &[f64], shift: &[f64], scale: &[f64]| {
        let (xh, _) = ra::layer_norm(x, dim);
        ra::modulate(&xh, shift, scale, tokens, dim)
    };
    let (xhat, rstd) = ra::layer_norm(&x, dim);
    let (dxhat, dshift, dscale) = ra::modulate_backward(&xhat, &scale, &w, tokens, dim);
    let dx = ra::layer_norm_backward(&xhat, &rstd, &dxhat, dim);
    assert_fd("LN dx", &x, &dx, |v| dot(&w, &h(v, &shift, &scale)), 1e-6);
    assert_fd(
        "dshift",
        &shift,
        &dshift,
        |v| dot(&w, &h(&x, v, &scale)),
        1e-6,
    );
    assert_fd(
        "dscale",
        &scale,
        &dscale,
        |v| dot(&w, &h(&x, &shift, v)),
        1e-6,
    );
    let res = |x: &[f64], a: &[f64], gate: &[f64]| {
        let mut y = x.to_vec();
        ra::gated_residual(&mut y, a, gate, tokens, dim);
        y
    };
    let (da, dgate) = ra::gated_residual_backward(&w, &a, &gate, tokens, dim);
    assert_fd("da", &a, &da, |v| dot(&w, &res(&x, v, &gate)), 1e-6);
    assert_fd("dgate", &gate, &dgate, |v| dot(&w, &res(&x, &a, v)), 1e-6);
}

#[test]
fn adaln_bad_input_is_an_error() {
    let g = gpu();
    let dev = &g.device;
    let k = AdaLnKernels::new(dev).unwrap();
    let buf = g.zeros("buf", 4096);
    let m = Modulation {
        region: (&buf).into(),
        stride: 8,
        shift: 0,
        scale: 4,
        gate: 6,
    };
    let mut enc = g.encoder();
    let s = Stream {
        rows: 5,
        dim: 4,
        tokens: 2,
    };
    assert_refused(
        || {
            k.record_ln_modulate(
                dev,
                &mut enc,
                &LnModulateArgs {
                    stream: s,
                    x: (&buf).into(),
                    modulation: m,
                    h: (&buf).into(),
                    xhat: (&buf).into(),
                    rstd: (&buf).into(),
                },
            )
        },
        "multiple of tokens",
    );
    let s = Stream {
        rows: 4,
        dim: 4,
        tokens: 2,
    };
    assert_refused(
        || {
            k.record_gated_residual(
                dev,
                &mut enc,
                &GatedResidualArgs {
                    stream: s,
                    a: (&buf).into(),
                    modulation: m,
                    x: (&buf).into(),
                },
            )
        },
        "`gate` columns 6..10",
    );
    let small = g.zeros("small", 16);
    let m_ok = Modulation { gate: 0, ..m };
    assert_refused(
        || {
            k.record_ln_modulate(
                dev,
                &mut enc,
                &LnModulateArgs {
                    stream: s,
                    x: (&small).into(),
                    modulation: m_ok,
                    h: (&buf).into(),
                    xhat: (&buf).into(),
                    rstd: (&buf).into(),
                },
            )
        },
        "`x`",
    );
}
