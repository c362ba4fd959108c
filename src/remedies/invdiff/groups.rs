//! Soft groups from per-sample losses: their means and spread, the inference that
//! maximises the spread, and the group loss with its gradient (all on the host: B×G numbers).

use super::*;

/// The group-mean losses L_g = Σ_i W_ig l_i / Σ_i W_ig and the group masses Σ_i W_ig.
pub fn group_means(losses: &[f64], w: &[f64], g: usize) -> (Vec<f64>, Vec<f64>) {
    let mut num = vec![0.0; g];
    let mut mass = vec![0.0; g];
    for (i, &l) in losses.iter().enumerate() {
        for k in 0..g {
            num[k] += w[i * g + k] * l;
            mass[k] += w[i * g + k];
        }
    }
    let means = (0..g)
        .map(|k| if mass[k] > 0.0 { num[k] / mass[k] } else { 0.0 })
        .collect();
    (means, mass)
}

/// The objective of group inference: the (unbiased) standard deviation of the group-mean
/// losses, and its gradient with respect to W.
pub fn group_spread(losses: &[f64], w: &[f64], g: usize) -> (f64, Vec<f64>) {
    let (means, mass) = group_means(losses, w, g);
    let mean = means.iter().sum::<f64>() / g as f64;
    let var = means.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / (g - 1) as f64;
    let std = var.sqrt();
    let mut grad = vec![0.0; w.len()];
    if std == 0.0 {
        return (0.0, grad);
    }
    // ∂std/∂L_g = (L_g − L̄)/((G − 1)·std); ∂L_g/∂W_ig = (l_i − L_g)/mass_g.
    let dm: Vec<f64> = means
        .iter()
        .map(|m| (m - mean) / ((g - 1) as f64 * std))
        .collect();
    for (i, &l) in losses.iter().enumerate() {
        for k in 0..g {
            if mass[k] > 0.0 {
                grad[i * g + k] = dm[k] * (l - means[k]) / mass[k];
            }
        }
    }
    (std, grad)
}

/// Soft group assignments (N, G) maximising [`group_spread`]: Philox-uniform start, rows
/// normalised; Adam ascent; clamp at 0 and renormalise each row after every step.
pub fn infer_groups(losses: &[f64], g: usize, epochs: u32, lr: f64, seed: u32) -> Vec<f64> {
    let n = losses.len();
    let mut w: Vec<f64> = (0..n * g)
        .map(|k| {
            let u = philox4x32_10([k as u32, 6, 0, 0], [seed, 0])[0];
            1e-3 + (u >> 8) as f64 / (1u32 << 24) as f64
        })
        .collect();
    normalise_rows(&mut w, g);
    let (mut m, mut v) = (vec![0.0; w.len()], vec![0.0; w.len()]);
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
    for e in 1..=epochs as i32 {
        let (_, grad) = group_spread(losses, &w, g);
        for k in 0..w.len() {
            m[k] = b1 * m[k] + (1.0 - b1) * grad[k];
            v[k] = b2 * v[k] + (1.0 - b2) * grad[k] * grad[k];
            let mh = m[k] / (1.0 - b1.powi(e));
            let vh = v[k] / (1.0 - b2.powi(e));
            w[k] = (w[k] + lr * mh / (vh.sqrt() + eps)).max(0.0);
        }
        normalise_rows(&mut w, g);
    }
    w
}

fn normalise_rows(w: &mut [f64], g: usize) {
    for row in w.chunks_mut(g) {
        let s: f64 = row.iter().sum();
        if s > 0.0 {
            row.iter_mut().for_each(|v| *v /= s);
        } else {
            row.iter_mut().for_each(|v| *v = 1.0 / g as f64);
        }
    }
}

/// Groups lighter than this in a batch count as empty.
const EMPTY_GROUP: f64 = 1e-8;

/// The δ training loss of one batch: per-sample losses `l` (B) and their rows of W (B, G) →
/// (mean_g L_g + λ·Var_g L_g over the non-empty groups, ∂loss/∂l_i).
pub fn group_loss(l: &[f64], w: &[f64], g: usize, var_weight: f64) -> (f64, Vec<f64>) {
    let (means, mass) = group_means(l, w, g);
    let live: Vec<usize> = (0..g).filter(|&k| mass[k] > EMPTY_GROUP).collect();
    let k = live.len() as f64;
    let mean = live.iter().map(|&q| means[q]).sum::<f64>() / k;
    let var = if live.len() > 1 {
        live.iter().map(|&q| (means[q] - mean).powi(2)).sum::<f64>() / (k - 1.0)
    } else {
        0.0
    };
    let mut dl_dg = vec![0.0; g];
    for &q in &live {
        dl_dg[q] = 1.0 / k
            + if live.len() > 1 {
                var_weight * 2.0 * (means[q] - mean) / (k - 1.0)
            } else {
                0.0
            };
    }
    let grad = (0..l.len())
        .map(|i| {
            live.iter()
                .map(|&q| dl_dg[q] * w[i * g + q] / mass[q])
                .sum()
        })
        .collect();
    (mean + var_weight * var, grad)
}
