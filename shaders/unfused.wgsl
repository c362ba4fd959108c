// The IMBA loss computed the textbook way: one simple kernel per operation, every
// intermediate in memory. It exists as the benchmark's point of comparison for the fused
// kernel and as a second, independently written check of it. Elementwise kernels take one
// element per invocation over a 2-D grid; row kernels one row per invocation.
//!include philox.wgsl
//!include image_index.wgsl

struct UnfusedParams {
    // Elements (or rows for row kernels).
    n: u32,
    // Row length for row kernels.
    cols: u32,
    groups_x: u32,
    _pad: u32,
    a: f32,
    b: f32,
    _pad1: f32,
    _pad2: f32,
}

struct Geometry {
    batch: u32,
    channels: u32,
    height: u32,
    width: u32,
    patch_size: u32,
    seed: u32,
    step: u32,
    total: u32,
}

@group(0) @binding(0) var<uniform> P: UnfusedParams;
@group(0) @binding(1) var<storage, read> in_a: array<f32>;
@group(0) @binding(2) var<storage, read> in_b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> G: Geometry;

fn elem(wid: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.y * P.groups_x + wid.x) * 256u + lid.x;
}

// ε materialised in token layout (B, N, K), K in (i, j, c) order; one Philox quad each.
@compute @workgroup_size(256)
fn eps_tokens(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let quad = elem(wid, lid);
    if (quad * 4u >= G.total) {
        return;
    }
    let z = philox_normals4(quad, 0u, G.seed, G.step);
    let p = G.patch_size;
    let tokens_w = G.width / p;
    let n_tokens = (G.height / p) * tokens_w;
    let k_dim = G.channels * p * p;
    var pos = image_pos(quad * 4u, G.channels, G.height, G.width, p);
    for (var l = 0u; l < 4u; l = l + 1u) {
        let idx = quad * 4u + l;
        if (idx < G.total) {
            let n = pos.th * tokens_w + pos.tw;
            let k = (pos.i * p + pos.j) * G.channels + pos.c;
            out[(pos.b * n_tokens + n) * k_dim + k] = z[l];
        }
        pos = image_pos_next(pos, G.channels, G.height, G.width, p);
    }
}

// out = a − b
@compute @workgroup_size(256)
fn sub(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = elem(wid, lid);
    if (i < P.n) {
        out[i] = in_a[i] - in_b[i];
    }
}

// out = a · b
@compute @workgroup_size(256)
fn mul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = elem(wid, lid);
    if (i < P.n) {
        out[i] = in_a[i] * in_b[i];
    }
}

// out = a²
@compute @workgroup_size(256)
fn square(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = elem(wid, lid);
    if (i < P.n) {
        out[i] = in_a[i] * in_a[i];
    }
}

// out = |a|^P.a, with 0^γ = 0 for γ > 0 and x^0 = 1.
@compute @workgroup_size(256)
fn abs_pow(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = elem(wid, lid);
    if (i < P.n) {
        let x = abs(in_a[i]);
        var y = 1.0;
        if (P.a != 0.0) {
            y = select(pow(x, P.a), 0.0, x == 0.0);
        }
        out[i] = y;
    }
}

// out = P.a · a
@compute @workgroup_size(256)
fn scale(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = elem(wid, lid);
    if (i < P.n) {
        out[i] = P.a * in_a[i];
    }
}

// out[r] = P.a · Σ_c a[r, c]   (P.a = 1/cols gives the row mean)
@compute @workgroup_size(256)
fn row_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let r = elem(wid, lid);
    if (r < P.n) {
        var s = 0.0;
        for (var c = 0u; c < P.cols; c = c + 1u) {
            s = s + in_a[r * P.cols + c];
        }
        out[r] = P.a * s;
    }
}

// out[r, c] = P.a · b[r] · a[r, c]
@compute @workgroup_size(256)
fn scale_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = elem(wid, lid);
    if (i < P.n) {
        out[i] = P.a * in_b[i / P.cols] * in_a[i];
    }
}

// Scalars [L, L_c, L_u, mean D] from three one-item sums laid out as
// in_a = (Σ D·e_c, Σ e_u, Σ D) (x components of three vec4 sums); P.a = λ, P.b = 1/(BNK),
// P.cols = B·N. A one-element op (P.n = 1), so it dispatches like the others.
@compute @workgroup_size(256)
fn assemble(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    if (elem(wid, lid) != 0u) {
        return;
    }
    let l_c = in_a[0] * P.b;
    let l_u = in_a[4] * P.b;
    out[0] = P.a * l_c + (1.0 - P.a) * l_u;
    out[1] = l_c;
    out[2] = l_u;
    out[3] = in_a[8] / f32(P.cols);
}
