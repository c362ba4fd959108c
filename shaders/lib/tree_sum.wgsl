// Deterministic workgroup sum of one vec4 per invocation (fixed pairing order, no atomics).
// The including shader must use @workgroup_size(TREE_SUM_SIZE) and call this from uniform
// control flow.
const TREE_SUM_SIZE: u32 = 64u;
var<workgroup> tree_sum_scratch: array<vec4<f32>, TREE_SUM_SIZE>;

fn tree_sum(lid: u32, value: vec4<f32>) -> vec4<f32> {
    tree_sum_scratch[lid] = value;
    workgroupBarrier();
    for (var stride = TREE_SUM_SIZE / 2u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            tree_sum_scratch[lid] = tree_sum_scratch[lid] + tree_sum_scratch[lid + stride];
        }
        workgroupBarrier();
    }
    return tree_sum_scratch[0];
}
