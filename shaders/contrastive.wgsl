// Contrastive family: CCUA's unconditional contrastive loss (docs/design.md#ccua) on B feature rows
// h_i of F values (the flattened output of one DiT block for the ∅ rows):
//   ĥ_i = h_i / max(‖h_i‖, 1e-12),  cos_ij = ĥ_i·ĥ_j,  e_ij = exp((cos_ij − 1)/τ)
//   UCL_i = log(1 + Σ_{j≠i} e_ij),   L = (scale/B)·Σ_i w_i·UCL_i   (w_i = t_i/T)
//
//   gram          G_ij = h_i·h_j, one workgroup per (i, j), fixed-order tree sum. h_i·h_j and
//                 h_j·h_i are the same products added in the same order, so G is exactly
//                 symmetric.
//   ucl           one workgroup: A_ij = ∂L/∂cos_ij through UCL_i (0 on the diagonal), and
//                 scalars[0] = (1/B)·Σ w_i·UCL_i (without `scale`)
//   ucl_backward  one invocation per value: with S = A + Aᵀ (cos_ij sits in UCL_i and UCL_j),
//                 ∂L/∂ĥ_i = Σ_j S_ij ĥ_j, and through the normalisation
//                 ∂L/∂h_i = (Σ_j S_ij ĥ_j − ĥ_i·Σ_j S_ij cos_ij)/‖h_i‖ — ĥ_i·∂L/∂ĥ_i is
//                 Σ_j S_ij cos_ij, so no second reduction over F is needed.
// B is a training batch (tens of rows), so the B×B matrices are tiny; the cost is reading
// the features B times in `gram`, which is what a GEMM of B×F by F×B costs as well.
//!include tree_sum.wgsl

struct ContrastiveParams {
    batch: u32,
    features: u32,
    // Index of h_0's first value in `feats`, and of the first gradient value in `grad`.
    base: u32,
    out_base: u32,
    tau: f32,
    scale: f32,
    accumulate: u32,
    groups_x: u32,
}

@group(0) @binding(0) var<uniform> P: ContrastiveParams;
@group(0) @binding(1) var<storage, read> feats: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> gram: array<f32>;
@group(0) @binding(4) var<storage, read_write> coef: array<f32>;
@group(0) @binding(5) var<storage, read_write> grad: array<f32>;
@group(0) @binding(6) var<storage, read_write> scalars: array<f32>;

const NORM_EPS: f32 = 1e-12;

// log(1 + s) without the cancellation of 1 + s for small s (WGSL has no log1p). Nearly
// orthogonal features give s ≈ B·e^(−1/τ) ≈ 1e-4, where log(1 + s) in f32 keeps only a few
// digits; below 1e-2 four terms of the series are exact to f32 (the next is s⁵/5 < 2e-11),
// and above it log(1 + s) loses at most ~1e-5 relative.
// (The rounding-correction trick log(u)·s/(u − 1) is not used: a fast-math compiler may fold
// u − 1 back into s.)
fn log1p(s: f32) -> f32 {
    if (s < 1e-2) {
        return s * (1.0 - s * (0.5 - s * (1.0 / 3.0 - 0.25 * s)));
    }
    return log(1.0 + s);
}

fn norm_of(i: u32) -> f32 {
    return max(sqrt(gram[i * P.batch + i]), NORM_EPS);
}

fn cosine(i: u32, j: u32) -> f32 {
    return gram[i * P.batch + j] / (norm_of(i) * norm_of(j));
}

@compute @workgroup_size(64)
fn gram_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let pair = wid.y * P.groups_x + wid.x;
    let i = pair / P.batch;
    let j = pair % P.batch;
    var s = 0.0;
    if (i < P.batch) {
        let a = P.base + i * P.features;
        let b = P.base + j * P.features;
        for (var f = lid.x; f < P.features; f = f + 64u) {
            s = s + feats[a + f] * feats[b + f];
        }
    }
    let total = tree_sum(lid.x, vec4<f32>(s, 0.0, 0.0, 0.0));
    if (lid.x == 0u && i < P.batch) {
        gram[pair] = total.x;
    }
}

@compute @workgroup_size(64)
fn ucl(@builtin(local_invocation_id) lid: vec3<u32>) {
    let n = P.batch;
    var loss = 0.0;
    for (var i = lid.x; i < n; i = i + 64u) {
        var s = 0.0;
        for (var j = 0u; j < n; j = j + 1u) {
            if (j != i) {
                s = s + exp((cosine(i, j) - 1.0) / P.tau);
            }
        }
        let w = weight[i];
        loss = loss + w * log1p(s);
        let c = P.scale * w / ((1.0 + s) * P.tau * f32(n));
        for (var j = 0u; j < n; j = j + 1u) {
            var a = 0.0;
            if (j != i) {
                a = c * exp((cosine(i, j) - 1.0) / P.tau);
            }
            coef[i * n + j] = a;
        }
    }
    let total = tree_sum(lid.x, vec4<f32>(loss, 0.0, 0.0, 0.0));
    if (lid.x == 0u) {
        scalars[0] = total.x / f32(n);
    }
}

@compute @workgroup_size(64)
fn ucl_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = (wid.y * P.groups_x + wid.x) * 64u + lid.x;
    let n = P.batch;
    if (idx >= n * P.features) {
        return;
    }
    let i = idx / P.features;
    let f = idx % P.features;
    let norm_i = norm_of(i);
    var pull = 0.0;
    var radial = 0.0;
    for (var j = 0u; j < n; j = j + 1u) {
        let s = coef[i * n + j] + coef[j * n + i];
        pull = pull + s * feats[P.base + j * P.features + f] / norm_of(j);
        radial = radial + s * cosine(i, j);
    }
    let hhat = feats[P.base + idx] / norm_i;
    var g = (pull - hhat * radial) / norm_i;
    let o = P.out_base + idx;
    if (P.accumulate == 1u) {
        g = grad[o] + g;
    }
    grad[o] = g;
}
