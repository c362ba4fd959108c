// Activation family: the DiT's two nonlinearities, forward and backward, elementwise.
//   tanh-approximate GELU (the MLP): y = ½x(1 + tanh(u)), u = √(2/π)(x + 0.044715x³)
//   SiLU (the conditioning before every adaLN linear): y = x·σ(x)
// Backward: dx = dy·f'(x), written or added to dx (`accumulate`), since SiLU(c) feeds every
// block's adaLN linear and their gradients sum.
// tanh and σ are built from exp with clamped arguments: the builtin tanh returns NaN for large
// |u| on some backends, and exp(−x) for x ≪ 0 overflows to +inf, which the clamp avoids.

struct ActParams {
    n: u32,
    accumulate: u32,
    groups_x: u32,
    pad: u32,
}

@group(0) @binding(0) var<uniform> P: ActParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
// Forward: unused (bound to a placeholder). Backward: dL/dy.
@group(0) @binding(2) var<storage, read> dy: array<f32>;
// Forward: y. Backward: dL/dx.
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
const GELU_C: f32 = 0.044715;

fn index(wid: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.y * P.groups_x + wid.x) * 256u + lid.x;
}

// tanh(u) = 1 − 2/(e^{2u} + 1); |u| ≤ 15 already gives ±1 in f32.
fn tanh_stable(u: f32) -> f32 {
    let e = exp(2.0 * clamp(u, -15.0, 15.0));
    return 1.0 - 2.0 / (e + 1.0);
}

fn sigmoid(v: f32) -> f32 {
    return 1.0 / (1.0 + exp(-clamp(v, -80.0, 80.0)));
}

fn write(i: u32, v: f32) {
    if (P.accumulate == 1u) {
        out[i] = out[i] + v;
    } else {
        out[i] = v;
    }
}

@compute @workgroup_size(256)
fn gelu_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, lid);
    if (i >= P.n) {
        return;
    }
    let v = x[i];
    let t = tanh_stable(SQRT_2_OVER_PI * (v + GELU_C * v * v * v));
    out[i] = 0.5 * v * (1.0 + t);
}

// d/dx ½x(1 + tanh u) = ½(1 + tanh u) + ½x(1 − tanh² u)·√(2/π)(1 + 3·0.044715x²)
@compute @workgroup_size(256)
fn gelu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, lid);
    if (i >= P.n) {
        return;
    }
    let v = x[i];
    let t = tanh_stable(SQRT_2_OVER_PI * (v + GELU_C * v * v * v));
    let du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * v * v);
    write(i, dy[i] * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * du));
}

@compute @workgroup_size(256)
fn silu_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, lid);
    if (i >= P.n) {
        return;
    }
    let v = x[i];
    out[i] = v * sigmoid(v);
}

// d/dx x·σ(x) = σ(x)(1 + x(1 − σ(x)))
@compute @workgroup_size(256)
fn silu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wid, lid);
    if (i >= P.n) {
        return;
    }
    let v = x[i];
    let s = sigmoid(v);
    write(i, dy[i] * s * (1.0 + v * (1.0 - s)));
}
