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
    // segment_partials / segment_combine: rows per chunk, chunks per segment.
    chunk_rows: u32,
    chunks: u32,
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

//!include grid64.wgsl

//!include put.wgsl

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

// A(row, d), times B(row, d) where `use_b`: one term of a column sum.
fn segment_term(row: u32, d: u32) -> f32 {
    var v = input[row * P.a_stride + P.a_col + d];
    if (P.use_b == 1u) {
        v *= aux[row * P.b_stride + P.b_col + d];
    }
    return v;
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
        sum += segment_term(s * P.tokens + n, d);
    }
    put(s * P.out_stride + P.out_col + d, sum);
}

// ---- Texture path (CPU adapters, i.e. llvmpipe) ----
// The same operations reading their operands from read-only storage textures, which the
// launcher fills by copies from the bindings' regions (`src/kernels/linear_texture.rs`): texel
// L holds values 4L..4L+3 at (L mod 4096, L / 4096). llvmpipe compiles the storage-buffer
// loads above into per-lane loops (~25 CPU cycles a value); a texel load brings four values
// without a branch. Needs dim and every texture operand's row stride and first column to be
// multiples of 4 (the launcher checks), so that each row's values start at a texel. The
// outputs stay storage buffers. Sums run in the same order as above.
// ln_modulate_*_tex: x (forward) or x̂ (backward). segment_sums_tex: A.
@group(0) @binding(7) var tex_input: texture_storage_2d<rgba32float, read>;
// The modulation rows.
@group(0) @binding(8) var tex_mod: texture_storage_2d<rgba32float, read>;
// ln_modulate_backward_tex: dh. segment_sums_tex: B.
@group(0) @binding(9) var tex_aux: texture_storage_2d<rgba32float, read>;

fn at(l: u32) -> vec2<u32> {
    return vec2<u32>(l & 4095u, l >> 12u);
}

fn hsum(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

fn put4(i: u32, v: vec4<f32>) {
    put(i, v.x);
    put(i + 1u, v.y);
    put(i + 2u, v.z);
    put(i + 3u, v.w);
}

@compute @workgroup_size(64)
fn ln_modulate_forward_tex(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = invocation(wid, lid);
    if (row >= P.rows) {
        return;
    }
    let d4 = P.dim / 4u;
    let base = row * d4;
    var sum = 0.0;
    for (var j = 0u; j < d4; j++) {
        sum += hsum(textureLoad(tex_input, at(base + j)));
    }
    let mean = sum / f32(P.dim);
    var sq = 0.0;
    for (var j = 0u; j < d4; j++) {
        let c = textureLoad(tex_input, at(base + j)) - mean;
        sq += dot(c, c);
    }
    let r = inverseSqrt(sq / f32(P.dim) + P.eps);
    rstd[row] = r;
    let m = (row / P.tokens) * P.mod_stride;
    let scale = (m + P.scale_col) / 4u;
    let shift = (m + P.shift_col) / 4u;
    for (var j = 0u; j < d4; j++) {
        let xh = (textureLoad(tex_input, at(base + j)) - mean) * r;
        let h = xh * (1.0 + textureLoad(tex_mod, at(scale + j))) + textureLoad(tex_mod, at(shift + j));
        let i = 4u * (base + j);
        xhat[i] = xh.x;
        xhat[i + 1u] = xh.y;
        xhat[i + 2u] = xh.z;
        xhat[i + 3u] = xh.w;
        out[i] = h.x;
        out[i + 1u] = h.y;
        out[i + 2u] = h.z;
        out[i + 3u] = h.w;
    }
}

@compute @workgroup_size(64)
fn ln_modulate_backward_tex(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = invocation(wid, lid);
    if (row >= P.rows) {
        return;
    }
    let d4 = P.dim / 4u;
    let base = row * d4;
    let scale = ((row / P.tokens) * P.mod_stride + P.scale_col) / 4u;
    var sg = 0.0;
    var sgx = 0.0;
    for (var j = 0u; j < d4; j++) {
        let g = textureLoad(tex_aux, at(base + j)) * (1.0 + textureLoad(tex_mod, at(scale + j)));
        sg += hsum(g);
        sgx += hsum(g * textureLoad(tex_input, at(base + j)));
    }
    let mg = sg / f32(P.dim);
    let mgx = sgx / f32(P.dim);
    let r = rstd[row];
    for (var j = 0u; j < d4; j++) {
        let g = textureLoad(tex_aux, at(base + j)) * (1.0 + textureLoad(tex_mod, at(scale + j)));
        put4(4u * (base + j), r * (g - mg - textureLoad(tex_input, at(base + j)) * mgx));
    }
}

// One invocation per (segment, texel column): four columns summed at once.
@compute @workgroup_size(64)
fn segment_sums_tex(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = invocation(wid, lid);
    let d4 = P.dim / 4u;
    if (i >= P.segments * d4) {
        return;
    }
    let s = i / d4;
    let j = i - s * d4;
    var sum = vec4<f32>(0.0);
    for (var n = 0u; n < P.tokens; n++) {
        let row = s * P.tokens + n;
        var v = textureLoad(tex_input, at((row * P.a_stride + P.a_col) / 4u + j));
        if (P.use_b == 1u) {
            v *= textureLoad(tex_aux, at((row * P.b_stride + P.b_col) / 4u + j));
        }
        sum += v;
    }
    put4(s * P.out_stride + P.out_col + 4u * j, sum);
}

// ---- Workgroup path (hardware GPUs) ----
// One row per workgroup for the LayerNorms: the 64 invocations stride along the row (lane l
// takes d = l, l + 64, …), so each load instruction of a workgroup reads 64 neighbouring
// values, and the row's sums are reduced in workgroup memory by a fixed tree: deterministic.
// The column sums over many rows go in two passes: partial sums over chunks of rows
// (`segment_partials`, into the `xhat` binding as scratch), then the chunks summed in order
// (`segment_combine`), so that a bias gradient over 65 536 rows is not 384 invocations each
// looping over every row.

var<workgroup> red_a: array<f32, 64>;
var<workgroup> red_b: array<f32, 64>;

// The workgroup's row in a 2-D grid of one-row workgroups.
fn wg_row(wid: vec3<u32>) -> u32 {
    return wid.y * P.groups_x + wid.x;
}

// Σ over the workgroup of `a` and of `b` (each invocation's share), in a fixed order.
fn reduce2(lane: u32, a: f32, b: f32) -> vec2<f32> {
    red_a[lane] = a;
    red_b[lane] = b;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s >>= 1u) {
        if (lane < s) {
            red_a[lane] += red_a[lane + s];
            red_b[lane] += red_b[lane + s];
        }
        workgroupBarrier();
    }
    let r = vec2<f32>(red_a[0], red_b[0]);
    // Nobody overwrites the totals before everyone has read them.
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(64)
fn ln_modulate_forward_wg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wg_row(wid);
    if (row >= P.rows) {
        return;
    }
    let base = row * P.dim;
    var sum = 0.0;
    for (var d = lid.x; d < P.dim; d += 64u) {
        sum += input[base + d];
    }
    let mean = reduce2(lid.x, sum, 0.0).x / f32(P.dim);
    var sq = 0.0;
    for (var d = lid.x; d < P.dim; d += 64u) {
        let c = input[base + d] - mean;
        sq += c * c;
    }
    let r = inverseSqrt(reduce2(lid.x, sq, 0.0).x / f32(P.dim) + P.eps);
    if (lid.x == 0u) {
        rstd[row] = r;
    }
    let m = (row / P.tokens) * P.mod_stride;
    for (var d = lid.x; d < P.dim; d += 64u) {
        let xh = (input[base + d] - mean) * r;
        xhat[base + d] = xh;
        out[base + d] = xh * (1.0 + modv[m + P.scale_col + d]) + modv[m + P.shift_col + d];
    }
}

@compute @workgroup_size(64)
fn ln_modulate_backward_wg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wg_row(wid);
    if (row >= P.rows) {
        return;
    }
    let base = row * P.dim;
    let m = (row / P.tokens) * P.mod_stride + P.scale_col;
    var sg = 0.0;
    var sgx = 0.0;
    for (var d = lid.x; d < P.dim; d += 64u) {
        let g = aux[base + d] * (1.0 + modv[m + d]);
        sg += g;
        sgx += g * input[base + d];
    }
    let sums = reduce2(lid.x, sg, sgx) / f32(P.dim);
    let r = rstd[row];
    for (var d = lid.x; d < P.dim; d += 64u) {
        let g = aux[base + d] * (1.0 + modv[m + d]);
        put(base + d, r * (g - sums.x - input[base + d] * sums.y));
    }
}

// One invocation per (segment, chunk, column): the chunk's rows of A (⊙ B), in order, into
// scratch laid out (segment, chunk, column). `P.tokens` is the rows per segment.
@compute @workgroup_size(64)
fn segment_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = invocation(wid, lid);
    if (i >= P.segments * P.chunks * P.dim) {
        return;
    }
    let d = i % P.dim;
    let sc = i / P.dim;
    let s = sc / P.chunks;
    let first = (sc % P.chunks) * P.chunk_rows;
    let last = min(first + P.chunk_rows, P.tokens);
    var sum = 0.0;
    for (var n = first; n < last; n++) {
        sum += segment_term(s * P.tokens + n, d);
    }
    xhat[i] = sum;
}

// One invocation per (segment, column): the segment's chunk sums in order.
@compute @workgroup_size(64)
fn segment_combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = invocation(wid, lid);
    if (i >= P.segments * P.dim) {
        return;
    }
    let s = i / P.dim;
    let d = i - s * P.dim;
    var sum = 0.0;
    for (var c = 0u; c < P.chunks; c++) {
        sum += xhat[(s * P.chunks + c) * P.dim + d];
    }
    put(s * P.out_stride + P.out_col + d, sum);
}
