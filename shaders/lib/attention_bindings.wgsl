// The attention family's uniform and bindings, shared by the portable and the tiled kernels
// (one launcher binds both the same way).

struct AttnParams {
    samples: u32,
    tokens: u32,
    heads: u32,
    head_dim: u32,
    dim: u32,
    scale: f32,
    groups_x: u32,
    pad: u32,
}

@group(0) @binding(0) var<uniform> P: AttnParams;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
// Forward: unused. Backward: O.
@group(0) @binding(2) var<storage, read> o_in: array<f32>;
// Forward: unused. Backward: dO.
@group(0) @binding(3) var<storage, read> d_o: array<f32>;
// Forward: O. attention_delta: δ. attention_dq / attention_dkv: dqkv (rows, 3·dim).
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
// Forward: writes lse (samples, heads, tokens). Backward: reads it.
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;
// attention_dq / attention_dkv: δ (samples, heads, tokens).
@group(0) @binding(6) var<storage, read> delta: array<f32>;
