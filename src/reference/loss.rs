//! The IMBA loss and the baseline MSE in f64, straight from docs/design.md#the-imba-loss.

use crate::kernels::{DForm, Granularity, ImbaParams, Normalize, TokenShape};

/// Everything the fused kernel produces.
#[derive(Clone, Debug)]
pub struct ImbaOut {
    pub loss: f64,
    pub loss_cond: f64,
    pub loss_uncond: f64,
    pub mean_d: f64,
    /// D per token (B·N).
    pub weights: Vec<f64>,
    pub grad_cond: Vec<f64>,
    pub grad_uncond: Vec<f64>,
}

/// D per token from the unconditional prediction used for the weights (stop-gradient).
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
