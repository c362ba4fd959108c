//! f64 references of `shaders/optim.wgsl`: global gradient norm with PyTorch's clip factor,
//! AdamW (torch.optim.AdamW's update), EMA.

pub use crate::kernels::optim::AdamW;

/// √(Σ g²).
pub fn grad_norm(g: &[f64]) -> f64 {
    g.iter().map(|v| v * v).sum::<f64>().sqrt()
}

/// min(1, max_norm/(norm + 1e-6)), as `torch.nn.utils.clip_grad_norm_`; 1 when max_norm is 0.
pub fn clip_factor(norm: f64, max_norm: f64) -> f64 {
    if max_norm > 0.0 {
        (max_norm / (norm + 1e-6)).min(1.0)
    } else {
        1.0
    }
}

/// One AdamW step (`step` counts from 1) on gradients already multiplied by the clip factor:
/// p ← p(1 − lr·wd); m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
/// p ← p − lr·(m/(1−β₁ᵗ))/(√(v/(1−β₂ᵗ)) + ε).
pub fn adamw_step(p: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64], step: u32, h: AdamW) {
    let bc1 = 1.0 - h.beta1.powi(step as i32);
    let bc2 = 1.0 - h.beta2.powi(step as i32);
    for i in 0..p.len() {
        p[i] *= 1.0 - h.lr * h.weight_decay;
        m[i] = h.beta1 * m[i] + (1.0 - h.beta1) * g[i];
        v[i] = h.beta2 * v[i] + (1.0 - h.beta2) * g[i] * g[i];
        p[i] -= h.lr * (m[i] / bc1) / ((v[i] / bc2).sqrt() + h.eps);
    }
}

/// ema ← decay·ema + (1 − decay)·p.
pub fn ema(ema: &mut [f64], p: &[f64], decay: f64) {
    for (e, v) in ema.iter_mut().zip(p) {
        *e = decay * *e + (1.0 - decay) * v;
    }
}
