//! DiT's fixed sinusoidal tables, computed in f64 on the host: the timestep features fed
//! to the timestep MLP and the 2-D position embedding added to the patch tokens.

/// Frequencies of the timestep embedding.
pub const TIMESTEP_FREQUENCIES: usize = 256;

/// [cos(t·f_i), sin(t·f_i)] per timestep (cos first), f_i = exp(−ln(10⁴)·i/128): (B, 256).
pub fn timestep_features(t: &[f64]) -> Vec<f64> {
    let half = TIMESTEP_FREQUENCIES / 2;
    let mut out = Vec::with_capacity(t.len() * TIMESTEP_FREQUENCIES);
    for &tv in t {
        let args: Vec<f64> = (0..half)
            .map(|i| tv * (-(10_000f64).ln() * i as f64 / half as f64).exp())
            .collect();
        out.extend(args.iter().map(|a| a.cos()));
        out.extend(args.iter().map(|a| a.sin()));
    }
    out
}

/// The fixed (N, D) position embedding of a grid_h × grid_w patch grid, tokens row-major:
/// the first D/2 values encode the column, the next D/2 the row, each half [sin, cos] with
/// ω_i = 1/10000^(i/(D/4)). D must be a multiple of 4.
pub fn pos_embed_2d(dim: usize, grid_h: usize, grid_w: usize) -> Vec<f64> {
    let quarter = dim / 4;
    let omega: Vec<f64> = (0..quarter)
        .map(|i| 1.0 / 10_000f64.powf(i as f64 / quarter as f64))
        .collect();
    let mut out = Vec::with_capacity(grid_h * grid_w * dim);
    for row in 0..grid_h {
        for col in 0..grid_w {
            for pos in [col as f64, row as f64] {
                out.extend(omega.iter().map(|w| (pos * w).sin()));
                out.extend(omega.iter().map(|w| (pos * w).cos()));
            }
        }
    }
    out
}
