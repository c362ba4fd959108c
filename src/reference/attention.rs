//! f64 reference of `shaders/attention.wgsl`: multi-head self-attention from a fused
//! (rows, 3·dim) qkv, written with the explicit N×N probability matrix per (sample, head),
//! the textbook way (the kernels never form it).

/// Geometry of one attention launch.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    /// Sequences.
    pub samples: usize,
    /// Rows per sequence.
    pub tokens: usize,
    /// Heads.
    pub heads: usize,
    /// Values per head.
    pub head_dim: usize,
}

impl AttentionShape {
    fn dim(&self) -> usize {
        self.heads * self.head_dim
    }
    fn scale(&self) -> f64 {
        1.0 / (self.head_dim as f64).sqrt()
    }
    /// Index of (sample, token, part q/k/v, head, d) in qkv.
    fn qkv(&self, s: usize, n: usize, part: usize, h: usize, d: usize) -> usize {
        (s * self.tokens + n) * 3 * self.dim() + part * self.dim() + h * self.head_dim + d
    }
    fn o(&self, s: usize, n: usize, h: usize, d: usize) -> usize {
        (s * self.tokens + n) * self.dim() + h * self.head_dim + d
    }
    /// softmax(Q·Kᵀ·scale) of (sample, head), row-major N×N.
    fn probabilities(&self, qkv: &[f64], s: usize, h: usize) -> Vec<f64> {
        let n = self.tokens;
        let mut p = vec![0.0; n * n];
        for i in 0..n {
            let row = &mut p[i * n..(i + 1) * n];
            for (j, v) in row.iter_mut().enumerate() {
                *v = (0..self.head_dim)
                    .map(|d| qkv[self.qkv(s, i, 0, h, d)] * qkv[self.qkv(s, j, 1, h, d)])
                    .sum::<f64>()
                    * self.scale();
            }
            let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = row.iter().map(|v| (v - max).exp()).sum();
            for v in row.iter_mut() {
                *v = (*v - max).exp() / sum;
            }
        }
        p
    }
}

/// O (rows, dim) = softmax(Q·Kᵀ·scale)·V per (sample, head).
pub fn attention(qkv: &[f64], sh: AttentionShape) -> Vec<f64> {
    let mut o = vec![0.0; sh.samples * sh.tokens * sh.dim()];
    for s in 0..sh.samples {
        for h in 0..sh.heads {
            let p = sh.probabilities(qkv, s, h);
            for i in 0..sh.tokens {
                for d in 0..sh.head_dim {
                    o[sh.o(s, i, h, d)] = (0..sh.tokens)
                        .map(|j| p[i * sh.tokens + j] * qkv[sh.qkv(s, j, 2, h, d)])
                        .sum();
                }
            }
        }
    }
    o
}

/// dqkv from dO: dV = Pᵀ·dO; dP = dO·Vᵀ; dS = P ⊙ (dP − rowsum(P ⊙ dP)); dQ = scale·dS·K;
/// dK = scale·dSᵀ·Q.
pub fn attention_backward(qkv: &[f64], d_o: &[f64], sh: AttentionShape) -> Vec<f64> {
    let n = sh.tokens;
    let mut dqkv = vec![0.0; qkv.len()];
    for s in 0..sh.samples {
        for h in 0..sh.heads {
            let p = sh.probabilities(qkv, s, h);
            let mut ds = vec![0.0; n * n];
            for i in 0..n {
                let dp: Vec<f64> = (0..n)
                    .map(|j| {
                        (0..sh.head_dim)
                            .map(|d| d_o[sh.o(s, i, h, d)] * qkv[sh.qkv(s, j, 2, h, d)])
                            .sum()
                    })
                    .collect();
                let row: f64 = (0..n).map(|j| p[i * n + j] * dp[j]).sum();
                for j in 0..n {
                    ds[i * n + j] = p[i * n + j] * (dp[j] - row);
                }
            }
            for i in 0..n {
                for d in 0..sh.head_dim {
                    let (mut dq, mut dk, mut dv) = (0.0, 0.0, 0.0);
                    for j in 0..n {
                        dq += ds[i * n + j] * qkv[sh.qkv(s, j, 1, h, d)];
                        dk += ds[j * n + i] * qkv[sh.qkv(s, j, 0, h, d)];
                        dv += p[j * n + i] * d_o[sh.o(s, j, h, d)];
                    }
                    dqkv[sh.qkv(s, i, 0, h, d)] = dq * sh.scale();
                    dqkv[sh.qkv(s, i, 1, h, d)] = dk * sh.scale();
                    dqkv[sh.qkv(s, i, 2, h, d)] = dv;
                }
            }
        }
    }
    dqkv
}
