// The matmul family's uniform and bindings, shared by the portable and the tiled kernels (one
// launcher binds both the same way).

struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    // Element (r, c) of A is a[r·a_row + c·a_col] (r < M, c < K); of B, b[r·b_row + c·b_col]
    // (r < K, c < N). C is dense row-major (M, N).
    a_row: u32,
    a_col: u32,
    b_row: u32,
    b_col: u32,
    // 1: add bias[c] to C(r, c).
    use_bias: u32,
    // 1: C += result (gradient accumulation); 0: C = result.
    accumulate: u32,
    groups_x: u32,
}

@group(0) @binding(0) var<uniform> P: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
