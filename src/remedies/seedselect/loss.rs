//! SeedSelect's objective and optimiser: the semantic and appearance losses against the
//! references, AdamW on the seeds, and the feature encoder.

use super::*;

/// The frozen feature extractor and the references' statistics.
pub struct Target {
    pub encoder: Classifier,
    /// Centroid of the references' features.
    pub centroid: Vec<f64>,
    /// Mean reference image.
    pub mean_image: Vec<f64>,
    /// Weights of L_sem and L_app (10 and 1 as published; ablations change them).
    pub sem_weight: f64,
    pub app_weight: f64,
}

impl Target {
    /// From reference images (k, image) and an encoder.
    pub fn new(encoder: Classifier, refs: &[f32]) -> Self {
        let il = encoder.inputs();
        let k = refs.len() / il;
        let mut centroid = vec![0.0; HIDDEN];
        let mut mean_image = vec![0.0; il];
        for r in refs.chunks(il) {
            for (c, f) in centroid.iter_mut().zip(encoder.features(r)) {
                *c += f / k as f64;
            }
            for (m, &v) in mean_image.iter_mut().zip(r) {
                *m += v as f64 / k as f64;
            }
        }
        Self {
            encoder,
            centroid,
            mean_image,
            sem_weight: SEM_SCALE,
            app_weight: 1.0,
        }
    }

    /// 1 − cos(f(x), f̄) and its gradient with respect to x (0 where f(x) = 0).
    pub fn semantic(&self, x: &[f32]) -> (f64, Vec<f64>) {
        let f = self.encoder.features(x);
        let nf = f.iter().map(|v| v * v).sum::<f64>().sqrt();
        let nc = self.centroid.iter().map(|v| v * v).sum::<f64>().sqrt();
        if nf == 0.0 || nc == 0.0 {
            return (1.0, vec![0.0; x.len()]);
        }
        let cos = f
            .iter()
            .zip(&self.centroid)
            .map(|(a, b)| a * b)
            .sum::<f64>()
            / (nf * nc);
        let df: Vec<f64> = f
            .iter()
            .zip(&self.centroid)
            .map(|(&fi, &ci)| -(ci / (nf * nc) - cos * fi / (nf * nf)))
            .collect();
        (1.0 - cos, self.encoder.features_backward(x, &df))
    }

    /// Mean squared distance to the mean reference and its gradient.
    pub fn appearance(&self, x: &[f32]) -> (f64, Vec<f64>) {
        let n = x.len() as f64;
        let mut l = 0.0;
        let g = x
            .iter()
            .zip(&self.mean_image)
            .map(|(&v, &m)| {
                let d = v as f64 - m;
                l += d * d / n;
                2.0 * d / n
            })
            .collect();
        (l, g)
    }

    /// One sample's loss 10·L_sem + L_app (with the default weights) from its last three x̂0
    /// and its final image, with the gradients (for the three x̂0, then the final image).
    pub fn loss(&self, x0s: [&[f32]; 3], last: &[f32]) -> (f64, [Vec<f64>; 3], Vec<f64>) {
        let mut total = 0.0;
        let grads = std::array::from_fn(|q| {
            let (l, g) = self.semantic(x0s[q]);
            let w = self.sem_weight * SEM_WEIGHTS[q];
            total += w * l;
            g.into_iter().map(|v| w * v).collect()
        });
        let (l, g) = self.appearance(last);
        let a = self.app_weight;
        (total + a * l, grads, g.into_iter().map(|v| a * v).collect())
    }
}

/// What an optimisation did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Optimised {
    /// Plain samples (iteration 0's chain) and the optimised ones, (n, C, H, W).
    pub plain: Vec<f32>,
    pub selected: Vec<f32>,
    /// Mean loss over the samples before each iteration, then after the last.
    pub losses: Vec<f64>,
    /// Wall seconds of the optimisation (chains and backward passes, not the encoder).
    pub seconds: f64,
}

/// Optimises `o.samples` seeds for one label row.
pub fn optimise(
    gpu: &Gpu,
    model: &DitConfig,
    params: &[f32],
    process: Process,
    label_row: &[u32],
    target: &Target,
    o: &Options,
) -> Result<Optimised> {
    o.validate()?;
    if label_row.len() != model.label_slots as usize {
        return Err(Error::Shape(format!(
            "a label row of {} entries for a model of {} slots",
            label_row.len(),
            model.label_slots
        )));
    }
    let image = (model.channels * model.height * model.width) as usize;
    if target.encoder.inputs() != image {
        return Err(Error::Shape(
            "the encoder was trained on images of another size".into(),
        ));
    }
    let start = std::time::Instant::now();
    let n = o.samples as usize;
    let (mut plain, mut selected) = (Vec::new(), Vec::new());
    let mut losses = vec![0.0; o.iters as usize + 1];
    let mut first = 0usize;
    while first < n {
        let b = (o.batch as usize).min(n - first);
        let labels: Vec<u32> = (0..b).flat_map(|_| label_row.iter().copied()).collect();
        let chain = Chain::new(gpu, model, params, process, o.steps, o.guidance, &labels)?;
        let s = chain.steps.len();
        let mut x: Vec<f64> = noise_range(o.seed, 0, (first * image) as u64, b * image)
            .into_iter()
            .map(|v| v as f64)
            .collect();
        let (mut m, mut v) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        for it in 0..=o.iters {
            let xt: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let (xs, preds) = chain.run(&xt)?;
            if it == 0 {
                plain.extend_from_slice(&xs[s]);
            }
            if it == o.iters {
                selected.extend_from_slice(&xs[s]);
                let l = batch_loss(&chain, target, &xs, &preds)?.0;
                losses[it as usize] += l / n as f64;
                break;
            }
            let (l, g_final, g_x0) = batch_loss(&chain, target, &xs, &preds)?;
            losses[it as usize] += l / n as f64;
            let g = chain.backward(&xs, &g_final, &g_x0)?;
            // AdamW as torch: decoupled decay, then the bias-corrected step.
            let lr = if it < o.lr_drop_after {
                o.lr as f64
            } else {
                o.lr as f64 / 10.0
            };
            let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
            let tstep = (it + 1) as i32;
            for i in 0..x.len() {
                x[i] *= 1.0 - lr * o.weight_decay as f64;
                m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                let mh = m[i] / (1.0 - b1.powi(tstep));
                let vh = v[i] / (1.0 - b2.powi(tstep));
                x[i] -= lr * mh / (vh.sqrt() + eps);
            }
        }
        first += b;
    }
    // Plain samples do not depend on the optimiser: where they overflow, the model or the
    // guidance does.
    let advice = [
        format!(
            "the model overflows at guidance {}; lower --guidance or check the run",
            o.guidance
        ),
        format!("the noise optimiser diverged; lower --lr (now {})", o.lr),
    ];
    for ((what, imgs), fix) in [("plain", &plain), ("optimised", &selected)]
        .into_iter()
        .zip(advice)
    {
        if let Some(i) = imgs.iter().position(|v| !v.is_finite()) {
            return Err(Error::Diverged(format!(
                "{what} sample {} became non-finite: {fix}",
                i / image
            )));
        }
    }
    Ok(Optimised {
        plain,
        selected,
        losses,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// A batch's summed loss, ∂L/∂x_final and (step, ∂L/∂x̂0) at the last three steps.
pub type Grads = (f64, Vec<f64>, Vec<(usize, Vec<f64>)>);

/// The summed loss of a chain's forward `(xs, preds)` over its samples, with its gradients
/// for [`Chain::backward`].
pub fn batch_loss(
    chain: &Chain,
    target: &Target,
    xs: &[Vec<f32>],
    preds: &[Vec<f32>],
) -> Result<Grads> {
    let image = target.mean_image.len();
    let b = xs[0].len() / image;
    let s = chain.steps.len();
    let ks = [s - 3, s - 2, s - 1];
    let x0s: Vec<Vec<f32>> = ks
        .iter()
        .map(|&k| {
            let c = step_coef(&chain.sampler, &chain.schedule, &chain.steps[k])?;
            Ok(xs[k]
                .iter()
                .zip(&preds[k])
                .map(|(&x, &e)| (c.c * x as f64 + c.d * e as f64) as f32)
                .collect())
        })
        .collect::<Result<_>>()?;
    let mut total = 0.0;
    let mut g_final = vec![0.0; b * image];
    let mut g_x0: Vec<(usize, Vec<f64>)> = ks.iter().map(|&k| (k, vec![0.0; b * image])).collect();
    for j in 0..b {
        let r = j * image..(j + 1) * image;
        let (l, g0, gl) = target.loss(
            [&x0s[0][r.clone()], &x0s[1][r.clone()], &x0s[2][r.clone()]],
            &xs[s][r.clone()],
        );
        total += l;
        g_final[r.clone()].copy_from_slice(&gl);
        for q in 0..3 {
            g_x0[q].1[r.clone()].copy_from_slice(&g0[q]);
        }
    }
    Ok((total, g_final, g_x0))
}

/// SeedSelect's encoder: the crate's MLP classifier trained on the run's training split,
/// one class per distinct label row. Returns it with the distinct rows and the class of each
/// training image.
pub fn train_encoder(
    data: &Dataset,
    epochs: u32,
    seed: u32,
) -> (Classifier, Vec<Vec<u32>>, Vec<u32>) {
    let rows = data.distinct_label_rows();
    let classes: Vec<u32> = (0..data.len())
        .map(|i| {
            rows.binary_search_by(|r| r.as_slice().cmp(data.labels_of(i)))
                .expect("every row is listed") as u32
        })
        .collect();
    let clf = Classifier::train(&data.images, &classes, rows.len().max(2), epochs, seed);
    (clf, rows, classes)
}

/// Epochs of the encoder's full-batch Adam.
pub const ENCODER_EPOCHS: u32 = 150;
