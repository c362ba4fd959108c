//! The deterministic multi-pass sum against an f64 sum, at sizes around the chunk boundaries.

use crate::common;
use common::{assert_refused, gpu, Rand};
use imba::kernels::ReduceArgs;
use imba::kernels::{reduce::CHUNK, ReduceKernel};

fn gpu_sum(data: &[f32], width: u32) -> [f32; 4] {
    let g = gpu();
    let k = ReduceKernel::new(&g.device).unwrap();
    let items = (data.len() / width as usize) as u32;
    let input = g.upload("in", data);
    let bytes = ReduceKernel::scratch_bytes(items);
    let scratch = [g.zeros("s0", bytes), g.zeros("s1", bytes)];
    let out = g.poisoned("out", 4);
    let mut enc = g.encoder();
    k.record(
        &g.device,
        &mut enc,
        &ReduceArgs {
            input: (&input).into(),
            items,
            width,
            scratch: [(&scratch[0]).into(), (&scratch[1]).into()],
            out: (&out).into(),
        },
    )
    .unwrap();
    g.submit_and_wait(enc).unwrap();
    let v: Vec<f32> = g.read(&out, 4).unwrap();
    [v[0], v[1], v[2], v[3]]
}

#[test]
fn sums_match_f64_at_odd_sizes() {
    let mut r = Rand::new(21);
    for items in [
        1u32,
        63,
        CHUNK - 1,
        CHUNK,
        CHUNK + 1,
        3 * CHUNK + 7,
        CHUNK * CHUNK + 5,
    ] {
        for width in [1u32, 4] {
            let data = r.vec((items * width) as usize, -1.0, 1.0);
            let got = gpu_sum(&data, width);
            for (c, &sum) in got.iter().enumerate().take(width as usize) {
                let want: f64 = data
                    .iter()
                    .skip(c)
                    .step_by(width as usize)
                    .map(|&x| x as f64)
                    .sum();
                let scale: f64 = data
                    .iter()
                    .skip(c)
                    .step_by(width as usize)
                    .map(|&x| x.abs() as f64)
                    .sum();
                let what = format!("items {items} width {width} comp {c}");
                imba::capture::expect(&what, &[sum], &[want], 1e-6 * scale + 1e-7, 0.0);
                assert!(
                    (sum as f64 - want).abs() <= 1e-6 * scale + 1e-7,
                    "items {items} width {width} comp {c}: {sum} vs {want}"
                );
            }
            for (c, &sum) in got.iter().enumerate().skip(width as usize) {
                assert_eq!(sum, 0.0, "unused component {c} must be 0");
            }
        }
    }
}

#[test]
fn sums_are_deterministic() {
    let data = Rand::new(22).vec(300_001, -1.0, 1.0);
    let a = gpu_sum(&data, 1);
    let b = gpu_sum(&data, 1);
    assert_eq!(a[0].to_bits(), b[0].to_bits());
}

#[test]
fn bad_reduce_inputs_are_errors() {
    let g = gpu();
    let k = ReduceKernel::new(&g.device).unwrap();
    let b = g.zeros("b", 64);
    let mut enc = g.encoder();
    for (items, width, needle) in [(0, 1, "0 items"), (4, 3, "width"), (1000, 1, "`input`")] {
        assert_refused(
            || {
                k.record(
                    &g.device,
                    &mut enc,
                    &ReduceArgs {
                        input: (&b).into(),
                        items,
                        width,
                        scratch: [(&b).into(), (&b).into()],
                        out: (&b).into(),
                    },
                )
            },
            needle,
        );
    }
}
