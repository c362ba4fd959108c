//! The texture matmul's 16-lane kernels: llvmpipe runs 16-lane subgroups when
//! `LP_NATIVE_VECTOR_WIDTH=512` is set before the Vulkan instance is made, which this test
//! binary (its own process) does first. The same cases as the 8-lane path.

mod common;
use imba::kernels::{MatmulKernels, MatmulPath};

#[test]
fn sixteen_lane_matmul_matches_reference_every_layout() {
    std::env::set_var("LP_NATIVE_VECTOR_WIDTH", "512");
    let g = common::gpu();
    let path = MatmulKernels::new(&g.device)
        .unwrap()
        .path(&g.device, 64, 64, 64);
    if path != MatmulPath::Texture16 {
        common::skip(
            "sixteen_lane_matmul_matches_reference_every_layout",
            &format!("the adapter does not run 16-lane subgroups here (path {path:?})"),
        );
        return;
    }
    common::matmul_check::texture_path_cases(g);
}
