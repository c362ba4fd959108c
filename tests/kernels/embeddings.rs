//! The embedding kernels (tokens + position with repeats, the fold of repeats, condition =
//! t_emb + Σ label rows, the deterministic label backward) against the f64 reference at odd
//! sizes with poisoned outputs; the reference embeddings against DiT's definitions; the label
//! backward against finite differences; bad input.

use crate::common;
use common::*;
use imba::kernels::{ConditionArgs, FoldArgs, LabelBackwardArgs, TokensArgs, Write};
use imba::kernels::{EmbedKernels, Labels, NO_LABEL};
use imba::reference::embed as re;

#[test]
fn embedding_kernels_match_reference() {
    let g = gpu();
    let dev = &g.device;
    let k = EmbedKernels::new(dev).unwrap();
    let mut r = Rand::new(31);
    for (batch, tokens, dim, slots, table_rows) in [
        (1u32, 1u32, 1u32, 1u32, 1u32),
        (3, 5, 37, 2, 4),
        (5, 9, 24, 3, 11),
    ] {
        let len = (batch * tokens * dim) as usize;
        let patch = r.vec(len, -1.0, 1.0);
        let pos = r.vec((tokens * dim) as usize, -1.0, 1.0);
        let rows = 2 * batch as usize;
        let t_emb = r.vec((batch * dim) as usize, -1.0, 1.0);
        let table = r.vec((table_rows * dim) as usize, -1.0, 1.0);
        // Labels: random rows, some empty slots, and the second half all the null row.
        let labels: Vec<u32> = (0..rows * slots as usize)
            .map(|i| {
                if i >= batch as usize * slots as usize {
                    if i % slots as usize == 0 {
                        table_rows - 1
                    } else {
                        NO_LABEL
                    }
                } else if r.below(4) == 0 {
                    NO_LABEL
                } else {
                    r.below(table_rows)
                }
            })
            .collect();
        let dc = r.vec(rows * dim as usize, -1.0, 1.0);
        let dt0 = r.vec((table_rows * dim) as usize, -1.0, 1.0);
        let (pb, posb, tb, tabb, lb, dcb) = (
            g.upload("patch", &patch),
            g.upload("pos", &pos),
            g.upload("t_emb", &t_emb),
            g.upload("table", &table),
            g.upload("labels", &labels),
            g.upload("dc", &dc),
        );
        let x = g.poisoned("x", 2 * len);
        let fold = g.poisoned("fold", len);
        let c = g.poisoned("c", rows * dim as usize);
        let dt = g.upload("dtable", &dt0);
        let l = Labels {
            buffer: (&lb).into(),
            rows: rows as u32,
            slots,
        };
        let mut enc = g.encoder();
        k.record_tokens(
            dev,
            &mut enc,
            &TokensArgs {
                len: len as u32,
                period: tokens * dim,
                repeats: 2,
                patch: (&pb).into(),
                pos: (&posb).into(),
                x: (&x).into(),
            },
        )
        .unwrap();
        k.record_fold_repeats(
            dev,
            &mut enc,
            &FoldArgs {
                len: len as u32,
                repeats: 2,
                x: (&x).into(),
                out: (&fold).into(),
                write: Write::Overwrite,
            },
        )
        .unwrap();
        k.record_condition(
            dev,
            &mut enc,
            &ConditionArgs {
                batch,
                dim,
                table_rows,
                t_emb: (&tb).into(),
                table: (&tabb).into(),
                labels: l,
                c: (&c).into(),
            },
        )
        .unwrap();
        k.record_label_backward(
            dev,
            &mut enc,
            &LabelBackwardArgs {
                dim,
                table_rows,
                dc: (&dcb).into(),
                labels: l,
                dtable: (&dt).into(),
                write: Write::Accumulate,
            },
        )
        .unwrap();
        g.submit_and_wait(enc).unwrap();

        let pd = tokens as usize * dim as usize;
        let want_x: Vec<f64> = (0..2 * len)
            .map(|i| patch[i % len] as f64 + pos[(i % len) % pd] as f64)
            .collect();
        let what = format!("B={batch} N={tokens} D={dim} slots={slots}");
        assert_close(
            &format!("{what} x"),
            &g.read(&x, 2 * len).unwrap(),
            &want_x,
            1e-6,
            1e-6,
        );
        assert_close(
            &format!("{what} fold"),
            &g.read(&fold, len).unwrap(),
            &re::fold_repeats(&want_x, len),
            1e-6,
            1e-6,
        );
        let want_c = re::condition(
            &f64s(&t_emb),
            &f64s(&table),
            &labels,
            slots as usize,
            dim as usize,
        );
        assert_close(
            &format!("{what} c"),
            &g.read(&c, rows * dim as usize).unwrap(),
            &want_c,
            1e-6,
            1e-6,
        );
        let want_dt: Vec<f64> = re::label_backward(
            &f64s(&dc),
            &labels,
            slots as usize,
            table_rows as usize,
            dim as usize,
        )
        .iter()
        .zip(&dt0)
        .map(|(a, &b)| a + b as f64)
        .collect();
        assert_close(
            &format!("{what} dtable"),
            &g.read(&dt, want_dt.len()).unwrap(),
            &want_dt,
            1e-5,
            1e-5,
        );
    }
}

/// DiT's definitions, spot-checked by hand: the timestep features are [cos, sin] with
/// f_0 = 1 and f_127 = 10⁴^(−127/128); the position embedding's first half encodes the column.
#[test]
fn reference_embeddings_follow_dit() {
    let f = re::timestep_features(&[0.0, 999.0]);
    assert_eq!(f.len(), 512);
    assert_eq!(f[0], 1.0); // cos(0)
    assert_eq!(f[128], 0.0); // sin(0)
    assert!((f[256] - 999f64.cos()).abs() < 1e-15);
    assert!((f[256 + 128] - 999f64.sin()).abs() < 1e-15);
    let f127 = 10_000f64.powf(-127.0 / 128.0);
    assert!((f[256 + 127] - (999.0 * f127).cos()).abs() < 1e-12);
    let (dim, gh, gw) = (8, 2, 3);
    let p = re::pos_embed_2d(dim, gh, gw);
    assert_eq!(p.len(), gh * gw * dim);
    // Token (row 1, col 2) = index 5: [sin(2ω), cos(2ω)] then [sin(1ω), cos(1ω)], ω = (1, 1/100).
    let t = &p[5 * dim..6 * dim];
    let want = [
        2f64.sin(),
        0.02f64.sin(),
        2f64.cos(),
        0.02f64.cos(),
        1f64.sin(),
        0.01f64.sin(),
        1f64.cos(),
        0.01f64.cos(),
    ];
    for (a, b) in t.iter().zip(want) {
        assert!((a - b).abs() < 1e-15, "{t:?} vs {want:?}");
    }
}

#[test]
fn label_backward_matches_finite_differences() {
    let mut r = Rand::new(32);
    let (dim, table_rows, slots) = (5, 4, 2);
    let labels = [0u32, 3, 2, NO_LABEL, 3, 3, 1, 0];
    let t_emb = f64s(&r.vec(2 * dim, -1.0, 1.0));
    let table = f64s(&r.vec(table_rows * dim, -1.0, 1.0));
    let w = f64s(&r.vec(4 * dim, -1.0, 1.0));
    let grad = re::label_backward(&w, &labels, slots, table_rows, dim);
    assert_fd(
        "dtable",
        &table,
        &grad,
        |t| dot(&w, &re::condition(&t_emb, t, &labels, slots, dim)),
        1e-6,
    );
}

#[test]
fn embedding_bad_input_is_an_error() {
    let g = gpu();
    let dev = &g.device;
    let k = EmbedKernels::new(dev).unwrap();
    let buf = g.zeros("buf", 1024);
    let mut enc = g.encoder();
    assert_refused(
        || {
            k.record_tokens(
                dev,
                &mut enc,
                &TokensArgs {
                    len: 10,
                    period: 4,
                    repeats: 2,
                    patch: (&buf).into(),
                    pos: (&buf).into(),
                    x: (&buf).into(),
                },
            )
        },
        "period divide",
    );
    let l = Labels {
        buffer: (&buf).into(),
        rows: 4,
        slots: 0,
    };
    assert_refused(
        || {
            k.record_condition(
                dev,
                &mut enc,
                &ConditionArgs {
                    batch: 2,
                    dim: 8,
                    table_rows: 3,
                    t_emb: (&buf).into(),
                    table: (&buf).into(),
                    labels: l,
                    c: (&buf).into(),
                },
            )
        },
        "non-zero",
    );
    let l = Labels {
        buffer: (&buf).into(),
        rows: 64,
        slots: 1,
    };
    assert_refused(
        || {
            k.record_condition(
                dev,
                &mut enc,
                &ConditionArgs {
                    batch: 2,
                    dim: 8,
                    table_rows: 3,
                    t_emb: (&buf).into(),
                    table: (&buf).into(),
                    labels: l,
                    c: (&buf).into(),
                },
            )
        },
        "`c`",
    );
}
