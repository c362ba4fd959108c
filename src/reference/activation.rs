//! f64 references of the activations (`shaders/activation.wgsl`), written as the math.

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const GELU_C: f64 = 0.044715;

/// Tanh-approximate GELU: ½x(1 + tanh(√(2/π)(x + 0.044715x³))).
pub fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + GELU_C * x * x * x)).tanh())
}

/// d gelu / dx.
pub fn gelu_grad(x: f64) -> f64 {
    let t = (SQRT_2_OVER_PI * (x + GELU_C * x * x * x)).tanh();
    0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * x * x)
}

/// SiLU: x·σ(x).
pub fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// d silu / dx = σ(x)(1 + x(1 − σ(x))).
pub fn silu_grad(x: f64) -> f64 {
    let s = 1.0 / (1.0 + (-x).exp());
    s * (1.0 + x * (1.0 - s))
}
