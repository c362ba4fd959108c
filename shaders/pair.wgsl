// Pair family: the regularisers that tie the two halves of a dual forward together, as
// CBDM (docs/design.md#cbdm) and CCUA's alignment loss (docs/design.md#ccua) use them. The prediction buffer holds
// a = rows 0..B (ε_θ(x_t, y, t)) and then b = rows B..2B (ε_θ(x_t, y', t), or ∅), E values
// each; w[s] = t_s/T is each sample's weight.
//
//   pair_grad      dout[i]     (+)= 2·ka·w·(a_i − b_i)/E   (the pull of a toward sg(b))
//                  dout[E + i]  = 2·kb·w·(b_i − a_i)/E   (the pull of b toward sg(a))
//                  and one partial sum of w·(a − b)² per workgroup
//   pair_finalize  scalars[0] = (1/E)·Σ w·(a − b)², summed in a fixed order
//
// CBDM: ka = τ, kb = τ/4 (two stop-gradient terms). CCUA: ka = kb = γ (one term with its
// gradient into both passes). The diffusion MSE of a is another kernel's (loss.wgsl); with
// `accumulate` this kernel adds to the gradient it wrote. One invocation per element:
// the work is a few flops per value, so the memory traffic decides and no layout trick pays.
//!include tree_sum.wgsl

struct PairParams {
    // Values per half (E = B·N·K) and per sample (N·K).
    half: u32,
    per_sample: u32,
    ka: f32,
    kb: f32,
    inv_count: f32,
    accumulate: u32,
    groups_x: u32,
    partial_count: u32,
}

@group(0) @binding(0) var<uniform> P: PairParams;
@group(0) @binding(1) var<storage, read> pred: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> dout: array<f32>;
@group(0) @binding(4) var<storage, read_write> partials: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> scalars: array<f32>;

@compute @workgroup_size(64)
fn pair_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let group = wid.y * P.groups_x + wid.x;
    let i = group * 64u + lid.x;
    var term = 0.0;
    if (i < P.half) {
        let w = weight[i / P.per_sample];
        let diff = pred[i] - pred[P.half + i];
        var ga = 2.0 * P.ka * w * diff * P.inv_count;
        if (P.accumulate == 1u) {
            ga = dout[i] + ga;
        }
        dout[i] = ga;
        dout[P.half + i] = -2.0 * P.kb * w * diff * P.inv_count;
        term = w * diff * diff;
    }
    // Every invocation reaches the tree sum (uniform control flow).
    let total = tree_sum(lid.x, vec4<f32>(term, 0.0, 0.0, 0.0));
    if (lid.x == 0u) {
        partials[group] = total;
    }
}

@compute @workgroup_size(64)
fn pair_finalize(@builtin(local_invocation_id) lid: vec3<u32>) {
    var s = vec4<f32>(0.0);
    for (var i = lid.x; i < P.partial_count; i = i + 64u) {
        s = s + partials[i];
    }
    let total = tree_sum(lid.x, s);
    if (lid.x == 0u) {
        scalars[0] = total.x * P.inv_count;
    }
}
