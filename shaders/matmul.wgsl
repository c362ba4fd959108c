// Matmul family, portable kernel: C = op(A)·op(B) (+ bias) (+ C), the linear layer's forward
// (X·Wᵀ + b) and both of its weight-side backward products (dY·W, dYᵀ·X) through strides.
// One invocation per output element, K walked in order: the fallback on every adapter and the
// reference the faster, adapter-shaped kernels are tested against. (docs/design.md#what-is-fast-where: on llvmpipe
// shared-memory tiling does not pay, so this kernel does not tile either.)

//!include matmul_bindings.wgsl

@compute @workgroup_size(64)
fn matmul_portable(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.y * P.groups_x + wid.x) * 64u + lid.x;
    if (i >= P.m * P.n) {
        return;
    }
    let r = i / P.n;
    let col = i % P.n;
    var s = 0.0;
    for (var kk = 0u; kk < P.k; kk = kk + 1u) {
        s = s + a[r * P.a_row + kk * P.a_col] * b[kk * P.b_row + col * P.b_col];
    }
    if (P.use_bias == 1u) {
        s = s + bias[col];
    }
    if (P.accumulate == 1u) {
        s = s + c[i];
    }
    c[i] = s;
}
