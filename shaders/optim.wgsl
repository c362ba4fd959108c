// Optimizer family, over the flat parameter buffer (every named tensor in one array):
//   sumsq_partials   partial[g] = Σ grad² over workgroup g's chunk (fixed order)
//   grad_norm        norm = √(Σ partial); clip = min(1, max_norm/(norm + 1e-6)) (as PyTorch's
//                    clip_grad_norm_; max_norm = 0 turns clipping off): writes [Σg², norm, clip]
//   adamw            AdamW (decoupled weight decay, bias-corrected), gradients times clip
//   ema              ema = decay·ema + (1 − decay)·param
// The clip factor never leaves the GPU: adamw reads it from the grad_norm output, so a step
// needs no read-back. Bias corrections 1 − β^t are computed in f64 on the host; they, the
// learning rate and the EMA decay come in the per-step uniform S.
//!include tree_sum.wgsl
//!include step_values.wgsl

struct OptimParams {
    n: u32,
    chunk: u32,
    partials: u32,
    groups_x: u32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    max_norm: f32,
    use_clip: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
    pad3: u32,
    pad4: u32,
    pad5: u32,
}

@group(0) @binding(0) var<uniform> P: OptimParams;
// sumsq_partials / adamw: gradients. grad_norm: partials. ema: parameters.
@group(0) @binding(1) var<storage, read> input: array<f32>;
// adamw: [Σg², norm, clip] from grad_norm.
@group(0) @binding(2) var<storage, read> norm_in: array<f32>;
// sumsq_partials: partials. grad_norm: [Σg², norm, clip]. adamw: parameters. ema: EMA.
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// adamw: first and second moments.
@group(0) @binding(4) var<storage, read_write> m1: array<f32>;
@group(0) @binding(5) var<storage, read_write> m2: array<f32>;
// adamw: the learning rate and bias corrections. ema: the decay.
@group(0) @binding(6) var<uniform> S: StepValues;

//!include grid64.wgsl

@compute @workgroup_size(64)
fn sumsq_partials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let group = wid.y * P.groups_x + wid.x;
    let start = group * P.chunk;
    let end = min(start + P.chunk, P.n);
    var s = 0.0;
    for (var i = start + lid.x; i < end; i += 64u) {
        let g = input[i];
        s += g * g;
    }
    let total = tree_sum(lid.x, vec4<f32>(s, 0.0, 0.0, 0.0));
    if (lid.x == 0u && group < P.partials) {
        out[group] = total.x;
    }
}

@compute @workgroup_size(64)
fn grad_norm(@builtin(local_invocation_id) lid: vec3<u32>) {
    var s = 0.0;
    for (var i = lid.x; i < P.partials; i += 64u) {
        s += input[i];
    }
    let total = tree_sum(lid.x, vec4<f32>(s, 0.0, 0.0, 0.0)).x;
    if (lid.x == 0u) {
        let norm = sqrt(total);
        var clip = 1.0;
        if (P.max_norm > 0.0) {
            clip = min(1.0, P.max_norm / (norm + 1e-6));
        }
        out[0] = total;
        out[1] = norm;
        out[2] = clip;
    }
}

@compute @workgroup_size(64)
fn adamw(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = invocation(wid, lid);
    if (i >= P.n) {
        return;
    }
    var g = input[i];
    if (P.use_clip == 1u) {
        g *= norm_in[2];
    }
    let p = out[i] * (1.0 - S.lr * P.weight_decay);
    let a = P.beta1 * m1[i] + (1.0 - P.beta1) * g;
    let b = P.beta2 * m2[i] + (1.0 - P.beta2) * g * g;
    m1[i] = a;
    m2[i] = b;
    let denom = sqrt(b / S.bias_correction2) + P.eps;
    out[i] = p - S.lr * (a / S.bias_correction1) / denom;
}

@compute @workgroup_size(64)
fn ema(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = invocation(wid, lid);
    if (i >= P.n) {
        return;
    }
    out[i] = S.ema_decay * out[i] + (1.0 - S.ema_decay) * input[i];
}
