//! k-nearest-neighbour precision and recall (Kynkäänniemi et al., "Improved Precision and
//! Recall Metric for Assessing Generative Models", 2019), per label: each set's manifold is the
//! union of balls around its points, each as wide as the distance to the point's k-th nearest
//! neighbour in its own set. Precision is the share of samples inside the real images'
//! manifold (are the samples like real ones?); recall the share of real images inside the
//! samples' manifold (do the samples cover the real spread?). A mode-collapsed label keeps its
//! precision and loses its recall; sharpening by guidance trades recall for precision.

/// The neighbour that sets a ball's radius (the paper's k = 3).
pub const K: usize = 3;

/// A label's precision and recall, each in [0, 1]; NaN when a set has k points or fewer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PrecisionRecall {
    pub precision: f64,
    pub recall: f64,
}

/// Precision and recall of `samples` against `real` (rows of equal length: pixels or
/// features), with balls to each point's `k`-th nearest neighbour.
pub fn precision_recall(real: &[&[f32]], samples: &[&[f32]], k: usize) -> PrecisionRecall {
    if real.len() <= k || samples.len() <= k {
        return PrecisionRecall {
            precision: f64::NAN,
            recall: f64::NAN,
        };
    }
    PrecisionRecall {
        precision: covered(samples, real, &radii(real, k)),
        recall: covered(real, samples, &radii(samples, k)),
    }
}

/// The Euclidean distance of two rows, summed in f64.
pub fn distance(a: &[f32], b: &[f32]) -> f64 {
    let s: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    s.sqrt()
}

/// For each point, the distance to its k-th nearest other point of the same set.
fn radii(set: &[&[f32]], k: usize) -> Vec<f64> {
    (0..set.len())
        .map(|i| {
            let mut d: Vec<f64> = (0..set.len())
                .filter(|&j| j != i)
                .map(|j| distance(set[i], set[j]))
                .collect();
            d.sort_by(f64::total_cmp);
            d[k - 1]
        })
        .collect()
}

/// The share of `points` inside at least one ball of `set` (centre `set[j]`, radius `r[j]`).
fn covered(points: &[&[f32]], set: &[&[f32]], r: &[f64]) -> f64 {
    let inside = points
        .iter()
        .filter(|p| set.iter().zip(r).any(|(c, &rj)| distance(p, c) <= rj))
        .count();
    inside as f64 / points.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(v: &[[f32; 2]]) -> Vec<&[f32]> {
        v.iter().map(|r| r.as_slice()).collect()
    }

    /// A grid of points in the plane, spacing 1, offset by (dx, dy).
    fn grid(n: usize, dx: f32, dy: f32) -> Vec<[f32; 2]> {
        (0..n * n)
            .map(|i| [(i % n) as f32 + dx, (i / n) as f32 + dy])
            .collect()
    }

    #[test]
    fn a_set_against_itself_is_fully_precise_and_covered() {
        let g = grid(5, 0.0, 0.0);
        let pr = precision_recall(&rows(&g), &rows(&g), K);
        assert_eq!((pr.precision, pr.recall), (1.0, 1.0));
    }

    #[test]
    fn a_collapsed_set_keeps_precision_and_loses_recall() {
        let g = grid(5, 0.0, 0.0);
        let collapsed = vec![[2.0f32, 2.0]; 6];
        let pr = precision_recall(&rows(&g), &rows(&collapsed), K);
        assert_eq!(pr.precision, 1.0);
        // Its balls have radius 0: only the real point it sits on is covered.
        assert_eq!(pr.recall, 1.0 / 25.0);
    }

    #[test]
    fn far_apart_sets_share_nothing() {
        let (a, b) = (grid(4, 0.0, 0.0), grid(4, 100.0, 0.0));
        let pr = precision_recall(&rows(&a), &rows(&b), K);
        assert_eq!((pr.precision, pr.recall), (0.0, 0.0));
    }

    /// Half the samples on the real grid, half far away: precision 1/2; recall counts what
    /// the near half covers (all of a 4×4 grid: its balls reach the neighbours it lacks).
    #[test]
    fn precision_is_the_share_of_samples_near_real_ones() {
        let real = grid(4, 0.0, 0.0);
        let mut samples = grid(4, 0.0, 0.0);
        samples.extend(grid(4, 100.0, 0.0));
        let pr = precision_recall(&rows(&real), &rows(&samples), K);
        assert_eq!(pr.precision, 0.5);
        assert_eq!(pr.recall, 1.0);
    }

    #[test]
    fn too_few_points_give_nan() {
        let g = grid(3, 0.0, 0.0);
        let three = &g[..K];
        let pr = precision_recall(&rows(&g), &rows(three), K);
        assert!(pr.precision.is_nan() && pr.recall.is_nan());
    }
}
