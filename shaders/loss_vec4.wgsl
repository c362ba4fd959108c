// Loss family, vector path: `imba_fused` of loss.wgsl specialised at pipeline creation for
// one patch geometry, with vec4 loads and stores. Same math, same partials and outputs, same
// bind-group layout; the launcher picks it when the shape allows (see `LossKernels`), and
// loss.wgsl stays the portable path and its reference.
//
// Why it is faster on llvmpipe (docs/design.md#what-is-fast-where): every per-lane-varying access, to memory or to a
// private array indexed by a variable, becomes a loop of scalar accesses there. This kernel
// has no indexed private array: the noise of a token run comes four channel rows at a time
// (four Philox quads), is transposed in registers into vec4s of four channels of one pixel,
// which is one vec4 of the token layout (i, j, c) when C is a multiple of 4, and is used at
// once. ε_c − ε waits in registers until D is known (see `stage`), or, for runs of more than
// MAX_SLOTS vec4s, in grad_cond, which only this invocation touches.
//
// Layouts as in loss.wgsl: tokens (B, N, K), K = p·p·C in (i, j, c) order; the Philox
// noise of element (b, c, h, w) is normal (flat & 3) of quad flat >> 2, flat = ((b·C + c)·H
// + h)·W + w.
//!include philox.wgsl
//!include loss_common.wgsl
//!include step_values.wgsl

// Patch size p and channels C of the image geometry (C a multiple of 4; unused when
// EXPLICIT_TARGET), token dimension K (a multiple of 4), and RUN: horizontally adjacent
// tokens per invocation (1, 2 or 4), chosen so that RUN·p is a multiple of 4 and every
// Philox quad of the run lies inside it.
override PATCH: u32 = 2u;
override CHANNELS: u32 = 4u;
override TOKEN_DIM: u32 = 16u;
override RUN: u32 = 2u;
// The target is read from `target_data` (token layout) instead of regenerated.
override EXPLICIT_TARGET: bool = false;

@group(0) @binding(0) var<uniform> P: LossParams;
@group(0) @binding(1) var<storage, read> pred_cond: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> pred_uncond: array<vec4<f32>>;
// The explicit target or, for the velocity target, x0 (one or the other; see loss.wgsl);
// x0 is read as vec4s of four horizontally adjacent pixels: a Philox quad's pixels.
@group(0) @binding(3) var<storage, read> target_data: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> weights: array<f32>;
@group(0) @binding(5) var<storage, read_write> grad_cond: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> grad_uncond: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> partials: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> scalars: array<f32>;
@group(0) @binding(9) var<uniform> S: StepValues;

// Per-token sums of a run: slot t holds (Σ|ε−ε_u|^γ, Σ(ε_u−ε)², Σ(ε_c−ε)², 0). Four named
// vectors chosen by `select`, not an array indexed by t (see the header).
struct RunSums {
    s0: vec4<f32>,
    s1: vec4<f32>,
    s2: vec4<f32>,
    s3: vec4<f32>,
}

fn add_to_slot(sums: ptr<function, RunSums>, t: u32, add: vec4<f32>) {
    let zero = vec4<f32>(0.0);
    (*sums).s0 = (*sums).s0 + select(zero, add, t == 0u);
    (*sums).s1 = (*sums).s1 + select(zero, add, t == 1u);
    (*sums).s2 = (*sums).s2 + select(zero, add, t == 2u);
    (*sums).s3 = (*sums).s3 + select(zero, add, t == 3u);
}

// vec4s of a run kept in registers until D is known: ε_c − ε of vec4 `at` goes to slot
// at − first·K/4. Runs with more slots park ε_c − ε in grad_cond instead.
const MAX_SLOTS: u32 = 16u;
override SLOTS: u32 = RUN * TOKEN_DIM / 4u;

// staged[slot] = v, as a select over every slot: a variable index into a private array
// costs a loop over lanes on llvmpipe, while this loop unrolls to constant indices and the
// array to registers.
fn stage(staged: ptr<function, array<vec4<f32>, MAX_SLOTS>>, slot: u32, v: vec4<f32>) {
    for (var k = 0u; k < SLOTS; k = k + 1u) {
        (*staged)[k] = select((*staged)[k], v, k == slot);
    }
}

// One vec4 of the token layout at vec4 index `at` with its target: ∂L/∂ε_u written,
// ε_c − ε staged (or parked in grad_cond), and the sums it adds to its token.
fn visit(staged: ptr<function, array<vec4<f32>, MAX_SLOTS>>, first: u32, at: u32, tgt: vec4<f32>, grad_u_scale: f32, compute_d: bool) -> vec4<f32> {
    let diff_u = pred_uncond[at] - tgt;
    let diff_c = pred_cond[at] - tgt;
    grad_uncond[at] = grad_u_scale * diff_u;
    if (SLOTS <= MAX_SLOTS) {
        stage(staged, at - first * (TOKEN_DIM / 4u), diff_c);
    } else {
        grad_cond[at] = diff_c;
    }
    var w = 0.0;
    if (compute_d) {
        w = dot(abs_pow4(diff_u, P.gamma), vec4<f32>(1.0));
    }
    return vec4<f32>(w, dot(diff_u, diff_u), dot(diff_c, diff_c), 0.0);
}

// Component t of v (t < 4) by `select`, not by a variable index (see the header).
fn component(v: vec4<f32>, t: u32) -> f32 {
    return select(select(select(v.x, v.y, t == 1u), v.z, t == 2u), v.w, t == 3u);
}

// Philox target of four channel rows (c..c+3) at one pixel row of the run: quad `quad` of
// channel c and the same quad of the next three channel planes (counters offset by the
// shard's quad_base; x0 is the shard's own), each minus x0 for the velocity target. Column r of the result's transpose is one pixel's four channels.
fn target_quads(quad: u32, plane: u32) -> mat4x4<f32> {
    var m = mat4x4<f32>(
        philox_normals4(P.quad_base + quad, 0u, P.seed, S.step),
        philox_normals4(P.quad_base + quad + plane, 0u, P.seed, S.step),
        philox_normals4(P.quad_base + quad + 2u * plane, 0u, P.seed, S.step),
        philox_normals4(P.quad_base + quad + 3u * plane, 0u, P.seed, S.step),
    );
    if (P.target_kind == TARGET_VELOCITY) {
        m = m - mat4x4<f32>(target_data[quad], target_data[quad + plane], target_data[quad + 2u * plane], target_data[quad + 3u * plane]);
    }
    return transpose(m);
}

// Channels 4·c4..4·c4+3 at pixel (i, col) of the run, col counted from the run's first pixel
// column: token t = col / p of the run, its patch column j = col % p.
fn visit_column(sums: ptr<function, RunSums>, staged: ptr<function, array<vec4<f32>, MAX_SLOTS>>, first: u32, i: u32, col: u32, c4: u32, tgt: vec4<f32>, grad_u_scale: f32, compute_d: bool) {
    let t = col / PATCH;
    let at = (first + t) * (TOKEN_DIM / 4u) + ((i * PATCH + col % PATCH) * CHANNELS) / 4u + c4;
    add_to_slot(sums, t, visit(staged, first, at, tgt, grad_u_scale, compute_d));
}

// One invocation per run of RUN tokens. First sweep: targets, ∂L/∂ε_u, the sums, ε_c − ε
// parked; then D per token; second sweep: ∂L/∂ε_c = 2λD(ε_c − ε)/(BNK) in place.
// Partials: (Σ D·e_c, Σ e_u, Σ D, Σ e_c) with e = Σ_k (pred − target)², as in loss.wgsl.
@compute @workgroup_size(64)
fn imba_fused_vec4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let group = linear_group(wid);
    let first = (group * 64u + lid.x) * RUN;
    if (first < P.batch * P.tokens) {
        let vecs = TOKEN_DIM / 4u;
        let grad_u_scale = 2.0 * (1.0 - P.lambda) * P.inv_count;
        let compute_d = P.weights_from_buffer == 0u && P.d_form == D_FORM_MEAN_ABS_POW && P.gamma != 0.0;
        var sums = RunSums(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
        var staged: array<vec4<f32>, MAX_SLOTS>;
        if (EXPLICIT_TARGET) {
            for (var t = 0u; t < RUN; t = t + 1u) {
                for (var v = 0u; v < vecs; v = v + 1u) {
                    let at = (first + t) * vecs + v;
                    add_to_slot(&sums, t, visit(&staged, first, at, target_data[at], grad_u_scale, compute_d));
                }
            }
        } else {
            let b = first / P.tokens;
            let n = first % P.tokens;
            let tokens_w = P.width / PATCH;
            // Quad of (b, c = 0, first pixel row of the run's patches, first column).
            let corner = ((b * CHANNELS * P.height + (n / tokens_w) * PATCH) * P.width + (n % tokens_w) * PATCH) >> 2u;
            let plane = (P.height * P.width) >> 2u;
            let quads_per_row = RUN * PATCH / 4u;
            for (var i = 0u; i < PATCH; i = i + 1u) {
                for (var q = 0u; q < quads_per_row; q = q + 1u) {
                    for (var c4 = 0u; c4 < CHANNELS / 4u; c4 = c4 + 1u) {
                        let quad = corner + (4u * c4 * P.height + i) * (P.width >> 2u) + q;
                        let tgt = target_quads(quad, plane);
                        // Written out for constant column indices into `tgt`.
                        visit_column(&sums, &staged, first, i, q * 4u, c4, tgt[0], grad_u_scale, compute_d);
                        visit_column(&sums, &staged, first, i, q * 4u + 1u, c4, tgt[1], grad_u_scale, compute_d);
                        visit_column(&sums, &staged, first, i, q * 4u + 2u, c4, tgt[2], grad_u_scale, compute_d);
                        visit_column(&sums, &staged, first, i, q * 4u + 3u, c4, tgt[3], grad_u_scale, compute_d);
                    }
                }
            }
        }
        let d = run_weights(first, RUN, sums.s0, sums.s1, sums.s2, sums.s3);
        let part = run_partial(d, sums.s0, sums.s1, sums.s2, sums.s3);
        let scale = 2.0 * P.lambda * P.inv_count * d;
        for (var slot = 0u; slot < SLOTS; slot = slot + 1u) {
            let at = first * vecs + slot;
            let s = component(scale, slot / vecs);
            if (SLOTS <= MAX_SLOTS) {
                grad_cond[at] = s * staged[slot];
            } else {
                grad_cond[at] = s * grad_cond[at];
            }
        }
        // One partial per invocation rather than per workgroup: a workgroup sum needs
        // barriers, which cost llvmpipe more than the finalisation's extra reads.
        partials[first / RUN] = part;
    }
}
