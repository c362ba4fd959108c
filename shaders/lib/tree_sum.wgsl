// Deterministic workgroup sum of one vec4 per invocation (fixed order, no atomics), returned
// to every invocation. Two barriers rather than a log2(64)-level tree: on llvmpipe every
// barrier is a coroutine switch per subgroup, and a 7-barrier tree cost a quarter of the
// fused loss's time. Eight invocations each add a row of eight, then every invocation adds
// the eight row sums in the same order. The including shader must use
// @workgroup_size(TREE_SUM_SIZE) and call this from uniform control flow.
const TREE_SUM_SIZE: u32 = 64u;
var<workgroup> tree_sum_values: array<vec4<f32>, 64>;
var<workgroup> tree_sum_rows: array<vec4<f32>, 8>;

fn tree_sum(lid: u32, value: vec4<f32>) -> vec4<f32> {
    tree_sum_values[lid] = value;
    workgroupBarrier();
    if (lid < 8u) {
        var s = vec4<f32>(0.0);
        for (var r = 0u; r < 8u; r = r + 1u) {
            s = s + tree_sum_values[lid * 8u + r];
        }
        tree_sum_rows[lid] = s;
    }
    workgroupBarrier();
    var total = vec4<f32>(0.0);
    for (var r = 0u; r < 8u; r = r + 1u) {
        total = total + tree_sum_rows[r];
    }
    return total;
}
