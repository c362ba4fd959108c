//! CCUA's unconditional contrastive loss (`shaders/contrastive.wgsl`, docs/design.md#ccua) in f64:
//! the loss and its gradient with respect to the raw (unnormalised) feature rows.

/// The norm floor of the row normalisation (as `torch.nn.functional.normalize`).
pub const NORM_EPS: f64 = 1e-12;

/// What [`ucl`] returns.
pub struct UclOut {
    /// (1/B)·Σ_i w_i·UCL_i (without the loss scale α).
    pub loss: f64,
    /// scale·∂loss/∂h, (B, F).
    pub grad: Vec<f64>,
    /// cos_ij, (B, B).
    pub cosine: Vec<f64>,
}

/// `h`: B rows of F features; `w`: B weights t/T; `tau`: temperature; `scale`: α.
pub fn ucl(h: &[f64], w: &[f64], features: usize, tau: f64, scale: f64) -> UclOut {
    let n = w.len();
    let row = |i: usize| &h[i * features..(i + 1) * features];
    let norms: Vec<f64> = (0..n)
        .map(|i| {
            row(i)
                .iter()
                .map(|v| v * v)
                .sum::<f64>()
                .sqrt()
                .max(NORM_EPS)
        })
        .collect();
    let mut cosine = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            let dot: f64 = row(i).iter().zip(row(j)).map(|(a, b)| a * b).sum();
            cosine[i * n + j] = dot / (norms[i] * norms[j]);
        }
    }
    // A_ij = ∂L/∂cos_ij through UCL_i.
    let mut loss = 0.0;
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        let e: Vec<f64> = (0..n)
            .map(|j| {
                if j == i {
                    0.0
                } else {
                    ((cosine[i * n + j] - 1.0) / tau).exp()
                }
            })
            .collect();
        let s: f64 = e.iter().sum();
        loss += w[i] * (1.0 + s).ln() / n as f64;
        for j in 0..n {
            a[i * n + j] = scale * w[i] * e[j] / ((1.0 + s) * tau * n as f64);
        }
    }
    let mut grad = vec![0.0; n * features];
    for i in 0..n {
        for f in 0..features {
            let hhat = h[i * features + f] / norms[i];
            let (mut pull, mut radial) = (0.0, 0.0);
            for j in 0..n {
                let s = a[i * n + j] + a[j * n + i];
                pull += s * h[j * features + f] / norms[j];
                radial += s * cosine[i * n + j];
            }
            grad[i * features + f] = (pull - hhat * radial) / norms[i];
        }
    }
    UclOut { loss, grad, cosine }
}
