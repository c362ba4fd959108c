// adaLN family: the row operations of a DiT block around its linears.
//   ln_modulate_forward   h = LN(x)·(1 + scale[s]) + shift[s]        (LayerNorm without affine)
//   ln_modulate_backward  dx (+)= ∂/∂x of the above, given dh
//   gated_residual_forward   x += gate[s] ⊙ a
//   gated_residual_backward  da = gate[s] ⊙ dx
//   segment_sums          out[s, :] (+)= Σ_{rows of segment s} A[row, :] (⊙ B[row, :])
// The token stream is `rows` rows of `dim` values; row r belongs to sample s = r / tokens, whose
// modulation (shift, scale, gate) is a row of the (samples, mod_stride) output of the adaLN
// linear, at columns shift_col, scale_col, gate_col. One invocation per row (LayerNorm) or per
// value (the rest); sums run in a fixed order, so results are deterministic.

struct AdaParams {
    rows: u32,
    dim: u32,
    tokens: u32,
    mod_stride: u32,
    shift_col: u32,
    scale_col: u32,
    gate_col: u32,
    accumulate: u32,
    groups_x: u32,
    eps: f32,
    // segment_sums: A, B and out as (row stride, first column); `use_b` multiplies by B.
    a_stride: u32,
    a_col: u32,
    b_stride: u32,
    b_col: u32,
    out_stride: u32,
    out_col: u32,
    use_b: u32,
    segments: u32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> P: AdaParams;
// ln_modulate_forward: x. ln_modulate_backward: x̂ saved by the forward. gated_residual_*: a or
// dx. segment_sums: A.
@group(0) @binding(1) var<storage, read> input: array<f32>;
// The modulation rows (samples, mod_stride).
@group(0) @binding(2) var<storage, read> modv: array<f32>;
// ln_modulate_backward: dh. segment_sums: B.
@group(0) @binding(3) var<storage, read> aux: array<f32>;
// ln_modulate_forward: h. ln_modulate_backward: dx. gated_residual_forward: x.
// gated_residual_backward: da. segment_sums: out.
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
// ln_modulate_forward: x̂ (saved for the backward).
@group(0) @binding(5) var<storage, read_write> xhat: array<f32>;
// ln_modulate_*: 1/σ per row (written by the forward, read by the backward).
@group(0) @binding(6) var<storage, read_write> rstd: array<f32>;

fn invocation(wid: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.y * P.groups_x + wid.x) * 64u + lid.x;
}

fn put(i: u32, v: f32) {
    if (P.accumulate == 1u) {
        out[i] = out[i] + v;
    } else {
        out[i] = v;
    }
}

// Two passes over the row (mean, then the centred variance): as exact as f32 allows, unlike
// E[x²] − E[x]², which cancels for rows with a large mean.
@compute @workgroup_size(64)
fn ln_modulate_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = invocation(wid, lid);
    if (row >= P.rows) {
        return;
    }
    let base = row * P.dim;
    var sum = 0.0;
    for (var d = 0u; d < P.dim; d++) {
        sum += input[base + d];
    }
    let mean = sum / f32(P.dim);
    var sq = 0.0;
    for (var d = 0u; d < P.dim; d++) {
        let c = input[base + d] - mean;
        sq += c * c;
    }
    let r = inverseSqrt(sq / f32(P.dim) + P.eps);
    rstd[row] = r;
    let m = (row / P.tokens) * P.mod_stride;
    for (var d = 0u; d < P.dim; d++) {
        let xh = (input[base + d] - mean) * r;
        xhat[base + d] = xh;
        out[base + d] = xh * (1.0 + modv[m + P.scale_col + d]) + modv[m + P.shift_col + d];
    }
}

// With g = dh·(1 + scale): dx = rstd·(g − mean(g) − x̂·mean(g·x̂)).
@compute @workgroup_size(64)
fn ln_modulate_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = invocation(wid, lid);
    if (row >= P.rows) {
        return;
    }
    let base = row * P.dim;
    let m = (row / P.tokens) * P.mod_stride + P.scale_col;
    var sg = 0.0;
    var sgx = 0.0;
    for (var d = 0u; d < P.dim; d++) {
        let g = aux[base + d] * (1.0 + modv[m + d]);
        sg += g;
        sgx += g * input[base + d];
    }
    let mg = sg / f32(P.dim);
    let mgx = sgx / f32(P.dim);
    let r = rstd[row];
    for (var d = 0u; d < P.dim; d++) {
        let g = aux[base + d] * (1.0 + modv[m + d]);
        put(base + d, r * (g - mg - input[base + d] * mgx));
    }
}

@compute @workgroup_size(64)
fn gated_residual_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = invocation(wid, lid);
    if (i >= P.rows * P.dim) {
        return;
    }
    let row = i / P.dim;
    let d = i - row * P.dim;
    out[i] = out[i] + modv[(row / P.tokens) * P.mod_stride + P.gate_col + d] * input[i];
}

@compute @workgroup_size(64)
fn gated_residual_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = invocation(wid, lid);
    if (i >= P.rows * P.dim) {
        return;
    }
    let row = i / P.dim;
    let d = i - row * P.dim;
    put(i, modv[(row / P.tokens) * P.mod_stride + P.gate_col + d] * input[i]);
}

// One invocation per (segment, column): `tokens` rows per segment, `segments` segments.
// Bias gradients are one segment of all rows; d(shift), d(scale), d(gate) are one segment per
// sample (with B = x̂ for the scale, B = the gated branch for the gate).
@compute @workgroup_size(64)
fn segment_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = invocation(wid, lid);
    if (i >= P.segments * P.dim) {
        return;
    }
    let s = i / P.dim;
    let d = i - s * P.dim;
    var sum = 0.0;
    for (var n = 0u; n < P.tokens; n++) {
        let row = s * P.tokens + n;
        var v = input[row * P.a_stride + P.a_col + d];
        if (P.use_b == 1u) {
            v *= aux[row * P.b_stride + P.b_col + d];
        }
        sum += v;
    }
    put(s * P.out_stride + P.out_col + d, sum);
}
