// Attention family, texture path for llvmpipe: the same results as `attention.wgsl` (which
// stays the portable path and the reference of the tests), with every operand the inner loops
// read fetched from rgba32float textures. llvmpipe compiles each storage-buffer load into a
// per-lane loop (~25 CPU cycles a value, see matmul_texture.wgsl) but a texel load into a
// branch-free gather of four values; attention reads every key and value row once per query
// row, so those reads are most of its time. The textures are read as read-only storage
// textures: their loads are inlined, while sampled-texture fetches become calls (see
// matmul_texture.wgsl).
//
// Textures hold a matrix as consecutive texels in linear order: texel L (4 values) sits at
// (L mod 4096, L / 4096), so any row length that is a multiple of 4 fits and no row is limited
// by the texture width. Needs dim and head_dim multiples of 4 (the launcher checks).
//   pack_linear4     qkv or dO (a buffer of vec4) → texture
//   attention_forward_tex  O and lse from the qkv texture
//   attention_delta_tex    (lse, δ = dO·O) per query row → a texture
//   attention_dq_tex, attention_dkv_tex  dqkv from the qkv, dO and (lse, δ) textures

const MAX_HD4: u32 = 32u;
const TEX_W: u32 = 4096u;
const TEX_SHIFT: u32 = 12u;

struct AttnTexParams {
    samples: u32,
    tokens: u32,
    heads: u32,
    head_dim: u32,
    dim: u32,
    scale: f32,
    groups_x: u32,
    // pack_linear4: texels to write.
    texels: u32,
}

@group(0) @binding(0) var<uniform> P: AttnTexParams;
// pack_linear4: the source. attention_delta_tex: O. Others: unused.
@group(0) @binding(1) var<storage, read> src4: array<vec4<f32>>;
// attention_delta_tex: dO. Others: unused.
@group(0) @binding(2) var<storage, read> do4: array<vec4<f32>>;
// attention_forward_tex: lse (written). attention_delta_tex: lse (read).
@group(0) @binding(3) var<storage, read_write> lse: array<f32>;
// attention_forward_tex: O. attention_dq_tex / attention_dkv_tex: dqkv.
@group(0) @binding(4) var<storage, read_write> out4: array<vec4<f32>>;
@group(0) @binding(5) var qkv_tex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(6) var do_tex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(7) var ld_tex: texture_storage_2d<rgba32float, read>;
// pack_linear4 / attention_delta_tex: the texture written.
@group(0) @binding(8) var dst: texture_storage_2d<rgba32float, write>;

fn at(l: u32) -> vec2<u32> {
    return vec2<u32>(l & (TEX_W - 1u), l >> TEX_SHIFT);
}

//!include grid64.wgsl

@compute @workgroup_size(64)
fn pack_linear4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = invocation(wid, lid);
    if (i >= P.texels) {
        return;
    }
    textureStore(dst, at(i), src4[i]);
}

struct Slot {
    s: u32,
    h: u32,
    n: u32,
    ok: bool,
}

fn slot(wid: vec3<u32>, lid: vec3<u32>) -> Slot {
    let i = invocation(wid, lid);
    var q: Slot;
    q.ok = i < P.samples * P.heads * P.tokens;
    q.n = i % P.tokens;
    q.h = (i / P.tokens) % P.heads;
    q.s = i / (P.tokens * P.heads);
    return q;
}

// First texel of (sample s, token n, part c ∈ {q, k, v}, head h) in the qkv texture.
fn qkv4(s: u32, n: u32, c: u32, h: u32) -> u32 {
    return ((s * P.tokens + n) * 3u * P.dim + c * P.dim + h * P.head_dim) / 4u;
}

// First texel of (s, n, h) in O / dO (rows of dim values).
fn o4(s: u32, n: u32, h: u32) -> u32 {
    return ((s * P.tokens + n) * P.dim + h * P.head_dim) / 4u;
}

fn row_index(q: Slot, n: u32) -> u32 {
    return (q.s * P.heads + q.h) * P.tokens + n;
}

@compute @workgroup_size(64)
fn attention_forward_tex(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let q = slot(wid, lid);
    if (!q.ok) {
        return;
    }
    let hd4 = P.head_dim / 4u;
    let qa = qkv4(q.s, q.n, 0u, q.h);
    var qr: array<vec4<f32>, MAX_HD4>;
    var acc: array<vec4<f32>, MAX_HD4>;
    for (var d = 0u; d < hd4; d++) {
        qr[d] = textureLoad(qkv_tex, at(qa + d)) * P.scale;
        acc[d] = vec4<f32>(0.0);
    }
    var mx = -3.0e38;
    var sum = 0.0;
    for (var m = 0u; m < P.tokens; m++) {
        let ka = qkv4(q.s, m, 1u, q.h);
        var s = 0.0;
        for (var d = 0u; d < hd4; d++) {
            s += dot(qr[d], textureLoad(qkv_tex, at(ka + d)));
        }
        if (s > mx) {
            let c = exp(mx - s);
            sum *= c;
            for (var d = 0u; d < hd4; d++) {
                acc[d] *= c;
            }
            mx = s;
        }
        let e = exp(s - mx);
        sum += e;
        let va = qkv4(q.s, m, 2u, q.h);
        for (var d = 0u; d < hd4; d++) {
            acc[d] += e * textureLoad(qkv_tex, at(va + d));
        }
    }
    let oa = o4(q.s, q.n, q.h);
    for (var d = 0u; d < hd4; d++) {
        out4[oa + d] = acc[d] / sum;
    }
    lse[row_index(q, q.n)] = mx + log(sum);
}

// (lse, δ) of every query row into a texture, one texel per row.
@compute @workgroup_size(64)
fn attention_delta_tex(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let q = slot(wid, lid);
    if (!q.ok) {
        return;
    }
    let oa = o4(q.s, q.n, q.h);
    var dot_ = 0.0;
    for (var d = 0u; d < P.head_dim / 4u; d++) {
        dot_ += dot(do4[oa + d], src4[oa + d]);
    }
    let r = row_index(q, q.n);
    textureStore(dst, at(r), vec4<f32>(lse[r], dot_, 0.0, 0.0));
}

@compute @workgroup_size(64)
fn attention_dq_tex(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let q = slot(wid, lid);
    if (!q.ok) {
        return;
    }
    let hd4 = P.head_dim / 4u;
    let qa = qkv4(q.s, q.n, 0u, q.h);
    let oa = o4(q.s, q.n, q.h);
    var qr: array<vec4<f32>, MAX_HD4>;
    var dor: array<vec4<f32>, MAX_HD4>;
    var acc: array<vec4<f32>, MAX_HD4>;
    for (var d = 0u; d < hd4; d++) {
        qr[d] = textureLoad(qkv_tex, at(qa + d)) * P.scale;
        dor[d] = textureLoad(do_tex, at(oa + d));
        acc[d] = vec4<f32>(0.0);
    }
    let ld = textureLoad(ld_tex, at(row_index(q, q.n)));
    for (var m = 0u; m < P.tokens; m++) {
        let ka = qkv4(q.s, m, 1u, q.h);
        let va = qkv4(q.s, m, 2u, q.h);
        var s = 0.0;
        var dp = 0.0;
        for (var d = 0u; d < hd4; d++) {
            s += dot(qr[d], textureLoad(qkv_tex, at(ka + d)));
            dp += dot(dor[d], textureLoad(qkv_tex, at(va + d)));
        }
        let ds = exp(s - ld.x) * (dp - ld.y);
        for (var d = 0u; d < hd4; d++) {
            acc[d] += ds * textureLoad(qkv_tex, at(ka + d));
        }
    }
    for (var d = 0u; d < hd4; d++) {
        out4[qa + d] = acc[d] * P.scale;
    }
}

// One invocation per key row m.
@compute @workgroup_size(64)
fn attention_dkv_tex(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let q = slot(wid, lid);
    if (!q.ok) {
        return;
    }
    let hd4 = P.head_dim / 4u;
    let m = q.n;
    let ka = qkv4(q.s, m, 1u, q.h);
    let va = qkv4(q.s, m, 2u, q.h);
    var kr: array<vec4<f32>, MAX_HD4>;
    var vr: array<vec4<f32>, MAX_HD4>;
    var dk: array<vec4<f32>, MAX_HD4>;
    var dv: array<vec4<f32>, MAX_HD4>;
    for (var d = 0u; d < hd4; d++) {
        kr[d] = textureLoad(qkv_tex, at(ka + d)) * P.scale;
        vr[d] = textureLoad(qkv_tex, at(va + d));
        dk[d] = vec4<f32>(0.0);
        dv[d] = vec4<f32>(0.0);
    }
    for (var n = 0u; n < P.tokens; n++) {
        let qa = qkv4(q.s, n, 0u, q.h);
        let oa = o4(q.s, n, q.h);
        var s = 0.0;
        var dp = 0.0;
        for (var d = 0u; d < hd4; d++) {
            s += dot(kr[d], textureLoad(qkv_tex, at(qa + d)));
            dp += dot(vr[d], textureLoad(do_tex, at(oa + d)));
        }
        let ld = textureLoad(ld_tex, at(row_index(q, n)));
        let p = exp(s - ld.x);
        let ds = p * (dp - ld.y);
        for (var d = 0u; d < hd4; d++) {
            dk[d] += ds * textureLoad(qkv_tex, at(qa + d));
            dv[d] += p * textureLoad(do_tex, at(oa + d));
        }
    }
    for (var d = 0u; d < hd4; d++) {
        out4[ka + d] = dk[d] * P.scale;
        out4[va + d] = dv[d];
    }
}
