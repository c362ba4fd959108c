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

/// A paired comparison: the mean of per-seed differences (treatment − control) with its
/// two-sided 95% Student-t confidence interval.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Paired {
    /// Pairs (seeds) with both values.
    pub n: usize,
    pub mean: f64,
    /// The interval's half-width (NaN below two pairs).
    pub half_width: f64,
}

impl Paired {
    pub fn low(&self) -> f64 {
        self.mean - self.half_width
    }
    pub fn high(&self) -> f64 {
        self.mean + self.half_width
    }
}

/// The paired difference of `treatment` and `control` (same seeds, same order); pairs where
/// either value is NaN are dropped.
pub fn paired_difference(treatment: &[f64], control: &[f64]) -> Paired {
    let d: Vec<f64> = treatment
        .iter()
        .zip(control)
        .filter(|(a, b)| !a.is_nan() && !b.is_nan())
        .map(|(a, b)| a - b)
        .collect();
    differences(&d)
}

/// The mean of per-seed differences already taken (none NaN) with its two-sided 95%
/// Student-t interval.
pub fn differences(d: &[f64]) -> Paired {
    let (mean, sd) = mean_std(d);
    let n = d.len();
    let half_width = if n < 2 {
        f64::NAN
    } else {
        t_quantile_975(n - 1) * sd / (n as f64).sqrt()
    };
    Paired {
        n,
        mean,
        half_width,
    }
}

/// The 0.975 quantile of Student's t with `df` degrees of freedom.
pub fn t_quantile_975(df: usize) -> f64 {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    StudentsT::new(0.0, 1.0, df as f64)
        .expect("df ≥ 1")
        .inverse_cdf(0.975)
}

/// The least-squares slope of y on x (NaN with fewer than two distinct x).
pub fn slope(x: &[f64], y: &[f64]) -> f64 {
    let pts: Vec<(f64, f64)> = x
        .iter()
        .zip(y)
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .map(|(a, b)| (*a, *b))
        .collect();
    let n = pts.len() as f64;
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / n,
        pts.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx > 0.0 {
        sxy / sxx
    } else {
        f64::NAN
    }
}
