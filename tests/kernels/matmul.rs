//! The portable matmul against the f64 reference: every operand layout, bias and
//! accumulation, odd sizes, NaN-poisoned outputs; bad input.

use crate::common;
use common::matmul_check::{check_every_layout, texture_path_cases};
use common::{assert_refused, gpu};
use imba::kernels::{Layout, MatmulArgs, MatmulKernels, MatmulPath, Paths, Tile};

#[test]
fn portable_matmul_matches_reference_every_layout() {
    let g = gpu();
    let kernels = MatmulKernels::new(&g.device).unwrap().with_fast_path(false);
    assert_eq!(kernels.path(&g.device, 64, 64, 64), MatmulPath::Portable);
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
    if kernels.path(&g.device, 64, 64, 64) == MatmulPath::Portable {
        common::skip(
            "fast_matmul_matches_reference_every_layout",
            "the adapter is not a CPU adapter with 8- or 16-lane subgroups, so the texture \
             path does not run here",
        );
        return;
    }
    texture_path_cases(g);
}

/// The GPU kernel, forced onto whatever adapter runs the tests: both blockings at sizes
/// below, at and past each tile edge (M, N around 64 and 128; K around the K-steps 16 and 8),
/// every layout, bias and accumulation.
#[test]
fn tiled_matmul_matches_reference_every_layout() {
    let g = gpu();
    let dev = &g.device;
    type Sizes = &'static [(usize, usize, usize)];
    let cases: [(Tile, Sizes); 2] = [
        (
            Tile::SMALL,
            &[
                (1, 1, 1),
                (63, 15, 65),
                (64, 16, 64),
                (65, 17, 63),
                (130, 33, 129),
            ],
        ),
        (
            Tile::LARGE,
            &[(1, 1, 1), (127, 7, 129), (128, 8, 128), (129, 9, 257)],
        ),
    ];
    for (tile, sizes) in cases {
        let kernels = MatmulKernels::with_paths(dev, Paths::Tiled)
            .unwrap()
            .with_tile(tile);
        assert_eq!(kernels.path(dev, 64, 64, 64), MatmulPath::Tiled(tile));
        check_every_layout(g, &kernels, sizes);
    }
}

/// Without a forced tile, small products take the small blocking and products with enough
/// 128×128 blocks to fill a large GPU take the large one.
#[test]
fn tiled_matmul_chooses_its_blocking_by_size() {
    let g = gpu();
    let dev = &g.device;
    let kernels = MatmulKernels::with_paths(dev, Paths::Tiled).unwrap();
    assert_eq!(
        kernels.path(dev, 256, 64, 384),
        MatmulPath::Tiled(Tile::SMALL)
    );
    assert_eq!(
        kernels.path(dev, 4096, 4096, 4096),
        MatmulPath::Tiled(Tile::LARGE)
    );
    assert!((Tile::LARGE.bytes_per_flop() - 1.0 / 32.0).abs() < 1e-12);
    assert!((Tile::SMALL.bytes_per_flop() - 1.0 / 16.0).abs() < 1e-12);
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
    assert_refused(
        || kernels.record(dev, &mut enc, &args(0, 4, 4, &big, &big)),
        "zero size",
    );
    assert_refused(
        || kernels.record(dev, &mut enc, &args(8, 8, 8, &small, &big)),
        "`a`",
    );
    assert_refused(
        || kernels.record(dev, &mut enc, &args(8, 8, 8, &big, &small)),
        "`c`",
    );
    // A view whose offset breaks the device's alignment, and one running past the buffer.
    let mut misaligned = args(4, 4, 4, &big, &big);
    misaligned.b = imba::kernels::Region::new(&big, 4);
    assert_refused(|| kernels.record(dev, &mut enc, &misaligned), "alignment");
    let mut past_end = args(4, 4, 4, &big, &big);
    past_end.b = imba::kernels::Region::new(&big, 4096);
    assert_refused(|| kernels.record(dev, &mut enc, &past_end), "`b`");
}
