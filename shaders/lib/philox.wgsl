// Philox4x32-10 (Salmon et al., SC'11) and Box–Muller normals.
//
// The generator is keyed by (seed, step); the counter is (quad, stream, 0, 0) where
// quad = flat_index >> 2 and stream separates independent uses (0: diffusion noise ε,
// 1: label dropout). One Philox call yields four normals, for the four consecutive flat
// indices of a quad, so any kernel can regenerate ε for any element in any layout.
//
// WGSL has neither 64-bit integers nor a mul-hi builtin, so the 32×32→64 product is built
// from 16-bit halves. log and sin/cos are our own polynomials rather than the builtins:
// Vulkan only requires cos to be accurate to 2^-11 absolute, which would make ε differ
// between vendors. With these, every vendor computes the same function as the CPU
// reference (src/reference/rng.rs), up to last-bit differences from division rounding and
// fused multiply-add contraction, which SPIR-V allows.

const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;
const PHILOX_W1: u32 = 0xBB67AE85u;

// High 32 bits of a 32×32-bit product, from 16-bit halves (no intermediate overflows:
// the middle sum is at most 0xFFFFFFFF).
fn philox_mulhi(a: u32, b: u32) -> u32 {
    let a_lo = a & 0xFFFFu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xFFFFu;
    let b_hi = b >> 16u;
    let lolo = a_lo * b_lo;
    let hilo = a_hi * b_lo;
    let lohi = a_lo * b_hi;
    let mid = (lolo >> 16u) + (hilo & 0xFFFFu) + lohi;
    return a_hi * b_hi + (hilo >> 16u) + (mid >> 16u);
}

// One round with round key k.
fn philox_round(c: vec4<u32>, k: vec2<u32>) -> vec4<u32> {
    let hi0 = philox_mulhi(PHILOX_M0, c.x);
    let lo0 = PHILOX_M0 * c.x;
    let hi1 = philox_mulhi(PHILOX_M1, c.z);
    let lo1 = PHILOX_M1 * c.z;
    return vec4<u32>(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
}

// Ten rounds, written out: inside other loops some compilers (llvmpipe) do not unroll a
// round loop, and the loop then costs several times the rounds themselves.
fn philox4x32_10(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    let w = vec2<u32>(PHILOX_W0, PHILOX_W1);
    var c = philox_round(counter, key);
    c = philox_round(c, key + w);
    c = philox_round(c, key + 2u * w);
    c = philox_round(c, key + 3u * w);
    c = philox_round(c, key + 4u * w);
    c = philox_round(c, key + 5u * w);
    c = philox_round(c, key + 6u * w);
    c = philox_round(c, key + 7u * w);
    c = philox_round(c, key + 8u * w);
    return philox_round(c, key + 9u * w);
}

// Natural log for u in (0, 1]: exponent split, mantissa folded into [√½, √2), then
// ln m = 2·atanh(s) with s = (m−1)/(m+1), |s| ≤ 0.172 (series error < 4e-10 relative).
fn philox_ln(u: f32) -> f32 {
    let bits = bitcast<u32>(u);
    // Branch-free (select), like the rest of the generator: SIMD compilers then need no
    // masks, and the code is the same inside loops and divergent control flow.
    let m1 = bitcast<f32>((bits & 0x007FFFFFu) | 0x3F800000u);
    let fold = m1 > 1.41421356;
    let m = select(m1, m1 * 0.5, fold);
    let e = i32((bits >> 23u) & 0xFFu) - 127 + select(0, 1, fold);
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let p = s * (2.0 + s2 * (0.6666666667 + s2 * (0.4 + s2 * (0.2857142857 + s2 * 0.2222222222))));
    let ef = f32(e);
    return ef * 0.693145751953125 + (p + ef * 1.428606765330187e-6);
}

// (cos 2πv, sin 2πv) for v in [0, 1): quadrant q = round(4v), remainder a = (4v − q)·π/2 in
// [−π/4, π/4] (4v − q is exact), Taylor polynomials there (error < 2e-9).
fn philox_cos_sin_turns(v: f32) -> vec2<f32> {
    let t = v * 4.0;
    let q = floor(t + 0.5);
    let a = (t - q) * 1.5707963268;
    let a2 = a * a;
    let s = a + a * a2 * (-0.16666666667 + a2 * (0.0083333333333 + a2 * (-0.00019841269841 + a2 * 2.7557319224e-6)));
    let c = 1.0 + a2 * (-0.5 + a2 * (0.041666666667 + a2 * (-0.0013888888889 + a2 * (2.4801587302e-5 + a2 * -2.7557319224e-7))));
    let qi = u32(q) & 3u;
    // Rotate (c, s) by qi quarter turns: swap for odd qi, then the signs.
    let cs = select(vec2<f32>(c, s), vec2<f32>(s, c), (qi & 1u) == 1u);
    let neg_x = qi == 1u || qi == 2u;
    let neg_y = qi >= 2u;
    return vec2<f32>(select(cs.x, -cs.x, neg_x), select(cs.y, -cs.y, neg_y));
}

// Two normals from two 32-bit words: radius from the top 24 bits of `a` as a uniform in
// (0, 1], angle from the top 24 bits of `b` as a uniform in [0, 1).
fn philox_box_muller(a: u32, b: u32) -> vec2<f32> {
    let u = (f32(a >> 8u) + 1.0) * 5.9604644775390625e-8;
    let v = f32(b >> 8u) * 5.9604644775390625e-8;
    let r = sqrt(-2.0 * philox_ln(u));
    return r * philox_cos_sin_turns(v);
}

// The four normals of quad `quad` in stream `stream` for key (seed, step).
fn philox_normals4(quad: u32, stream: u32, seed: u32, step: u32) -> vec4<f32> {
    let x = philox4x32_10(vec4<u32>(quad, stream, 0u, 0u), vec2<u32>(seed, step));
    return vec4<f32>(philox_box_muller(x.x, x.y), philox_box_muller(x.z, x.w));
}
