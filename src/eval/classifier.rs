//! The digits evaluator: a small MLP (inputs → [`HIDDEN`] ReLU units → classes) trained on the
//! CPU, by full-batch Adam on cross-entropy, from held-out balanced real digits. Its hidden
//! layer is the feature space of the Fréchet distance. Deterministic: the initialisation comes
//! from Philox and the sums run in a fixed order.

use crate::rng::normals4;

/// Hidden units (also the feature size).
pub const HIDDEN: usize = 64;

/// A trained classifier.
#[derive(Clone, Debug)]
pub struct Classifier {
    inputs: usize,
    classes: usize,
    /// (HIDDEN, inputs), row-major.
    w1: Vec<f64>,
    b1: Vec<f64>,
    /// (classes, HIDDEN).
    w2: Vec<f64>,
    b2: Vec<f64>,
}

struct Adam {
    m: Vec<f64>,
    v: Vec<f64>,
}

impl Adam {
    fn new(n: usize) -> Self {
        Self {
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }
    fn step(&mut self, p: &mut [f64], g: &[f64], lr: f64, t: i32) {
        let (b1, b2) = (0.9f64, 0.999f64);
        for i in 0..p.len() {
            self.m[i] = b1 * self.m[i] + (1.0 - b1) * g[i];
            self.v[i] = b2 * self.v[i] + (1.0 - b2) * g[i] * g[i];
            let mh = self.m[i] / (1.0 - b1.powi(t));
            let vh = self.v[i] / (1.0 - b2.powi(t));
            p[i] -= lr * (mh / (vh.sqrt() + 1e-8) + 1e-4 * p[i]);
        }
    }
}

impl Classifier {
    /// Trains on `images` (n, inputs) in [−1, 1] with labels 0..classes.
    pub fn train(images: &[f32], labels: &[u32], classes: usize, epochs: u32, seed: u32) -> Self {
        let n = labels.len();
        let inputs = images.len() / n;
        let mut noise = Vec::new();
        let mut q = 0u32;
        let total = HIDDEN * inputs + classes * HIDDEN;
        while noise.len() < total {
            noise.extend(normals4(q, 9, seed, 0).map(|v| v as f64));
            q += 1;
        }
        let s1 = (2.0 / inputs as f64).sqrt();
        let s2 = (1.0 / HIDDEN as f64).sqrt();
        let mut c = Self {
            inputs,
            classes,
            w1: noise[..HIDDEN * inputs].iter().map(|v| v * s1).collect(),
            b1: vec![0.0; HIDDEN],
            w2: noise[HIDDEN * inputs..total]
                .iter()
                .map(|v| v * s2)
                .collect(),
            b2: vec![0.0; classes],
        };
        let mut opt = [
            Adam::new(c.w1.len()),
            Adam::new(HIDDEN),
            Adam::new(c.w2.len()),
            Adam::new(classes),
        ];
        for t in 1..=epochs as i32 {
            let (mut g1, mut gb1) = (vec![0.0; c.w1.len()], vec![0.0; HIDDEN]);
            let (mut g2, mut gb2) = (vec![0.0; c.w2.len()], vec![0.0; classes]);
            for i in 0..n {
                let x = &images[i * inputs..(i + 1) * inputs];
                let h = c.features(x);
                let mut p = c.logits(&h);
                softmax(&mut p);
                p[labels[i] as usize] -= 1.0;
                let mut dh = vec![0.0; HIDDEN];
                for k in 0..classes {
                    let d = p[k] / n as f64;
                    gb2[k] += d;
                    for j in 0..HIDDEN {
                        g2[k * HIDDEN + j] += d * h[j];
                        dh[j] += d * c.w2[k * HIDDEN + j];
                    }
                }
                for j in 0..HIDDEN {
                    if h[j] <= 0.0 {
                        continue;
                    }
                    gb1[j] += dh[j];
                    for (a, &xv) in x.iter().enumerate() {
                        g1[j * inputs + a] += dh[j] * xv as f64;
                    }
                }
            }
            let lr = 0.01;
            opt[0].step(&mut c.w1, &g1, lr, t);
            opt[1].step(&mut c.b1, &gb1, lr, t);
            opt[2].step(&mut c.w2, &g2, lr, t);
            opt[3].step(&mut c.b2, &gb2, lr, t);
        }
        c
    }

    /// The hidden ReLU features of one image.
    pub fn features(&self, x: &[f32]) -> Vec<f64> {
        (0..HIDDEN)
            .map(|j| {
                let w = &self.w1[j * self.inputs..(j + 1) * self.inputs];
                let z: f64 = self.b1[j] + w.iter().zip(x).map(|(a, &b)| a * b as f64).sum::<f64>();
                z.max(0.0)
            })
            .collect()
    }

    /// ∂/∂x of a loss of the features, given `dh` = ∂loss/∂features at image `x`:
    /// W1ᵀ(dh ⊙ \[z > 0\]). SeedSelect's semantic loss reaches the image through it.
    pub fn features_backward(&self, x: &[f32], dh: &[f64]) -> Vec<f64> {
        let mut dx = vec![0.0; self.inputs];
        for (j, &g) in dh.iter().enumerate().take(HIDDEN) {
            let w = &self.w1[j * self.inputs..(j + 1) * self.inputs];
            let z: f64 = self.b1[j] + w.iter().zip(x).map(|(a, &b)| a * b as f64).sum::<f64>();
            if z > 0.0 && g != 0.0 {
                for (d, &a) in dx.iter_mut().zip(w) {
                    *d += g * a;
                }
            }
        }
        dx
    }

    /// Inputs per image.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    fn logits(&self, h: &[f64]) -> Vec<f64> {
        (0..self.classes)
            .map(|k| {
                self.b2[k]
                    + self.w2[k * HIDDEN..(k + 1) * HIDDEN]
                        .iter()
                        .zip(h)
                        .map(|(a, b)| a * b)
                        .sum::<f64>()
            })
            .collect()
    }

    /// The predicted class of one image.
    pub fn predict(&self, x: &[f32]) -> usize {
        let l = self.logits(&self.features(x));
        (0..l.len())
            .max_by(|&a, &b| l[a].total_cmp(&l[b]).then(b.cmp(&a)))
            .unwrap_or(0)
    }

    /// Features of many images (n, HIDDEN) as f32 rows.
    pub fn feature_rows(&self, images: &[f32]) -> Vec<f32> {
        images
            .chunks(self.inputs)
            .flat_map(|x| self.features(x).into_iter().map(|v| v as f32))
            .collect()
    }

    /// Share of `images` predicted as their label.
    pub fn accuracy(&self, images: &[f32], labels: &[u32]) -> f64 {
        let hits = images
            .chunks(self.inputs)
            .zip(labels)
            .filter(|(x, &l)| self.predict(x) == l as usize)
            .count();
        hits as f64 / labels.len().max(1) as f64
    }
}

fn softmax(v: &mut [f64]) {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mut s = 0.0;
    for x in v.iter_mut() {
        *x = (*x - m).exp();
        s += *x;
    }
    for x in v.iter_mut() {
        *x /= s;
    }
}
