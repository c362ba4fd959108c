// Deterministic sums (no float atomics): each workgroup adds a fixed chunk of items in a fixed
// order and writes one vec4; the launcher repeats passes until one item is left. Items are
// `width` consecutive f32 (1 or 4; missing components read as 0).
//!include tree_sum.wgsl

struct ReduceParams {
    items: u32,
    width: u32,
    chunk: u32,
    groups_x: u32,
}

@group(0) @binding(0) var<uniform> P: ReduceParams;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> output: array<vec4<f32>>;

fn load_item(i: u32) -> vec4<f32> {
    if (P.width == 1u) {
        return vec4<f32>(input[i], 0.0, 0.0, 0.0);
    }
    let b = 4u * i;
    return vec4<f32>(input[b], input[b + 1u], input[b + 2u], input[b + 3u]);
}

@compute @workgroup_size(64)
fn sum_items(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let group = wid.y * P.groups_x + wid.x;
    let start = group * P.chunk;
    let end = min(start + P.chunk, P.items);
    var s = vec4<f32>(0.0);
    for (var i = start + lid.x; i < end; i = i + 64u) {
        s = s + load_item(i);
    }
    let total = tree_sum(lid.x, s);
    if (lid.x == 0u) {
        output[group] = total;
    }
}
