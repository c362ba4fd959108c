//! `toy2d` (docs/design.md): a 2-D Gaussian mixture with K classes on a circle, one "pixel" of two
//! channels per sample (H = W = 1), so a DiT with patch 1 sees one token.

use super::{profile_counts, Dataset, Profile};
use crate::rng::normals4;
use crate::Result;

/// How a `toy2d` set is drawn.
#[derive(Clone, Debug)]
pub struct Toy2dSpec {
    pub classes: u32,
    /// Radius of the circle of means.
    pub radius: f64,
    /// Standard deviation of each class.
    pub sigma: f64,
    /// Samples of the head class.
    pub head_count: usize,
    pub imbalance: f64,
    pub profile: Profile,
    pub seed: u32,
}

impl Default for Toy2dSpec {
    fn default() -> Self {
        Self {
            classes: 8,
            radius: 0.8,
            sigma: 0.08,
            head_count: 1000,
            imbalance: 100.0,
            profile: Profile::Exponential,
            seed: 0,
        }
    }
}

/// The class means μ_k = r·(cos 2πk/K, sin 2πk/K).
pub fn toy2d_means(classes: u32, radius: f64) -> Vec<[f64; 2]> {
    (0..classes)
        .map(|k| {
            let a = std::f64::consts::TAU * k as f64 / classes as f64;
            [radius * a.cos(), radius * a.sin()]
        })
        .collect()
}

/// Draws the set: n_c samples of class c from N(μ_c, σ²I), normals from Philox (seed, 7).
pub fn toy2d(spec: &Toy2dSpec) -> Result<Dataset> {
    let counts = profile_counts(
        spec.profile,
        spec.head_count,
        spec.classes as usize,
        spec.imbalance,
    )?;
    let means = toy2d_means(spec.classes, spec.radius);
    let mut images = Vec::new();
    let mut labels = Vec::new();
    let mut q = 0u32;
    for (c, &n) in counts.iter().enumerate() {
        for _ in 0..n {
            let z = normals4(q, 0, spec.seed, 7);
            q += 1;
            images.push((means[c][0] + spec.sigma * z[0] as f64) as f32);
            images.push((means[c][1] + spec.sigma * z[1] as f64) as f32);
            labels.push(c as u32);
        }
    }
    Ok(Dataset {
        name: "toy2d".into(),
        channels: 2,
        height: 1,
        width: 1,
        images,
        labels,
        slots: 1,
        label_names: (0..spec.classes).map(|c| format!("class{c}")).collect(),
    })
}
