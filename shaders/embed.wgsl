// Embedding family: what feeds the DiT blocks, and its backward.
//   tokens_forward     x[r·B' + b, n, :] = patch[b, n, :] + pos[n, :]  for each repeat r
//                      (the dual forward runs the same B patch embeddings twice: y, then ∅)
//   fold_repeats       out[i] (+)= Σ_r in[r·len + i]  (the backward of any repeat: the patch
//                      embedding's and the timestep embedding's gradients sum both halves)
//   condition_forward  c[row, :] = t_emb[row mod B, :] + Σ_k table[label[row, k], :]
//   label_backward     dtable[j, :] (+)= Σ_{(row, k): label[row, k] = j} dc[row, :]
// Labels are u32 rows of `slots` entries; NO_LABEL (0xFFFFFFFF, or any value ≥ the table's
// rows) marks an empty slot (samples with fewer concepts than slots). The label backward gives each table entry to one invocation
// that scans the labels in order: deterministic, no atomics.

struct EmbedParams {
    // tokens_forward / fold_repeats: values per repeat (B·N·D or B·D) and the repeat count.
    len: u32,
    repeats: u32,
    // pos period (N·D): pos is indexed by i mod period.
    period: u32,
    // condition_forward / label_backward: rows (R), batch B (t_emb rows), D, label slots, table rows.
    rows: u32,
    batch: u32,
    dim: u32,
    slots: u32,
    table_rows: u32,
    accumulate: u32,
    groups_x: u32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> P: EmbedParams;
// tokens_forward: patch embeddings. fold_repeats: the repeated gradient.
// condition_forward: t_emb (B, D). label_backward: dc (R, D).
@group(0) @binding(1) var<storage, read> src: array<f32>;
// tokens_forward: pos (N, D). condition_forward: the label table.
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read> labels: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

//!include grid64.wgsl

//!include put.wgsl

@compute @workgroup_size(64)
fn tokens_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = invocation(wid, lid);
    if (i >= P.len) {
        return;
    }
    let v = src[i] + table[i % P.period];
    for (var r = 0u; r < P.repeats; r++) {
        out[r * P.len + i] = v;
    }
}

@compute @workgroup_size(64)
fn fold_repeats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = invocation(wid, lid);
    if (i >= P.len) {
        return;
    }
    var sum = 0.0;
    for (var r = 0u; r < P.repeats; r++) {
        sum += src[r * P.len + i];
    }
    put(i, sum);
}

@compute @workgroup_size(64)
fn condition_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = invocation(wid, lid);
    if (i >= P.rows * P.dim) {
        return;
    }
    let row = i / P.dim;
    let d = i - row * P.dim;
    var v = src[(row % P.batch) * P.dim + d];
    for (var k = 0u; k < P.slots; k++) {
        let j = labels[row * P.slots + k];
        // Launchers validate labels; the bound keeps a bad one from reading past the table.
        if (j < P.table_rows) {
            v += table[j * P.dim + d];
        }
    }
    out[i] = v;
}

@compute @workgroup_size(64)
fn label_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = invocation(wid, lid);
    if (i >= P.table_rows * P.dim) {
        return;
    }
    let j = i / P.dim;
    let d = i - j * P.dim;
    var sum = 0.0;
    for (var row = 0u; row < P.rows; row++) {
        for (var k = 0u; k < P.slots; k++) {
            if (labels[row * P.slots + k] == j) {
                sum += src[row * P.dim + d];
            }
        }
    }
    put(i, sum);
}
