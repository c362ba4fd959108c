// Matmul family, tiled kernel for hardware GPUs: C = op(A)·op(B) (+ bias) (+ C), with the
// same operands, strides and flags as the portable kernel (shaders/matmul.wgsl).
//
// One workgroup computes a TILE_M × TILE_N block of C. It walks K in steps of TILE_K: all
// invocations stage the step's TILE_M × TILE_K slice of A and TILE_K × TILE_N slice of B in
// workgroup memory, then each invocation multiplies its THREAD_M × THREAD_N register tile
// out of it, so every value loaded from global memory is used TILE_N (or TILE_M) times.
//
// Loads are coalesced for every layout: the stager walks each operand along the index that
// is contiguous in memory (K for a row-major A, M for a transposed one; N for a row-major B,
// K for a transposed one), so neighbouring invocations read neighbouring addresses, and
// stores it K-major in workgroup memory. An invocation owns rows lid.y + i·LANES_M and
// columns lid.x + j·LANES_N of the block (interleaved, not contiguous), so its reads of the
// staged B row and its writes of C are consecutive across neighbouring invocations.
//
// Out-of-range elements are staged as zeros, so any M, N, K works; only in-range C is
// written. The tile sizes are pipeline-overridable constants: the launcher picks them from
// the adapter's limits and the product's size.

override TILE_M: u32 = 64u;
override TILE_N: u32 = 64u;
override TILE_K: u32 = 16u;
// THREAD_M, THREAD_N ≤ 8.
override THREAD_M: u32 = 4u;
override THREAD_N: u32 = 4u;
override LANES_M: u32 = TILE_M / THREAD_M;
override LANES_N: u32 = TILE_N / THREAD_N;

//!include matmul_bindings.wgsl

// Staged slices, K-major: tile_a[kk·TILE_M + r], tile_b[kk·TILE_N + col].
var<workgroup> tile_a: array<f32, TILE_M * TILE_K>;
var<workgroup> tile_b: array<f32, TILE_K * TILE_N>;

// A(row0 + r, k0 + kk) for each staged element, zero outside A.
fn stage_a(row0: u32, k0: u32, first: u32, lanes: u32) {
    let k_contiguous = P.a_col == 1u;
    for (var e = first; e < TILE_M * TILE_K; e += lanes) {
        var r = e / TILE_K;
        var kk = e % TILE_K;
        if (!k_contiguous) {
            r = e % TILE_M;
            kk = e / TILE_M;
        }
        let gr = row0 + r;
        let gk = k0 + kk;
        var v = 0.0;
        if (gr < P.m && gk < P.k) {
            v = a[gr * P.a_row + gk * P.a_col];
        }
        tile_a[kk * TILE_M + r] = v;
    }
}

// B(k0 + kk, col0 + col) for each staged element, zero outside B.
fn stage_b(k0: u32, col0: u32, first: u32, lanes: u32) {
    let n_contiguous = P.b_col == 1u;
    for (var e = first; e < TILE_K * TILE_N; e += lanes) {
        var kk = e / TILE_N;
        var col = e % TILE_N;
        if (!n_contiguous) {
            kk = e % TILE_K;
            col = e / TILE_K;
        }
        let gk = k0 + kk;
        let gc = col0 + col;
        var v = 0.0;
        if (gk < P.k && gc < P.n) {
            v = b[gk * P.b_row + gc * P.b_col];
        }
        tile_b[kk * TILE_N + col] = v;
    }
}

@compute @workgroup_size(LANES_N, LANES_M)
fn matmul_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row0 = wid.y * TILE_M;
    let col0 = wid.x * TILE_N;
    let lanes = LANES_M * LANES_N;
    var acc: array<f32, 64>;
    var av: array<f32, 8>;
    var bv: array<f32, 8>;
    for (var k0 = 0u; k0 < P.k; k0 += TILE_K) {
        stage_a(row0, k0, li, lanes);
        stage_b(k0, col0, li, lanes);
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            for (var i = 0u; i < THREAD_M; i++) {
                av[i] = tile_a[kk * TILE_M + lid.y + i * LANES_M];
            }
            for (var j = 0u; j < THREAD_N; j++) {
                bv[j] = tile_b[kk * TILE_N + lid.x + j * LANES_N];
            }
            for (var i = 0u; i < THREAD_M; i++) {
                for (var j = 0u; j < THREAD_N; j++) {
                    acc[i * THREAD_N + j] += av[i] * bv[j];
                }
            }
        }
        // Nobody restages until everyone has read this step's tiles.
        workgroupBarrier();
    }
    for (var i = 0u; i < THREAD_M; i++) {
        let r = row0 + lid.y + i * LANES_M;
        for (var j = 0u; j < THREAD_N; j++) {
            let col = col0 + lid.x + j * LANES_N;
            if (r < P.m && col < P.n) {
                var s = acc[i * THREAD_N + j];
                if (P.use_bias == 1u) {
                    s += bias[col];
                }
                if (P.accumulate == 1u) {
                    s += c[r * P.n + col];
                }
                c[r * P.n + col] = s;
            }
        }
    }
}
