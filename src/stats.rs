//! Small statistics for the evaluation: mean ± spread over seeds, Spearman's rank correlation
//! and the Fréchet distance between two Gaussians fitted to feature sets.

use nalgebra::{DMatrix, DVector, SymmetricEigen};

/// Mean and sample standard deviation (n − 1 in the denominator; 0 for one value). NaN
/// values are skipped; an empty set gives (NaN, NaN).
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Ranks from 1, ties given their average rank.
fn ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Pearson's correlation; NaN when either side is constant or shorter than 2.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "pearson needs pairs");
    let n = x.len() as f64;
    if x.len() < 2 {
        return f64::NAN;
    }
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    if sxx == 0.0 || syy == 0.0 {
        return f64::NAN;
    }
    sxy / (sxx * syy).sqrt()
}

/// Spearman's ρ: Pearson's correlation of the ranks (ties averaged).
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}

/// Mean and covariance (n − 1) of rows of `dim` features.
fn moments(rows: &[f32], dim: usize) -> (DVector<f64>, DMatrix<f64>) {
    let n = rows.len() / dim;
    let m = DMatrix::from_row_iterator(n, dim, rows.iter().map(|&v| v as f64));
    let mean = m.row_mean().transpose();
    let mut centred = m;
    for mut r in centred.row_iter_mut() {
        r -= mean.transpose();
    }
    let cov = centred.transpose() * &centred / (n.max(2) - 1) as f64;
    (mean, cov)
}

/// The symmetric square root of a positive semi-definite matrix (negative eigenvalues from
/// rounding are clamped to 0).
fn sqrt_psd(m: &DMatrix<f64>) -> DMatrix<f64> {
    let sym = (m + m.transpose()) * 0.5;
    let e = SymmetricEigen::new(sym);
    let d = DMatrix::from_diagonal(&e.eigenvalues.map(|v| v.max(0.0).sqrt()));
    &e.eigenvectors * d * e.eigenvectors.transpose()
}

/// Fréchet distance between Gaussians fitted to two sets of feature rows (the FID formula):
/// |μ₁ − μ₂|² + tr(Σ₁ + Σ₂ − 2(Σ₁^½ Σ₂ Σ₁^½)^½). The symmetric form of the cross term avoids
/// the non-symmetric square root of Σ₁Σ₂ (same trace).
pub fn frechet(a: &[f32], b: &[f32], dim: usize) -> f64 {
    let (ma, ca) = moments(a, dim);
    let (mb, cb) = moments(b, dim);
    let ra = sqrt_psd(&ca);
    let cross = sqrt_psd(&(&ra * &cb * &ra));
    let d = (&ma - &mb).norm_squared() + ca.trace() + cb.trace() - 2.0 * cross.trace();
    d.max(0.0)
}
