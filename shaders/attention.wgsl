// Attention family: multi-head self-attention O = softmax(Q·Kᵀ·scale)·V per (sample, head),
// with Q, K, V read from the fused qkv projection (rows, 3·dim): row (s, n) holds
// [q | k | v], each head h at columns h·hd .. h·hd + hd (DiT's reshape to (3, heads, hd)).
// O is (rows, dim), head h at columns h·hd.
//
// The forward keeps no N×N matrix: each invocation owns one (sample, head, query) row, runs
// an online softmax over the keys and saves the row's log-sum-exp. The backward recomputes
// the probabilities from it (P = exp(s − lse)):
//   attention_delta    δ[n]  = Σ_d dO[n, d]·O[n, d]
//   attention_dq       dQ[n] = scale·Σ_m P[n, m](dO[n]·V[m] − δ[n])·K[m]
//   attention_dkv      dK[m] = scale·Σ_n P[n, m](dO[n]·V[m] − δ[n])·Q[n];  dV[m] = Σ_n P[n, m]·dO[n]
// Every sum runs in a fixed order: no atomics, deterministic. Head size ≤ MAX_HD.

const MAX_HD: u32 = 128u;

//!include attention_bindings.wgsl

// (sample, head, token) of an invocation, and whether it is in range.
struct Slot {
    s: u32,
    h: u32,
    n: u32,
    ok: bool,
}

fn slot(wid: vec3<u32>, lid: vec3<u32>) -> Slot {
    let i = (wid.y * P.groups_x + wid.x) * 64u + lid.x;
    var q: Slot;
    q.ok = i < P.samples * P.heads * P.tokens;
    q.n = i % P.tokens;
    q.h = (i / P.tokens) % P.heads;
    q.s = i / (P.tokens * P.heads);
    return q;
}

// Offset of (sample s, token n, part c ∈ {q=0, k=1, v=2}, head h) in qkv.
fn qkv_at(s: u32, n: u32, c: u32, h: u32) -> u32 {
    return (s * P.tokens + n) * 3u * P.dim + c * P.dim + h * P.head_dim;
}

fn o_at(s: u32, n: u32, h: u32) -> u32 {
    return (s * P.tokens + n) * P.dim + h * P.head_dim;
}

fn lse_at(q: Slot, n: u32) -> u32 {
    return (q.s * P.heads + q.h) * P.tokens + n;
}

fn score(qa: u32, ka: u32) -> f32 {
    var dot = 0.0;
    for (var d = 0u; d < P.head_dim; d++) {
        dot += qkv[qa + d] * qkv[ka + d];
    }
    return dot * P.scale;
}

@compute @workgroup_size(64)
fn attention_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let q = slot(wid, lid);
    if (!q.ok) {
        return;
    }
    let qa = qkv_at(q.s, q.n, 0u, q.h);
    var acc: array<f32, MAX_HD>;
    for (var d = 0u; d < P.head_dim; d++) {
        acc[d] = 0.0;
    }
    // Running max and the sum of exp(s − max): each new maximum rescales what came before.
    var mx = -3.0e38;
    var sum = 0.0;
    for (var m = 0u; m < P.tokens; m++) {
        let s = score(qa, qkv_at(q.s, m, 1u, q.h));
        let va = qkv_at(q.s, m, 2u, q.h);
        if (s > mx) {
            let c = exp(mx - s);
            sum *= c;
            for (var d = 0u; d < P.head_dim; d++) {
                acc[d] *= c;
            }
            mx = s;
        }
        let e = exp(s - mx);
        sum += e;
        for (var d = 0u; d < P.head_dim; d++) {
            acc[d] += e * qkv[va + d];
        }
    }
    let oa = o_at(q.s, q.n, q.h);
    for (var d = 0u; d < P.head_dim; d++) {
        out[oa + d] = acc[d] / sum;
    }
    lse[lse_at(q, q.n)] = mx + log(sum);
}

@compute @workgroup_size(64)
fn attention_delta(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let q = slot(wid, lid);
    if (!q.ok) {
        return;
    }
    let oa = o_at(q.s, q.n, q.h);
    var dot = 0.0;
    for (var d = 0u; d < P.head_dim; d++) {
        dot += d_o[oa + d] * o_in[oa + d];
    }
    out[lse_at(q, q.n)] = dot;
}

// dO[n]·V[m].
fn do_dot_v(s: u32, n: u32, m: u32, h: u32) -> f32 {
    let oa = o_at(s, n, h);
    let va = qkv_at(s, m, 2u, h);
    var dot = 0.0;
    for (var d = 0u; d < P.head_dim; d++) {
        dot += d_o[oa + d] * qkv[va + d];
    }
    return dot;
}

// One invocation per query row n.
@compute @workgroup_size(64)
fn attention_dq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let q = slot(wid, lid);
    if (!q.ok) {
        return;
    }
    let qa = qkv_at(q.s, q.n, 0u, q.h);
    let l = lse[lse_at(q, q.n)];
    let dl = delta[lse_at(q, q.n)];
    var acc: array<f32, MAX_HD>;
    for (var d = 0u; d < P.head_dim; d++) {
        acc[d] = 0.0;
    }
    for (var m = 0u; m < P.tokens; m++) {
        let ka = qkv_at(q.s, m, 1u, q.h);
        let p = exp(score(qa, ka) - l);
        let ds = p * (do_dot_v(q.s, q.n, m, q.h) - dl);
        for (var d = 0u; d < P.head_dim; d++) {
            acc[d] += ds * qkv[ka + d];
        }
    }
    for (var d = 0u; d < P.head_dim; d++) {
        out[qa + d] = acc[d] * P.scale;
    }
}

// One invocation per key row (n of the slot is the key m).
@compute @workgroup_size(64)
fn attention_dkv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let q = slot(wid, lid);
    if (!q.ok) {
        return;
    }
    let m = q.n;
    let ka = qkv_at(q.s, m, 1u, q.h);
    var dk: array<f32, MAX_HD>;
    var dv: array<f32, MAX_HD>;
    for (var d = 0u; d < P.head_dim; d++) {
        dk[d] = 0.0;
        dv[d] = 0.0;
    }
    for (var n = 0u; n < P.tokens; n++) {
        let qa = qkv_at(q.s, n, 0u, q.h);
        let p = exp(score(qa, ka) - lse[lse_at(q, n)]);
        let ds = p * (do_dot_v(q.s, n, m, q.h) - delta[lse_at(q, n)]);
        let oa = o_at(q.s, n, q.h);
        for (var d = 0u; d < P.head_dim; d++) {
            dk[d] += ds * qkv[qa + d];
            dv[d] += p * d_o[oa + d];
        }
    }
    let va = qkv_at(q.s, m, 2u, q.h);
    for (var d = 0u; d < P.head_dim; d++) {
        out[ka + d] = dk[d] * P.scale;
        out[va + d] = dv[d];
    }
}
