// Attention family, tiled kernels for hardware GPUs (flash-attention style). Same layouts,
// bindings and results as the portable kernels (shaders/attention.wgsl), whose
// `attention_delta` the backward still uses:
//   forward   one workgroup per block of BQ query rows of one (sample, head); the keys and
//             values go through workgroup memory BKV rows at a time, each invocation keeps
//             its query row, its output row and an online softmax in registers, and saves
//             the row's log-sum-exp;
//   dq        the same blocking: dQ[n] = scale·Σ_m P[n, m](dO[n]·V[m] − δ[n])·K[m], with P
//             recomputed tile by tile from the saved log-sum-exp;
//   dkv       one workgroup per block of key rows, the queries, dO, lse and δ staged:
//             dK[m] = scale·Σ_n P[n, m](dO[n]·V[m] − δ[n])·Q[n], dV[m] = Σ_n P[n, m]·dO[n].
// Each output row is summed by one invocation in a fixed order: no atomics, deterministic.
// Staging is coalesced (neighbouring invocations load neighbouring values of a row), and
// every invocation reads the same staged value at once (a broadcast).
//
// HD (the head size, ≤ 128) and BKV (staged rows, ≤ 64) are pipeline-overridable: the
// launcher compiles one pipeline per head size, so the loops over a row have constant
// bounds and the rows live in registers.

override HD: u32 = 64u;
override BKV: u32 = 32u;
const BQ: u32 = 64u;
const MAX_HD: u32 = 128u;
const MAX_BKV: u32 = 64u;

//!include attention_bindings.wgsl

// Two staged row blocks (K and V, or Q and dO) and two staged scalars per row (lse and δ).
var<workgroup> rows_a: array<f32, BKV * HD>;
var<workgroup> rows_b: array<f32, BKV * HD>;
var<workgroup> row_lse: array<f32, MAX_BKV>;
var<workgroup> row_delta: array<f32, MAX_BKV>;

// The (sample, head) and first row of a workgroup's block; `ok` is false for the padding
// workgroups of a 2-D grid (uniform across the workgroup).
struct Block {
    s: u32,
    h: u32,
    first: u32,
    ok: bool,
}

fn block(wid: vec3<u32>) -> Block {
    let per_head = (P.tokens + BQ - 1u) / BQ;
    let g = wid.y * P.groups_x + wid.x;
    var b: Block;
    b.ok = g < P.samples * P.heads * per_head;
    b.first = (g % per_head) * BQ;
    b.h = (g / per_head) % P.heads;
    b.s = g / (per_head * P.heads);
    return b;
}

// Offset of (sample s, token n, part c ∈ {q=0, k=1, v=2}, head h) in qkv.
fn qkv_at(s: u32, n: u32, c: u32, h: u32) -> u32 {
    return (s * P.tokens + n) * 3u * P.dim + c * P.dim + h * HD;
}

fn o_at(s: u32, n: u32, h: u32) -> u32 {
    return (s * P.tokens + n) * P.dim + h * HD;
}

fn lse_at(b: Block, n: u32) -> u32 {
    return (b.s * P.heads + b.h) * P.tokens + n;
}

// Stages rows t0 .. t0 + BKV (zeros past the last token) of qkv part `c` into rows_a and,
// for the forward and dq, part `c + 1` (or, for dkv, dO) into rows_b.
fn stage(b: Block, t0: u32, c: u32, second_is_do: bool, lane: u32) {
    for (var e = lane; e < BKV * HD; e += BQ) {
        let j = e / HD;
        let d = e % HD;
        let n = t0 + j;
        var x = 0.0;
        var y = 0.0;
        if (n < P.tokens) {
            x = qkv[qkv_at(b.s, n, c, b.h) + d];
            if (second_is_do) {
                y = d_o[o_at(b.s, n, b.h) + d];
            } else {
                y = qkv[qkv_at(b.s, n, c + 1u, b.h) + d];
            }
        }
        rows_a[e] = x;
        rows_b[e] = y;
    }
}

@compute @workgroup_size(64)
fn attention_forward_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let b = block(wid);
    if (!b.ok) {
        return;
    }
    let n = b.first + lid.x;
    let live = n < P.tokens;
    var q: array<f32, MAX_HD>;
    var acc: array<f32, MAX_HD>;
    if (live) {
        let qa = qkv_at(b.s, n, 0u, b.h);
        for (var d = 0u; d < HD; d++) {
            q[d] = qkv[qa + d] * P.scale;
        }
    }
    var mx = -3.0e38;
    var sum = 0.0;
    var s: array<f32, MAX_BKV>;
    for (var t0 = 0u; t0 < P.tokens; t0 += BKV) {
        stage(b, t0, 1u, false, lid.x);
        workgroupBarrier();
        let rows = min(BKV, P.tokens - t0);
        // The tile's scores and their maximum, then one rescale of what came before.
        var tile_max = mx;
        for (var j = 0u; j < rows; j++) {
            var dot = 0.0;
            for (var d = 0u; d < HD; d++) {
                dot += q[d] * rows_a[j * HD + d];
            }
            s[j] = dot;
            tile_max = max(tile_max, dot);
        }
        let c = exp(mx - tile_max);
        sum *= c;
        for (var d = 0u; d < HD; d++) {
            acc[d] *= c;
        }
        mx = tile_max;
        for (var j = 0u; j < rows; j++) {
            let e = exp(s[j] - mx);
            sum += e;
            for (var d = 0u; d < HD; d++) {
                acc[d] += e * rows_b[j * HD + d];
            }
        }
        workgroupBarrier();
    }
    if (live) {
        let oa = o_at(b.s, n, b.h);
        for (var d = 0u; d < HD; d++) {
            out[oa + d] = acc[d] / sum;
        }
        lse[lse_at(b, n)] = mx + log(sum);
    }
}

@compute @workgroup_size(64)
fn attention_dq_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let b = block(wid);
    if (!b.ok) {
        return;
    }
    let n = b.first + lid.x;
    let live = n < P.tokens;
    var q: array<f32, MAX_HD>;
    var dout: array<f32, MAX_HD>;
    var acc: array<f32, MAX_HD>;
    var l = 0.0;
    var dl = 0.0;
    if (live) {
        let qa = qkv_at(b.s, n, 0u, b.h);
        let oa = o_at(b.s, n, b.h);
        for (var d = 0u; d < HD; d++) {
            q[d] = qkv[qa + d];
            dout[d] = d_o[oa + d];
        }
        l = lse[lse_at(b, n)];
        dl = delta[lse_at(b, n)];
    }
    for (var t0 = 0u; t0 < P.tokens; t0 += BKV) {
        stage(b, t0, 1u, false, lid.x);
        workgroupBarrier();
        let rows = min(BKV, P.tokens - t0);
        for (var j = 0u; j < rows; j++) {
            var qk = 0.0;
            var dv = 0.0;
            for (var d = 0u; d < HD; d++) {
                qk += q[d] * rows_a[j * HD + d];
                dv += dout[d] * rows_b[j * HD + d];
            }
            let ds = exp(qk * P.scale - l) * (dv - dl);
            for (var d = 0u; d < HD; d++) {
                acc[d] += ds * rows_a[j * HD + d];
            }
        }
        workgroupBarrier();
    }
    if (live) {
        let qa = qkv_at(b.s, n, 0u, b.h);
        for (var d = 0u; d < HD; d++) {
            out[qa + d] = acc[d] * P.scale;
        }
    }
}

// The block's rows are keys m; the staged rows are queries n with their dO, lse and δ.
@compute @workgroup_size(64)
fn attention_dkv_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let b = block(wid);
    if (!b.ok) {
        return;
    }
    let m = b.first + lid.x;
    let live = m < P.tokens;
    var k: array<f32, MAX_HD>;
    var v: array<f32, MAX_HD>;
    var dk: array<f32, MAX_HD>;
    var dv: array<f32, MAX_HD>;
    if (live) {
        let ka = qkv_at(b.s, m, 1u, b.h);
        for (var d = 0u; d < HD; d++) {
            k[d] = qkv[ka + d];
            v[d] = qkv[ka + P.dim + d];
        }
    }
    for (var t0 = 0u; t0 < P.tokens; t0 += BKV) {
        stage(b, t0, 0u, true, lid.x);
        if (lid.x < BKV && t0 + lid.x < P.tokens) {
            row_lse[lid.x] = lse[lse_at(b, t0 + lid.x)];
            row_delta[lid.x] = delta[lse_at(b, t0 + lid.x)];
        }
        workgroupBarrier();
        let rows = min(BKV, P.tokens - t0);
        for (var j = 0u; j < rows; j++) {
            var qk = 0.0;
            var dov = 0.0;
            for (var d = 0u; d < HD; d++) {
                qk += rows_a[j * HD + d] * k[d];
                dov += rows_b[j * HD + d] * v[d];
            }
            let p = exp(qk * P.scale - row_lse[j]);
            let ds = p * (dov - row_delta[j]);
            for (var d = 0u; d < HD; d++) {
                dk[d] += ds * rows_a[j * HD + d];
                dv[d] += p * rows_b[j * HD + d];
            }
        }
        workgroupBarrier();
    }
    if (live) {
        let ka = qkv_at(b.s, m, 1u, b.h);
        for (var d = 0u; d < HD; d++) {
            out[ka + d] = dk[d] * P.scale;
            out[ka + P.dim + d] = dv[d];
        }
    }
}
