//! The IMBA loss and the baseline MSE in f64, straight from docs/design.md#the-imba-loss.

use crate::kernels::{DForm, Granularity, ImbaParams, Normalize, TokenShape};

/// Everything the fused kernel produces.
#[derive(Clone, Debug)]
pub struct ImbaOut {
    /// L = λ·L_c + (1−λ)·L_u.
    pub loss: f64,
    /// L_c, the D-weighted conditional loss.
    pub loss_cond: f64,
    /// L_u, the unconditional loss.
    pub loss_uncond: f64,
    /// The mean of D over the tokens.
    pub mean_d: f64,
    /// D per token (B·N).
    pub weights: Vec<f64>,
    /// ∂L/∂ε_c (B·N·K).
    pub grad_cond: Vec<f64>,
    /// ∂L/∂ε_u (B·N·K).
    pub grad_uncond: Vec<f64>,
}

/// D per token from the unconditional prediction used for the weights (stop-gradient).
/// [`Normalize::TBucket`] keeps state across steps and is applied by [`time_normalize`]
/// (here D is left unnormalised).
pub fn weights(shape: TokenShape, pred_uncond: &[f64], target: &[f64], p: &ImbaParams) -> Vec<f64> {
    let (bn, k) = (shape.rows() as usize, shape.token_dim as usize);
    let mut d: Vec<f64> = (0..bn)
        .map(|t| {
            if p.gamma == 0.0 {
                return 1.0;
            }
            let g = p.gamma as f64;
            let diffs = (0..k).map(|i| pred_uncond[t * k + i] - target[t * k + i]);
            let pow = |x: f64, e: f64| if x == 0.0 { 0.0 } else { x.abs().powf(e) };
            match p.form {
                DForm::MeanAbsPow => diffs.map(|x| pow(x, g)).sum::<f64>() / k as f64,
                DForm::PowOfRms => pow(diffs.map(|x| x * x).sum::<f64>() / k as f64, g / 2.0),
                DForm::PowOfMse => pow(diffs.map(|x| x * x).sum::<f64>() / k as f64, g),
            }
        })
        .collect();
    if p.granularity == Granularity::Sample {
        let n = shape.tokens as usize;
        for row in d.chunks_mut(n) {
            let m = row.iter().sum::<f64>() / n as f64;
            row.iter_mut().for_each(|x| *x = m);
        }
    }
    if p.normalize == Normalize::BatchMean {
        let m = d.iter().sum::<f64>() / bn as f64;
        if m > 0.0 {
            d.iter_mut().for_each(|x| *x /= m);
        }
    }
    d
}

/// The loss value with D taken from `pred_uncond_for_weights` (so that finite differences
/// can hold D fixed, as the stop-gradient does).
pub fn imba_value(
    shape: TokenShape,
    pred_cond: &[f64],
    pred_uncond: &[f64],
    pred_uncond_for_weights: &[f64],
    target: &[f64],
    p: &ImbaParams,
) -> f64 {
    imba_with_weights(
        shape,
        pred_cond,
        pred_uncond,
        target,
        p,
        weights(shape, pred_uncond_for_weights, target, p),
    )
    .loss
}

/// Loss, scalars, D and both gradients.
pub fn imba(
    shape: TokenShape,
    pred_cond: &[f64],
    pred_uncond: &[f64],
    target: &[f64],
    p: &ImbaParams,
) -> ImbaOut {
    let d = weights(shape, pred_uncond, target, p);
    imba_with_weights(shape, pred_cond, pred_uncond, target, p, d)
}

/// The dual loss with given per-token weights `w` (B·N) in place of D: loss, scalars (mean D
/// is the mean weight) and both gradients.
pub fn weighted(
    shape: TokenShape,
    pred_cond: &[f64],
    pred_uncond: &[f64],
    target: &[f64],
    lambda: f32,
    w: &[f64],
) -> ImbaOut {
    let p = ImbaParams {
        lambda,
        ..ImbaParams::default()
    };
    imba_with_weights(shape, pred_cond, pred_uncond, target, &p, w.to_vec())
}

fn imba_with_weights(
    shape: TokenShape,
    pred_cond: &[f64],
    pred_uncond: &[f64],
    target: &[f64],
    p: &ImbaParams,
    d: Vec<f64>,
) -> ImbaOut {
    let k = shape.token_dim as usize;
    let count = shape.elements() as f64;
    let lambda = p.lambda as f64;
    let (mut sum_c, mut sum_u) = (0.0, 0.0);
    let mut grad_cond = vec![0.0; pred_cond.len()];
    let mut grad_uncond = vec![0.0; pred_cond.len()];
    for (t, &dt) in d.iter().enumerate() {
        for i in t * k..(t + 1) * k {
            let ec = pred_cond[i] - target[i];
            let eu = pred_uncond[i] - target[i];
            sum_c += dt * ec * ec;
            sum_u += eu * eu;
            grad_cond[i] = 2.0 * lambda * dt * ec / count;
            grad_uncond[i] = 2.0 * (1.0 - lambda) * eu / count;
        }
    }
    let (loss_cond, loss_uncond) = (sum_c / count, sum_u / count);
    ImbaOut {
        loss: lambda * loss_cond + (1.0 - lambda) * loss_uncond,
        loss_cond,
        loss_uncond,
        mean_d: d.iter().sum::<f64>() / d.len() as f64,
        weights: d,
        grad_cond,
        grad_uncond,
    }
}

/// The time-bucket normalisation: updates each bucket's running means (m_k, w_k) in `state`
/// with the mean sample D of its samples this step, then divides every token's D by the
/// corrected mean m_k / w_k of its sample's bucket (bucket values ≥ K count as K − 1).
pub fn time_normalize(
    shape: TokenShape,
    d: &mut [f64],
    sample_bucket: &[u32],
    state: &mut [f64],
    decay: f64,
) {
    let (n, k) = (shape.tokens as usize, state.len() / 2);
    let bucket = |b: usize| (sample_bucket[b] as usize).min(k - 1);
    let mut divisor = vec![1.0; k];
    for (j, div) in divisor.iter_mut().enumerate() {
        let means: Vec<f64> = (0..shape.batch as usize)
            .filter(|&b| bucket(b) == j)
            .map(|b| d[b * n..(b + 1) * n].iter().sum::<f64>() / n as f64)
            .collect();
        if !means.is_empty() {
            let mean = means.iter().sum::<f64>() / means.len() as f64;
            state[2 * j] = decay * state[2 * j] + (1.0 - decay) * mean;
            state[2 * j + 1] = decay * state[2 * j + 1] + (1.0 - decay);
        }
        if state[2 * j + 1] > 0.0 {
            *div = (state[2 * j] / state[2 * j + 1]).max(1e-30);
        }
    }
    for (i, x) in d.iter_mut().enumerate() {
        *x /= divisor[bucket(i / n)];
    }
}

/// The time buckets of [`imba_time_normalized`]: each sample's bucket, the running
/// (Σ D, count) per bucket (advanced by a call) and the decay.
pub struct TimeState<'a> {
    /// Each sample's bucket.
    pub sample_bucket: &'a [u32],
    /// The running (Σ D, count) per bucket, 2·K values.
    pub state: &'a mut [f64],
    /// The running means' decay.
    pub decay: f64,
}

/// IMBA with time-bucket normalised D: [`imba`]'s outputs with D passed through
/// [`time_normalize`] (which advances `time.state`).
pub fn imba_time_normalized(
    shape: TokenShape,
    pred_cond: &[f64],
    pred_uncond: &[f64],
    target: &[f64],
    p: &ImbaParams,
    time: TimeState,
) -> ImbaOut {
    let mut d = weights(shape, pred_uncond, target, p);
    time_normalize(shape, &mut d, time.sample_bucket, time.state, time.decay);
    imba_with_weights(shape, pred_cond, pred_uncond, target, p, d)
}

/// Each token's mean squared error mean_k (pred − target)² (B·N values).
pub fn token_mse(shape: TokenShape, pred: &[f64], target: &[f64]) -> Vec<f64> {
    let k = shape.token_dim as usize;
    pred.chunks(k)
        .zip(target.chunks(k))
        .map(|(p, t)| p.iter().zip(t).map(|(a, b)| (a - b) * (a - b)).sum::<f64>() / k as f64)
        .collect()
}

/// Baseline: (mean (pred − target)², its gradient).
pub fn mse(pred: &[f64], target: &[f64]) -> (f64, Vec<f64>) {
    let n = pred.len() as f64;
    let loss = pred
        .iter()
        .zip(target)
        .map(|(p, t)| (p - t) * (p - t))
        .sum::<f64>()
        / n;
    let grad = pred
        .iter()
        .zip(target)
        .map(|(p, t)| 2.0 * (p - t) / n)
        .collect();
    (loss, grad)
}

/// f32 → f64.
pub fn widen(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}
