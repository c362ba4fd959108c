//! The pair regulariser of `shaders/pair.wgsl` (CBDM §3.4, CCUA alignment §3.5) in f64.

/// What [`pair`] returns.
pub struct PairOut {
    /// R = (1/E)·Σ w·(a − b)².
    pub distance: f64,
    /// The pull of a toward sg(b): 2·ka·w·(a − b)/E.
    pub grad_a: Vec<f64>,
    /// The pull of b toward sg(a): 2·kb·w·(b − a)/E.
    pub grad_b: Vec<f64>,
}

/// `a`, `b`: the two halves (E values each); `w`: one weight per sample of `per_sample`
/// values.
pub fn pair(a: &[f64], b: &[f64], w: &[f64], per_sample: usize, ka: f64, kb: f64) -> PairOut {
    let e = a.len() as f64;
    let mut out = PairOut {
        distance: 0.0,
        grad_a: Vec::with_capacity(a.len()),
        grad_b: Vec::with_capacity(a.len()),
    };
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        let ws = w[i / per_sample];
        let d = x - y;
        out.distance += ws * d * d / e;
        out.grad_a.push(2.0 * ka * ws * d / e);
        out.grad_b.push(-2.0 * kb * ws * d / e);
    }
    out
}
