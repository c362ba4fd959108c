//! The deterministic sampling chain (DDIM η = 0 or Euler, with guidance) written as linear
//! steps, and its backward to x_T by recomputing each step's model evaluation.

use super::*;

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
        let sampler = Sampler::deterministic(process, steps);
        let schedule = DdpmSchedule::default_linear();
        let chain = sampler.steps(&schedule)?;
        let e = (batch * model.tokens() as usize * model.token_dim() as usize) as u64;
        Ok(Self {
            gpu,
            dit: Dit::with_paths(dev, model.clone(), params, gpu.paths)?,
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
        // The read-back waits for the forward and its own copy at once.
        self.gpu.submit(enc);
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
        gpu.submit(enc);
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
