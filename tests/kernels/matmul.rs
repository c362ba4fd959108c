//! The portable matmul against the f64 reference: every operand layout, bias and
//! accumulation, odd sizes, NaN-poisoned outputs; bad input.

use crate::common;
use common::matmul_check::{check_every_layout, texture_path_cases};
use common::{assert_error_mentions, gpu};
use imba::kernels::{Layout, MatmulArgs, MatmulKernels, MatmulPath};

#[test]
fn portable_matmul_matches_reference_every_layout() {
    let g = gpu();
    let kernels = MatmulKernels::new(&g.device).unwrap().with_fast_path(false);
    assert_eq!(kernels.path(&g.device, 64, 64), MatmulPath::Portable);
    check_every_layout(
        g,
        &kernels,
        &[(1, 1, 1), (7, 5, 3), (13, 33, 17), (65, 9, 70)],
    );
}

#[test]
fn fast_matmul_matches_reference_every_layout() {
    let g = gpu();
    let kernels = MatmulKernels::new(&g.device).unwrap();
    if kernels.path(&g.device, 64, 64) == MatmulPath::Portable {
        common::skip(
            "fast_matmul_matches_reference_every_layout",
            "the adapter is not a CPU adapter with 8- or 16-lane subgroups, so the texture \
             path does not run here",
        );
        return;
    }
    texture_path_cases(g);
}

#[test]
fn bad_matmul_inputs_are_errors() {
    let g = gpu();
    let dev = &g.device;
    let kernels = MatmulKernels::new(dev).unwrap();
    let small = g.zeros("small", 16);
    let big = g.zeros("big", 4096);
    fn args<'a>(
        m: u32,
        k: u32,
        n: u32,
        a: &'a wgpu::Buffer,
        c: &'a wgpu::Buffer,
    ) -> MatmulArgs<'a> {
        MatmulArgs {
            m,
            k,
            n,
            a: a.into(),
            a_layout: Layout::RowMajor,
            b: a.into(),
            b_layout: Layout::RowMajor,
            bias: None,
            c: c.into(),
            accumulate: false,
        }
    }
    let mut enc = g.encoder();
    assert_error_mentions(
        kernels.record(dev, &mut enc, &args(0, 4, 4, &big, &big)),
        "zero size",
    );
    assert_error_mentions(
        kernels.record(dev, &mut enc, &args(8, 8, 8, &small, &big)),
        "`a`",
    );
    assert_error_mentions(
        kernels.record(dev, &mut enc, &args(8, 8, 8, &big, &small)),
        "`c`",
    );
    // A view whose offset breaks the device's alignment, and one running past the buffer.
    let mut misaligned = args(4, 4, 4, &big, &big);
    misaligned.b = imba::kernels::Region::new(&big, 4);
    assert_error_mentions(kernels.record(dev, &mut enc, &misaligned), "alignment");
    let mut past_end = args(4, 4, 4, &big, &big);
    past_end.b = imba::kernels::Region::new(&big, 4096);
    assert_error_mentions(kernels.record(dev, &mut enc, &past_end), "`b`");
}
