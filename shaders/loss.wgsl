// Loss family: the fused IMBA concept-balancing loss (docs/design.md#the-imba-loss) and the plain baseline
// MSE, each producing its gradients and per-workgroup partial sums in one pass over the
// predictions, plus the deterministic finalisation to the loss scalars.
//
// Layouts: predictions, gradients and an explicit target are tokens (B, N, K) with
// K = p·p·C in (i, j, c) order (the DiT's output layout). With a Philox target the noise is
// regenerated from (seed, step) at each element's flat (B, C, H, W) index and never read
// from memory. One invocation handles one token.
//!include philox.wgsl
//!include tree_sum.wgsl

//!include loss_common.wgsl
//!include step_values.wgsl

@group(0) @binding(0) var<uniform> P: LossParams;
@group(0) @binding(1) var<storage, read> pred_cond: array<f32>;
@group(0) @binding(2) var<storage, read> pred_uncond: array<f32>;
// The explicit target (token layout) or, for the velocity target, x0 in (B,C,H,W) order: a
// launch has one or the other, never both, so they share a binding and the family stays
// within WebGPU's default of 8 storage buffers per stage.
@group(0) @binding(3) var<storage, read> target_data: array<f32>;
@group(0) @binding(4) var<storage, read_write> weights: array<f32>;
@group(0) @binding(5) var<storage, read_write> grad_cond: array<f32>;
@group(0) @binding(6) var<storage, read_write> grad_uncond: array<f32>;
// Workgroup partial sums; the last element holds the sum of D over all tokens (x component),
// written by `weights_total`, read when normalize == 1 (see weight_total_slot).
@group(0) @binding(7) var<storage, read_write> partials: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> scalars: array<f32>;
@group(0) @binding(9) var<uniform> S: StepValues;

// Walks a token's K values in (c, i, j) order, so that consecutive steps usually fall in the
// same Philox quad (the j-neighbours of a patch row are neighbours in the image), keeping the
// last quad's four normals. Positions advance by counters, not division: llvmpipe and many
// GPUs have no vector integer divide, so per-element div/mod dominated the first version.
struct Walk {
    // Position: channel c, patch row i, patch column j of token `slot` of the invocation's
    // run of adjacent tokens (see imba_fused; a run of one token otherwise); jj = slot·p + j.
    c: u32,
    i: u32,
    j: u32,
    slot: u32,
    jj: u32,
    // Flat (B,C,H,W) index of (c, 0, 0) of this token's patch.
    corner: u32,
    // Cached quad with its four Philox words, and the Box–Muller pair last computed from them
    // (pair 0 → words x, y; pair 1 → z, w): a token often needs only one pair of a quad.
    quad: u32,
    words: vec4<u32>,
    pair: u32,
    normals: vec2<f32>,
}

fn token_base(token: u32) -> u32 {
    return token * P.token_dim;
}

fn start_walk(token: u32) -> Walk {
    var w: Walk;
    w.c = 0u;
    w.i = 0u;
    w.j = 0u;
    w.slot = 0u;
    w.jj = 0u;
    w.quad = 0xFFFFFFFFu;
    w.words = vec4<u32>(0u);
    w.pair = 0xFFFFFFFFu;
    w.normals = vec2<f32>(0.0);
    w.corner = 0u;
    if (P.target_source == TARGET_PHILOX) {
        let p = P.patch_size;
        let b = token / P.tokens;
        let n = token % P.tokens;
        let tokens_w = P.width / p;
        w.corner = (b * P.channels * P.height + (n / tokens_w) * p) * P.width + (n % tokens_w) * p;
    }
    return w;
}

// Index within the token (i, j, c layout) of the current step; the m-th step when the
// target is explicit (walk order is then plain k order).
fn walk_k(w: ptr<function, Walk>, m: u32) -> u32 {
    if (P.target_source == TARGET_BUFFER) {
        return m;
    }
    return ((*w).i * P.patch_size + (*w).j) * P.channels + (*w).c;
}

fn walk_flat(w: ptr<function, Walk>) -> u32 {
    return (*w).corner + ((*w).c * P.height + (*w).i) * P.width + (*w).jj;
}

// Next position of a walk over `run` adjacent tokens: the columns of every token of the run,
// then patch rows, then channels.
fn walk_next_run(w: ptr<function, Walk>, run: u32) {
    (*w).jj = (*w).jj + 1u;
    (*w).j = (*w).j + 1u;
    if ((*w).j == P.patch_size) {
        (*w).j = 0u;
        (*w).slot = (*w).slot + 1u;
        if ((*w).slot == run) {
            (*w).slot = 0u;
            (*w).jj = 0u;
            (*w).i = (*w).i + 1u;
            if ((*w).i == P.patch_size) {
                (*w).i = 0u;
                (*w).c = (*w).c + 1u;
            }
        }
    }
}

fn walk_next(w: ptr<function, Walk>) {
    walk_next_run(w, 1u);
}

// Target value at the walk's position (k = walk_k).
fn target_value(token: u32, k: u32, w: ptr<function, Walk>) -> f32 {
    if (P.target_source == TARGET_BUFFER) {
        return target_data[token_base(token) + k];
    }
    let flat = walk_flat(w);
    let quad = flat >> 2u;
    if (quad != (*w).quad) {
        (*w).quad = quad;
        (*w).words = philox4x32_10(vec4<u32>(P.quad_base + quad, 0u, 0u, 0u), vec2<u32>(P.seed, S.step));
        (*w).pair = 0xFFFFFFFFu;
    }
    let pair = (flat >> 1u) & 1u;
    if (pair != (*w).pair) {
        (*w).pair = pair;
        let ab = select((*w).words.xy, (*w).words.zw, pair == 1u);
        (*w).normals = philox_box_muller(ab.x, ab.y);
    }
    let eps = select((*w).normals.x, (*w).normals.y, (flat & 1u) == 1u);
    if (P.target_kind == TARGET_VELOCITY) {
        return eps - target_data[flat];
    }
    return eps;
}


// Weight pass (token-wise D for the sample-wise or normalised variants): D per token into
// `weights`, and the workgroup's sum of D into `partials`.
@compute @workgroup_size(64)
fn imba_token_weights(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let group = linear_group(wid);
    let token = group * 64u + lid.x;
    var d = 0.0;
    if (token < P.batch * P.tokens) {
        var walk = start_walk(token);
        var abs_pow_sum = 0.0;
        var sq_sum = 0.0;
        for (var m = 0u; m < P.token_dim; m = m + 1u) {
            let k = walk_k(&walk, m);
            let diff_u = pred_uncond[token_base(token) + k] - target_value(token, k, &walk);
            walk_next(&walk);
            abs_pow_sum = abs_pow_sum + abs_pow(diff_u, P.gamma);
            sq_sum = sq_sum + diff_u * diff_u;
        }
        d = token_weight(abs_pow_sum, sq_sum);
        weights[token] = d;
    }
    let total = tree_sum(lid.x, vec4<f32>(d, 0.0, 0.0, 0.0));
    if (lid.x == 0u) {
        partials[group] = total;
    }
}

// Sample-wise variant: one workgroup per sample replaces its tokens' D by their mean
// (fixed summation order). The mean over the batch is unchanged by this, so the partial
// sums of the weight pass still give the batch mean.
@compute @workgroup_size(64)
fn imba_sample_mean(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let b = linear_group(wid);
    let in_range = b < P.batch;
    var s = 0.0;
    if (in_range) {
        for (var n = lid.x; n < P.tokens; n = n + 64u) {
            s = s + weights[b * P.tokens + n];
        }
    }
    let total = tree_sum(lid.x, vec4<f32>(s, 0.0, 0.0, 0.0));
    if (in_range) {
        let mean = total.x / f32(P.tokens);
        for (var n = lid.x; n < P.tokens; n = n + 64u) {
            weights[b * P.tokens + n] = mean;
        }
    }
}

// Values of ε_c − ε a run may keep in registers before D is known; larger runs stage them in
// the gradient buffer instead.
const PRIVATE_K: u32 = 64u;

// The fused pass. Per token: regenerate the target, write ∂L/∂ε_u, accumulate D's sums and
// the squared errors, then write ∂L/∂ε_c = 2λD(ε_c − ε)/(BNK) once D is known.
//
// Shaped for speed on llvmpipe, harmless elsewhere:
// - One invocation handles a run of T = tokens_per_thread adjacent tokens of a token row
//   (T = 4/gcd(p, 4) where the row allows, else 1; 1 for explicit targets), so each Philox
//   quad, which spans T tokens, is generated once.
// - Per-token sums live in four named accumulators chosen by `select`, not in an array
//   indexed by the token slot: llvmpipe cannot prove that index uniform and would spill it
//   lane by lane. `staged` is indexed by the loop counter; that costs about a memory
//   access per value on llvmpipe, still less than a write, read and write of the gradient.
// - The unscaled ε_c − ε waits in `staged` when T·K ≤ PRIVATE_K, else in grad_cond itself
//   (which this invocation alone touches).
// Partials: (Σ D·e_c, Σ e_u, Σ D, Σ e_c) with e = Σ_k (pred − target)².
@compute @workgroup_size(64)
fn imba_fused(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let group = linear_group(wid);
    let run = P.tokens_per_thread;
    let first = (group * 64u + lid.x) * run;
    var part = vec4<f32>(0.0);
    if (first < P.batch * P.tokens) {
        let grad_u_scale = 2.0 * (1.0 - P.lambda) * P.inv_count;
        let steps = run * P.token_dim;
        let in_registers = steps <= PRIVATE_K;
        let compute_d = P.weights_from_buffer == 0u && P.d_form == D_FORM_MEAN_ABS_POW && P.gamma != 0.0;
        var staged: array<f32, PRIVATE_K>;
        // Per token of the run: (Σ|ε−ε_u|^γ, Σ(ε_u−ε)², Σ(ε_c−ε)², 0).
        var acc0 = vec4<f32>(0.0);
        var acc1 = vec4<f32>(0.0);
        var acc2 = vec4<f32>(0.0);
        var acc3 = vec4<f32>(0.0);
        var walk = start_walk(first);
        for (var m = 0u; m < steps; m = m + 1u) {
            let slot = walk.slot;
            let token = first + slot;
            let k = walk_k(&walk, m);
            let tgt = target_value(token, k, &walk);
            walk_next_run(&walk, run);
            let at = token_base(token) + k;
            let diff_u = pred_uncond[at] - tgt;
            let diff_c = pred_cond[at] - tgt;
            grad_uncond[at] = grad_u_scale * diff_u;
            if (in_registers) {
                staged[m] = diff_c;
            } else {
                grad_cond[at] = diff_c;
            }
            var w = 0.0;
            if (compute_d) {
                w = abs_pow(diff_u, P.gamma);
            }
            let add = vec4<f32>(w, diff_u * diff_u, diff_c * diff_c, 0.0);
            let zero = vec4<f32>(0.0);
            acc0 = acc0 + select(zero, add, slot == 0u);
            acc1 = acc1 + select(zero, add, slot == 1u);
            acc2 = acc2 + select(zero, add, slot == 2u);
            acc3 = acc3 + select(zero, add, slot == 3u);
        }
        // D and the ∂L/∂ε_c scale of each token of the run (slots past the run unused).
        let d = run_weights(first, run, acc0, acc1, acc2, acc3);
        let scale = 2.0 * P.lambda * P.inv_count * d;
        part = run_partial(d, acc0, acc1, acc2, acc3);
        var again = start_walk(first);
        for (var m = 0u; m < steps; m = m + 1u) {
            let slot = again.slot;
            let at = token_base(first + slot) + walk_k(&again, m);
            walk_next_run(&again, run);
            let s = select(select(select(scale.x, scale.y, slot == 1u), scale.z, slot == 2u), scale.w, slot == 3u);
            if (in_registers) {
                grad_cond[at] = s * staged[m];
            } else {
                grad_cond[at] = s * grad_cond[at];
            }
        }
    }
    let total = tree_sum(lid.x, part);
    if (lid.x == 0u) {
        partials[linear_group(wid)] = total;
    }
}

// Baseline: L = mean (pred − target)² over the B rows of one (label-dropped) pass.
// Uses pred_cond / grad_cond; partials (Σ e, 0, 0, 0).
@compute @workgroup_size(64)
fn mse_fused(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let group = linear_group(wid);
    let token = group * 64u + lid.x;
    var part = vec4<f32>(0.0);
    if (token < P.batch * P.tokens) {
        let base = token_base(token);
        let scale = 2.0 * P.inv_count;
        var walk = start_walk(token);
        var sq = 0.0;
        for (var m = 0u; m < P.token_dim; m = m + 1u) {
            let k = walk_k(&walk, m);
            let diff = pred_cond[base + k] - target_value(token, k, &walk);
            walk_next(&walk);
            grad_cond[base + k] = scale * diff;
            sq = sq + diff * diff;
        }
        part = vec4<f32>(sq, 0.0, 0.0, 0.0);
    }
    let total = tree_sum(lid.x, part);
    if (lid.x == 0u) {
        partials[group] = total;
    }
}

// Sum of all partials by one workgroup, in a fixed order (each invocation a strided run,
// then the tree). A few thousand partials at most for real batches, so one workgroup is
// enough and no multi-pass reduction is needed.
fn sum_partials(lid: u32, count: u32) -> vec4<f32> {
    var s = vec4<f32>(0.0);
    for (var i = lid; i < count; i = i + 64u) {
        s = s + partials[i];
    }
    return tree_sum(lid, s);
}

// After `imba_token_weights`: Σ D over the batch, for the batch-mean normalisation.
@compute @workgroup_size(64)
fn weights_total(@builtin(local_invocation_id) lid: vec3<u32>) {
    // The weight pass runs one token per invocation.
    let total = sum_partials(lid.x, (P.batch * P.tokens + 63u) / 64u);
    if (lid.x == 0u) {
        partials[weight_total_slot()] = total;
    }
}

// The scalars [L, L_c, L_u, mean D] from the fused pass's partials. For the baseline
// (d_form == 3): [L, L, 0, 1].
@compute @workgroup_size(64)
fn loss_finalize(@builtin(local_invocation_id) lid: vec3<u32>) {
    let total = sum_partials(lid.x, P.partial_count);
    if (lid.x == 0u) {
        if (P.d_form == D_FORM_BASELINE) {
            let l = total.x * P.inv_count;
            scalars[0] = l;
            scalars[1] = l;
            scalars[2] = 0.0;
            scalars[3] = 1.0;
        } else {
            let l_c = total.x * P.inv_count;
            let l_u = total.y * P.inv_count;
            scalars[0] = P.lambda * l_c + (1.0 - P.lambda) * l_u;
            scalars[1] = l_c;
            scalars[2] = l_u;
            scalars[3] = total.z / f32(P.batch * P.tokens);
        }
    }
}
