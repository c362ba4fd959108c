// Noise family: the forward diffusion process fused with patchification, the raw Philox
// stream and normals (for tests and for engines that want ε materialised), and label
// dropout for classifier-free guidance training.
//!include philox.wgsl
//!include image_index.wgsl
//!include step_values.wgsl

struct NoiseParams {
    batch: u32,
    channels: u32,
    height: u32,
    width: u32,
    patch_size: u32,
    seed: u32,
    // 0: DDPM, coefficients (√ᾱ_t, √(1−ᾱ_t)) looked up in `ddpm_table` at integer t;
    // 1: rectified flow, x_t = (1−t)·x0 + t·ε with t in [0, 1].
    schedule: u32,
    // Number of DDPM steps in the table (T).
    steps_in_table: u32,
    // Total elements B·C·H·W.
    total: u32,
    // Workgroups along x of the 2-D dispatch grid (to stay under the per-dimension limit).
    groups_x: u32,
    // Label dropout: probability as a 24-bit threshold, and the null label.
    drop_threshold: u32,
    null_label: u32,
    // Philox counter of this launch's first quad: a shard of a larger batch continues the
    // stream where its first sample starts (first_sample·C·H·W / 4); 0 otherwise.
    quad_base: u32,
    // 0x7FC00000, a quiet NaN, set by the launcher. A NaN written in the shader would be a
    // constant expression, and WGSL makes a constant NaN a shader-creation error (Tint, and
    // so Chrome, refuses the module); a value read at run time is not constant.
    nan_bits: u32,
    _pad1: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> P: NoiseParams;
@group(0) @binding(1) var<storage, read> x0: array<f32>;
@group(0) @binding(2) var<storage, read> timesteps: array<f32>;
@group(0) @binding(3) var<storage, read> ddpm_table: array<vec2<f32>>;
@group(0) @binding(4) var<storage, read_write> out_f32: array<f32>;

const WG: u32 = 64u;

fn linear_id(wid: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.y * P.groups_x + wid.x) * WG + lid.x;
}

// (a, s) with x_t = a·x0 + s·ε for sample b. Out-of-range t gives NaN so that a bad
// timestep cannot pass silently into training.
fn noise_coefficients(b: u32) -> vec2<f32> {
    let t = timesteps[b];
    let nan = bitcast<f32>(P.nan_bits);
    if (P.schedule == 0u) {
        let ti = u32(max(t, 0.0));
        if (!(t >= 0.0) || ti >= P.steps_in_table || f32(ti) != t) {
            return vec2<f32>(nan, nan);
        }
        return ddpm_table[ti];
    }
    if (!(t >= 0.0 && t <= 1.0)) {
        return vec2<f32>(nan, nan);
    }
    return vec2<f32>(1.0 - t, t);
}

// One invocation per Philox quad: four consecutive elements of x0 in (B,C,H,W) order,
// written to their places in the patch tokens (B, N, C·p·p), channel order (c, i, j).
@compute @workgroup_size(64)
fn noise_to_tokens(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let quad = linear_id(wid, lid);
    let first = quad * 4u;
    if (first >= P.total) {
        return;
    }
    let z = philox_normals4(P.quad_base + quad, 0u, P.seed, S.step);
    let p = P.patch_size;
    let tokens_w = P.width / p;
    let n_tokens = (P.height / p) * tokens_w;
    let k_dim = P.channels * p * p;
    var pos = image_pos(first, P.channels, P.height, P.width, p);
    var b = pos.b;
    var coef = noise_coefficients(b);
    for (var l = 0u; l < 4u; l = l + 1u) {
        let idx = first + l;
        if (idx < P.total) {
            if (pos.b != b) {
                b = pos.b;
                coef = noise_coefficients(b);
            }
            let n = pos.th * tokens_w + pos.tw;
            let k = (pos.c * p + pos.i) * p + pos.j;
            out_f32[(b * n_tokens + n) * k_dim + k] = coef.x * x0[idx] + coef.y * z[l];
        }
        pos = image_pos_next(pos, P.channels, P.height, P.width, p);
    }
}

// ε in flat (B,C,H,W) order, one quad per invocation.
@compute @workgroup_size(64)
fn normals(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let quad = linear_id(wid, lid);
    let first = quad * 4u;
    if (first >= P.total) {
        return;
    }
    let z = philox_normals4(quad, 0u, P.seed, S.step);
    for (var l = 0u; l < 4u; l = l + 1u) {
        if (first + l < P.total) {
            out_f32[first + l] = z[l];
        }
    }
}

@group(0) @binding(5) var<storage, read_write> out_u32: array<u32>;
@group(0) @binding(6) var<storage, read> labels_in: array<u32>;
@group(0) @binding(7) var<uniform> S: StepValues;

// The raw Philox words for counters (i, stream = P.channels, 0, 0), i < P.total: the
// bit-exactness check against the CPU reference.
@compute @workgroup_size(64)
fn philox_words(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = linear_id(wid, lid);
    if (i >= P.total) {
        return;
    }
    let x = philox4x32_10(vec4<u32>(i, P.channels, 0u, 0u), vec2<u32>(P.seed, S.step));
    out_u32[4u * i] = x.x;
    out_u32[4u * i + 1u] = x.y;
    out_u32[4u * i + 2u] = x.z;
    out_u32[4u * i + 3u] = x.w;
}

// Classifier-free-guidance label dropout: label b becomes the null label when the uniform of
// Philox stream 1, counter b, falls below the dropout probability.
@compute @workgroup_size(64)
fn label_dropout(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let b = linear_id(wid, lid);
    if (b >= P.batch) {
        return;
    }
    let x = philox4x32_10(vec4<u32>(b, 1u, 0u, 0u), vec2<u32>(P.seed, S.step));
    if ((x.x >> 8u) < P.drop_threshold) {
        out_u32[b] = P.null_label;
    } else {
        out_u32[b] = labels_in[b];
    }
}
