// Time-bucket normalisation of IMBA's weight D (an imba extension, not part of the paper).
//
// With ε-prediction the unconditional error that D measures depends far more on the timestep
// than on the concept: it is large at low noise and small at high noise. Dividing each
// sample's D by the running mean of D among samples of its timestep bucket removes that
// timestep trend and keeps what is left: how atypical a sample is *for its noise level*.
//
// State per bucket k: (m_k, w_k), exponential moving averages with decay β of the bucket's
// mean sample D and of 1. m_k / w_k is the bias-corrected running mean (as Adam's moments).
// Two launches of one workgroup:
//   1. `time_norm_sums`: invocation k (< buckets) sums the token-mean D of the samples of
//      bucket k this step, in sample order, and counts them into `sums`;
//   2. `time_norm_apply`: invocation k updates (m_k, w_k) from (sum, count) when the bucket
//      had samples, then every token's D is divided by the corrected mean of its bucket.
// Between the two, data-parallel training adds up every process's `sums` (in rank order), so
// the state follows the whole batch. The update comes first, so a bucket's first step
// divides by its own batch mean and the divisor is never an unset state. Everything runs in
// a fixed order: bit-reproducible.

struct TimeNormParams {
    batch: u32,
    tokens: u32,
    buckets: u32,
    decay: f32,
}

@group(0) @binding(0) var<uniform> P: TimeNormParams;
// D per token (B, N), divided in place.
@group(0) @binding(1) var<storage, read_write> weights: array<f32>;
// Bucket of each sample (B), each < buckets (larger values count as the last bucket).
@group(0) @binding(2) var<storage, read> sample_bucket: array<u32>;
// (m_k, w_k) per bucket, 2·buckets f32, carried from step to step.
@group(0) @binding(3) var<storage, read_write> state: array<f32>;
// (sum of sample-mean D, sample count) per bucket this step, 2·buckets f32.
@group(0) @binding(4) var<storage, read_write> sums: array<f32>;

const MAX_BUCKETS: u32 = 64u;

// The divisor of each bucket after this step's update.
var<workgroup> divisor: array<f32, MAX_BUCKETS>;

fn bucket_of(b: u32) -> u32 {
    return min(sample_bucket[b], P.buckets - 1u);
}

// A floor under the divisor: a bucket whose every D is 0 (γ > 0 and a perfect unconditional
// prediction) keeps D = 0 instead of dividing by zero.
const TINY: f32 = 1e-30;

@compute @workgroup_size(64)
fn time_norm_sums(@builtin(local_invocation_id) lid: vec3<u32>) {
    let k = lid.x;
    if (k >= P.buckets) {
        return;
    }
    var sum = 0.0;
    var count = 0u;
    for (var b = 0u; b < P.batch; b = b + 1u) {
        if (bucket_of(b) == k) {
            var s = 0.0;
            for (var n = 0u; n < P.tokens; n = n + 1u) {
                s = s + weights[b * P.tokens + n];
            }
            sum = sum + s / f32(P.tokens);
            count = count + 1u;
        }
    }
    sums[2u * k] = sum;
    // Exact: counts stay far below 2^24.
    sums[2u * k + 1u] = f32(count);
}

@compute @workgroup_size(64)
fn time_norm_apply(@builtin(local_invocation_id) lid: vec3<u32>) {
    let k = lid.x;
    if (k < P.buckets) {
        let sum = sums[2u * k];
        let count = sums[2u * k + 1u];
        var m = state[2u * k];
        var w = state[2u * k + 1u];
        if (count > 0.0) {
            m = P.decay * m + (1.0 - P.decay) * (sum / count);
            w = P.decay * w + (1.0 - P.decay);
            state[2u * k] = m;
            state[2u * k + 1u] = w;
        }
        var d = 1.0;
        if (w > 0.0) {
            d = max(m / w, TINY);
        }
        divisor[k] = d;
    }
    workgroupBarrier();
    let total = P.batch * P.tokens;
    for (var i = lid.x; i < total; i = i + 64u) {
        weights[i] = weights[i] / divisor[bucket_of(i / P.tokens)];
    }
}
