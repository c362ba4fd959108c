//! SeedSelect (Samuel et al., AAAI 2024; docs/design.md#seedselect): training-free sampling of a rare
//! concept by optimising the initial noise x_T of a frozen model so that its samples look like
//! a few reference images of the concept.
//!
//! The chain is deterministic (DDIM η = 0, or Euler for flow runs) with classifier-free
//! guidance. Each step is linear in (x, ε̂): x_next = a·x + b·ε̂ and the predicted clean image
//! x̂0 = c·x + d·ε̂, so the backward through the chain needs only the model's
//! vector-Jacobian product at each x_k, which is recomputed (one forward and one backward of
//! the DiT, then dtok·W_embed) instead of storing the activations of all steps.
//!
//! Loss per sample: 10·L_sem + L_app, with L_sem = Σ w_q (1 − cos(f(x̂0_q), f̄)) over the
//! last three steps (w = 0.05, 0.25, 0.7), f the hidden features of an MLP classifier the crate
//! trains on the run's training split (the original uses CLIP), f̄ the centroid of the
//! references' features; L_app = the MSE between the final sample and the mean reference.
//! AdamW on x_T (lr 0.1, divided by 10 after iteration 3, weight decay 0.01 as torch's default).

use crate::data::Dataset;
use crate::diffusion::{DdpmSchedule, SampleStep, Sampler};
use crate::diffusion::{Process, FLOW_TIME_SCALE};
use crate::eval::classifier::{Classifier, HIDDEN};
use crate::gpu::Gpu;
use crate::kernels::NO_LABEL;
use crate::model::{tokens, Activations, Dit, DitConfig};
use crate::rng::noise_range;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Weights of the semantic loss at the last three steps (the last step weighs most).
pub const SEM_WEIGHTS: [f64; 3] = [0.05, 0.25, 0.7];
/// Weight of the semantic loss against the appearance loss.
pub const SEM_SCALE: f64 = 10.0;

/// How to optimise.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Options {
    /// Seeds (samples) to optimise.
    pub samples: u32,
    /// Sampler steps (≥ 3: the semantic loss reads the last three).
    pub steps: u32,
    /// AdamW iterations.
    pub iters: u32,
    pub lr: f32,
    /// Iterations at `lr`; later ones use lr/10.
    pub lr_drop_after: u32,
    pub weight_decay: f32,
    pub guidance: f32,
    /// Noise seed: sample j starts from the same x_T as `imba sample` / `generate` with this
    /// seed, so iteration 0 is plain sampling.
    pub seed: u32,
    /// Samples optimised together (one model evaluation covers them).
    pub batch: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            samples: 16,
            steps: 20,
            iters: 30,
            lr: 0.1,
            lr_drop_after: 3,
            weight_decay: 0.01,
            guidance: 1.5,
            seed: 0,
            batch: 16,
        }
    }
}

impl Options {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.samples == 0 || self.batch == 0 {
            return bad("seedselect needs at least one sample and a batch of at least 1".into());
        }
        if self.steps < 3 {
            return bad(format!(
                "seedselect needs at least 3 sampler steps (the semantic loss reads the last \
                 three), got {}",
                self.steps
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!(
                "the learning rate must be positive, got {}",
                self.lr
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "the weight decay must be ≥ 0, got {}",
                self.weight_decay
            ));
        }
        if !self.guidance.is_finite() {
            return bad(format!("guidance must be finite, got {}", self.guidance));
        }
        Ok(())
    }
}

/// One chain step as linear maps: x_next = a·x + b·ε̂, x̂0 = c·x + d·ε̂.
#[derive(Clone, Copy, Debug)]
pub struct StepCoef {
    pub a: f64,
    pub b: f64,
    pub c: f64,
    pub d: f64,
}

/// The coefficients of a deterministic step (DDIM with η = 0, or Euler).
pub fn step_coef(sampler: &Sampler, schedule: &DdpmSchedule, st: &SampleStep) -> Result<StepCoef> {
    match *sampler {
        Sampler::Ddim { eta: 0.0, .. } => {
            let ab = schedule.alpha_bars[st.t as usize];
            let ab_prev = if st.prev < 0.0 {
                1.0
            } else {
                schedule.alpha_bars[st.prev as usize]
            };
            let (c, d) = (1.0 / ab.sqrt(), -(1.0 - ab).sqrt() / ab.sqrt());
            Ok(StepCoef {
                a: ab_prev.sqrt() * c,
                b: ab_prev.sqrt() * d + (1.0 - ab_prev).sqrt(),
                c,
                d,
            })
        }
        Sampler::Euler { .. } => Ok(StepCoef {
            a: 1.0,
            b: -(st.t - st.prev),
            c: 1.0,
            d: -st.t,
        }),
        _ => Err(Error::Config(
            "SeedSelect backpropagates through a deterministic chain: DDIM with η = 0 or Euler"
                .into(),
        )),
    }
}

/// A chain's points x_0 = x_T … x_S and its guided predictions ε̂_0 … ε̂_{S−1} (images).
pub type Trajectory = (Vec<Vec<f32>>, Vec<Vec<f32>>);

/// A frozen model and one batch's buffers: guided predictions and their vector-Jacobian
/// products at any point of the chain.
pub struct Chain<'g> {
    gpu: &'g Gpu,
    model: DitConfig,
    dit: Dit,
    acts: Activations,
    patches: wgpu::Buffer,
    dout: wgpu::Buffer,
    dpatches: wgpu::Buffer,
    pub sampler: Sampler,
    pub schedule: DdpmSchedule,
    pub steps: Vec<SampleStep>,
    process: Process,
    guidance: f32,
    /// Label rows of the dual forward (B conditioned, then B ∅ when guided).
    rows: Vec<u32>,
    batch: usize,
}

impl<'g> Chain<'g> {
    /// `labels`: `batch` label rows (slots each).
    pub fn new(
        gpu: &'g Gpu,
        model: &DitConfig,
        params: &[f32],
        process: Process,
        steps: u32,
        guidance: f32,
        labels: &[u32],
    ) -> Result<Self> {
        let slots = model.label_slots as usize;
        let batch = labels.len() / slots;
        let repeats = if guidance == 1.0 { 1 } else { 2 };
        let dev = &gpu.device;
        let mut rows = labels.to_vec();
        if repeats == 2 {
            for _ in 0..batch {
                rows.push(model.null_label());
                rows.extend(std::iter::repeat_n(NO_LABEL, slots - 1));
            }
        }
        let sampler = match process {
            Process::Ddpm => Sampler::Ddim { steps, eta: 0.0 },
            Process::Flow => Sampler::Euler { steps },
        };
        let schedule = DdpmSchedule::default_linear();
        let chain = sampler.steps(&schedule)?;
        let e = (batch * model.tokens() as usize * model.token_dim() as usize) as u64;
        Ok(Self {
            gpu,
            dit: Dit::new(dev, model.clone(), params)?,
            acts: Activations::new(dev, model, batch as u32, repeats)?,
            patches: gpu.zeros("seedselect_patches", 4 * e),
            dout: gpu.zeros("seedselect_dout", 4 * e * repeats as u64),
            dpatches: gpu.zeros("seedselect_dpatches", 4 * e),
            model: model.clone(),
            sampler,
            schedule,
            steps: chain,
            process,
            guidance,
            rows,
            batch,
        })
    }

    fn repeats(&self) -> usize {
        self.acts.repeats as usize
    }

    /// Uploads x (images) and step k's conditions and records the forward.
    fn forward(&self, k: usize, x: &[f32]) -> Result<wgpu::CommandEncoder> {
        let t = match self.process {
            Process::Ddpm => self.steps[k].t as f32,
            Process::Flow => self.steps[k].t as f32 * FLOW_TIME_SCALE,
        };
        let g = &self.gpu;
        self.acts
            .set_conditions(&g.queue, &self.model, &vec![t; self.batch], &self.rows)?;
        let geometry = self.model.geometry(self.batch as u32);
        g.queue.write_buffer(
            &self.patches,
            0,
            bytemuck::cast_slice(&tokens::patchify(x, &geometry)),
        );
        let mut enc = g.encoder();
        self.dit
            .record_forward(&g.device, &mut enc, &self.acts, &self.patches, None)?;
        Ok(enc)
    }

    /// The guided prediction ε̂ = ε_u + w(ε_c − ε_u) at x (images) and step k, as images.
    pub fn predict(&self, k: usize, x: &[f32]) -> Result<Vec<f32>> {
        let enc = self.forward(k, x)?;
        self.gpu.submit_and_wait(enc)?;
        let n = x.len();
        let raw: Vec<f32> = self.gpu.read(&self.acts.out, self.repeats() * n)?;
        let (cond, uncond) = raw.split_at(n);
        let w = self.guidance;
        let guided: Vec<f32> = if self.repeats() == 2 {
            cond.iter()
                .zip(uncond)
                .map(|(&c, &u)| u + w * (c - u))
                .collect()
        } else {
            cond.to_vec()
        };
        Ok(tokens::unpatchify(
            &guided,
            &self.model.geometry(self.batch as u32),
        ))
    }

    /// (∂ε̂/∂x)ᵀ·g at x and step k (images in, images out): the forward recomputed, the
    /// backward from dout = (w·g, (1 − w)·g) on the (conditioned, ∅) rows, then ∂/∂patches.
    pub fn vjp(&self, k: usize, x: &[f32], g: &[f32]) -> Result<Vec<f32>> {
        let geometry = self.model.geometry(self.batch as u32);
        let gt = tokens::output_tokens(g, &geometry);
        let dout: Vec<f32> = if self.repeats() == 2 {
            let w = self.guidance;
            gt.iter()
                .map(|&v| w * v)
                .chain(gt.iter().map(|&v| (1.0 - w) * v))
                .collect()
        } else {
            gt
        };
        let gpu = self.gpu;
        gpu.queue
            .write_buffer(&self.dout, 0, bytemuck::cast_slice(&dout));
        let mut enc = self.forward(k, x)?;
        let dev = &gpu.device;
        self.dit
            .record_backward(dev, &mut enc, &self.acts, &self.patches, &self.dout, None)?;
        self.dit
            .record_input_grad(dev, &mut enc, &self.acts, &self.dpatches)?;
        gpu.submit_and_wait(enc)?;
        let dp: Vec<f32> = gpu.read(&self.dpatches, x.len())?;
        Ok(tokens::unpatchify_input(&dp, &geometry))
    }

    /// Runs the chain from x_T: every x_k (k = 0..=S, x_0 = x_T) and ε̂_k (k < S).
    pub fn run(&self, x_t: &[f32]) -> Result<Trajectory> {
        let mut xs = vec![x_t.to_vec()];
        let mut preds = Vec::with_capacity(self.steps.len());
        for (k, st) in self.steps.iter().enumerate() {
            let e = self.predict(k, &xs[k])?;
            let mut x = xs[k].clone();
            self.sampler.update(&self.schedule, st, &mut x, &e, &[]);
            xs.push(x);
            preds.push(e);
        }
        Ok((xs, preds))
    }

    /// Given the forward `(xs, preds)`, ∂L/∂x_final and ∂L/∂x̂0_k for some steps k, returns
    /// ∂L/∂x_T: for k = S−1 … 0, dε̂ = b·g + d·g0_k and g ← a·g + c·g0_k + vjp(x_k, dε̂).
    pub fn backward(
        &self,
        xs: &[Vec<f32>],
        g_final: &[f64],
        g_x0: &[(usize, Vec<f64>)],
    ) -> Result<Vec<f64>> {
        let mut g = g_final.to_vec();
        for k in (0..self.steps.len()).rev() {
            let c = step_coef(&self.sampler, &self.schedule, &self.steps[k])?;
            let g0 = g_x0.iter().find(|(q, _)| *q == k).map(|(_, v)| v);
            let de: Vec<f32> = (0..g.len())
                .map(|i| (c.b * g[i] + g0.map_or(0.0, |v| c.d * v[i])) as f32)
                .collect();
            let back = self.vjp(k, &xs[k], &de)?;
            for i in 0..g.len() {
                g[i] = c.a * g[i] + g0.map_or(0.0, |v| c.c * v[i]) + back[i] as f64;
            }
        }
        Ok(g)
    }
}

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
    for (what, imgs) in [("plain", &plain), ("optimised", &selected)] {
        if let Some(i) = imgs.iter().position(|v| !v.is_finite()) {
            return Err(Error::Diverged(format!(
                "{what} sample {} became non-finite; lower the learning rate",
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

/// What `imba seedselect` reports (report.json).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub run: String,
    /// The label row, by name.
    pub label: String,
    /// Training images with exactly this label row, and how many served as references.
    pub available: usize,
    pub references: usize,
    /// The encoder and its accuracy on the training split (its own training data).
    pub encoder: String,
    pub encoder_seconds: f64,
    pub options: Options,
    pub sem_weight: f64,
    pub app_weight: f64,
    /// The oracle's success rate of the plain samples (same seeds, no optimisation) and of the
    /// optimised ones; for concept rows, the share with all concepts shown.
    pub plain_success: f64,
    pub selected_success: f64,
    /// The oracle's score name.
    pub score: String,
    /// Mean pairwise distance between the samples, plain and optimised: the appearance loss
    /// pulls every seed towards the mean reference, so success can come at diversity's cost.
    pub plain_diversity: f64,
    pub selected_diversity: f64,
    /// Mean loss per sample before each iteration, then after the last.
    pub losses: Vec<f64>,
    pub seconds: f64,
    pub seconds_per_seed: f64,
    /// DiT forwards and backwards each seed goes through: per iteration, the chain's `steps`
    /// forwards and the backward's `steps` recomputed forwards and backwards; then the final
    /// chain. Each covers 2 rows per seed when guided (conditioned and ∅).
    pub forwards_per_seed: u32,
    pub backwards_per_seed: u32,
    pub rows_per_seed: u32,
}

/// What SeedSelect is asked for: the rare label and its references, the weights used, the
/// loss's weights.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    /// A label or concept list, by name or number (concepts joined by '+').
    pub label: &'a str,
    /// References: up to this many training images with exactly this label row.
    pub refs: u32,
    /// The EMA weights (else the raw ones).
    pub ema: bool,
    /// (semantic, appearance) loss weights; (10, 1) as published.
    pub weights: (f64, f64),
}

/// `imba seedselect`: optimises `o.samples` seeds of `run` for `req.label` against up to
/// `req.refs` training images of that label row; writes plain/ and selected/ samples and
/// report.json into `out`.
pub fn run(
    gpu: &Gpu,
    run: &std::path::Path,
    req: &Request,
    o: &Options,
    out: &std::path::Path,
) -> Result<Report> {
    let Request {
        label,
        refs,
        ema,
        weights,
    } = *req;
    use crate::train::setup;
    o.validate()?;
    if refs == 0 {
        return Err(Error::Config("--refs must be at least 1".into()));
    }
    let saved = crate::train::RunDir::new(run).load()?;
    let (data, _) = setup::load_data(&saved.config)?;
    if data.fingerprint() != saved.fingerprint {
        return Err(Error::Data(format!(
            "the data of {} no longer match its checkpoint",
            run.display()
        )));
    }
    let m = &saved.model;
    let row = crate::diffusion::generate::parse_label_row(label, &saved.label_names, m)?;
    let matching: Vec<usize> = (0..data.len())
        .filter(|&i| data.labels_of(i) == row.as_slice())
        .collect();
    if matching.is_empty() {
        return Err(Error::Data(format!(
            "no training image of {} has the label row `{label}`; SeedSelect needs a few \
             reference images of the concept",
            run.display()
        )));
    }
    let used = &matching[..matching.len().min(refs as usize)];
    let ref_images: Vec<f32> = used
        .iter()
        .flat_map(|&i| data.image(i).iter().copied())
        .collect();
    let t0 = std::time::Instant::now();
    let (encoder, rows, classes) = train_encoder(&data, ENCODER_EPOCHS, saved.config.seed);
    let acc = encoder.accuracy(&data.images, &classes);
    let encoder_seconds = t0.elapsed().as_secs_f64();
    let (sem_weight, app_weight) = weights;
    if !(sem_weight >= 0.0 && app_weight >= 0.0 && sem_weight + app_weight > 0.0) {
        return Err(Error::Config(format!(
            "the loss weights must be ≥ 0 and not both 0, got {sem_weight} and {app_weight}"
        )));
    }
    let target = Target {
        sem_weight,
        app_weight,
        ..Target::new(encoder, &ref_images)
    };
    let params = if ema {
        &saved.state.ema
    } else {
        &saved.state.params
    };
    let r = optimise(gpu, m, params, saved.config.process, &row, &target, o)?;
    let n = o.samples as usize;
    let labels: Vec<u32> = (0..n).flat_map(|_| row.iter().copied()).collect();
    let clamp = |x: &[f32]| -> Vec<f32> { x.iter().map(|v| v.clamp(-1.0, 1.0)).collect() };
    let success = |x: &[f32]| -> Result<(f64, String)> {
        let e = crate::eval::score(&saved.config, &data, &labels, &clamp(x))?;
        let s = if m.label_slots == 1 {
            e.per_label[row[0] as usize].score
        } else {
            e.metric("prompt/all").unwrap_or(f64::NAN)
        };
        Ok((s, e.score))
    };
    let image = (m.channels * m.height * m.width) as usize;
    let diversity = |x: &[f32]| {
        let c = clamp(x);
        crate::eval::mean_pairwise(&c.chunks(image).collect::<Vec<_>>())
    };
    let (plain_success, score) = success(&r.plain)?;
    let (selected_success, _) = success(&r.selected)?;
    let centres = if saved.config.dataset == crate::train::DatasetKind::Toy2d {
        crate::data::toy2d_means(
            saved.config.classes,
            crate::data::Toy2dSpec::default().radius,
        )
    } else {
        Vec::new()
    };
    let cols = (n as f64).sqrt().ceil() as u32;
    for (dir, x) in [("plain", &r.plain), ("selected", &r.selected)] {
        crate::report::save_samples(
            &out.join(dir),
            m,
            &clamp(x),
            &labels,
            &saved.label_names,
            cols,
            &centres,
        )?;
    }
    let guided = if o.guidance == 1.0 { 1 } else { 2 };
    let report = Report {
        run: run.display().to_string(),
        label: label.to_string(),
        available: matching.len(),
        references: used.len(),
        encoder: format!(
            "MLP {}-{HIDDEN}-{} (ReLU features) trained on the run's training split, one class \
             per distinct label row; accuracy {:.1}% on that split",
            m.channels * m.height * m.width,
            rows.len().max(2),
            100.0 * acc
        ),
        encoder_seconds,
        options: o.clone(),
        sem_weight,
        app_weight,
        plain_success,
        selected_success,
        score,
        plain_diversity: diversity(&r.plain),
        selected_diversity: diversity(&r.selected),
        losses: r.losses,
        seconds: r.seconds,
        seconds_per_seed: r.seconds / n as f64,
        forwards_per_seed: 2 * o.steps * o.iters + o.steps,
        backwards_per_seed: o.steps * o.iters,
        rows_per_seed: guided,
    };
    crate::error::write_json(&out.join("report.json"), &report)?;
    Ok(report)
}
