//! The `idx` evaluator: a k-nearest-neighbour classifier (Euclidean distance in pixel space)
//! over balanced real images of the test split, which no training run sees. No training,
//! deterministic; k-NN reads Fashion-MNIST at about 85% and MNIST at about 97%.

/// Neighbours that vote.
pub const K: usize = 5;

/// Reference images with their labels.
pub struct Knn {
    refs: Vec<f32>,
    labels: Vec<u32>,
    dim: usize,
    classes: usize,
}

impl Knn {
    /// `refs` is (n, dim) with `labels` in 0..classes.
    pub fn new(refs: Vec<f32>, labels: Vec<u32>, classes: usize) -> Self {
        let dim = refs.len() / labels.len().max(1);
        Self {
            refs,
            labels,
            dim,
            classes,
        }
    }

    /// The majority label of the K nearest references; a tie goes to the label of the
    /// nearest among the tied ones.
    pub fn predict(&self, x: &[f32]) -> u32 {
        let mut best: Vec<(f32, u32)> = Vec::with_capacity(K + 1);
        for (r, &label) in self.refs.chunks_exact(self.dim).zip(&self.labels) {
            let d: f32 = r.iter().zip(x).map(|(a, b)| (a - b) * (a - b)).sum();
            if best.len() < K || d < best[best.len() - 1].0 {
                let at = best.partition_point(|b| b.0 <= d);
                best.insert(at, (d, label));
                best.truncate(K);
            }
        }
        let mut votes = vec![0usize; self.classes];
        for b in &best {
            votes[b.1 as usize] += 1;
        }
        let top = votes.iter().copied().max().unwrap_or(0);
        best.iter()
            .find(|b| votes[b.1 as usize] == top)
            .map_or(0, |b| b.1)
    }

    /// [`Self::predict`] for every image of `xs` (n, dim), spread over the CPU's cores.
    pub fn predict_all(&self, xs: &[f32]) -> Vec<u32> {
        let rows: Vec<&[f32]> = xs.chunks_exact(self.dim).collect();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per = rows.len().div_ceil(threads).max(1);
        std::thread::scope(|s| {
            let parts: Vec<_> = rows
                .chunks(per)
                .map(|part| {
                    s.spawn(move || part.iter().map(|x| self.predict(x)).collect::<Vec<_>>())
                })
                .collect();
            parts
                .into_iter()
                .flat_map(|h| h.join().expect("a k-NN worker panicked"))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn votes_of_the_nearest_five() {
        // Label 1 owns three references near 0, label 0 two nearer ones: the majority wins.
        let refs = vec![0.1, 0.2, 0.3, 0.05, 0.06, 5.0, 5.1];
        let labels = vec![1, 1, 1, 0, 0, 2, 2];
        let k = Knn::new(refs, labels, 3);
        assert_eq!(k.predict(&[0.0]), 1);
        assert_eq!(
            k.predict(&[5.05]),
            1,
            "two of label 2 against three of label 1"
        );
        assert_eq!(k.predict_all(&[0.0, 0.0, 0.0]), vec![1, 1, 1]);
        // A tie (two and two) goes to the label of the nearest.
        let k = Knn::new(vec![0.0, 0.1, 1.0, 1.1], vec![0, 0, 1, 1], 2);
        assert_eq!(k.predict(&[0.9]), 1);
        assert_eq!(k.predict(&[0.2]), 0);
    }
}
