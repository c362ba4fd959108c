//! Sampling from a trained DiT: the chain runs on the host (one model evaluation per step on
//! the GPU, a readback, the sampler's update), with classifier-free guidance
//! ε̂ = ε_u + w·(ε_c − ε_u) computed from one forward of 2B rows (labels, then ∅).
//!
//! Reproducible: sample j's initial noise and every later z are Philox normals keyed by
//! (seed, chain step) at j's flat indices, so a sample does not depend on the batch it was
//! drawn in.

use super::{Process, FLOW_TIME_SCALE};
use crate::diffusion::{DdpmSchedule, Sampler};
use crate::gpu::Gpu;
use crate::kernels::NO_LABEL;
use crate::model::{tokens, Activations, Dit, DitConfig};
use crate::rng::noise_range;
use crate::{Error, Result};

/// What to sample.
pub struct SampleSpec<'a> {
    /// The model's configuration.
    pub model: &'a DitConfig,
    /// The model's flat parameters (usually the EMA weights).
    pub params: &'a [f32],
    /// The diffusion process the model was trained for (its prediction target).
    pub process: Process,
    /// The sampler and its number of steps.
    pub sampler: Sampler,
    /// Guidance scale w (1 = conditional only, one pass of B rows; 0 = unconditional).
    pub guidance: f32,
    /// Noise seed: sample i of a call draws from (seed, i), whatever the batch.
    pub seed: u32,
    /// Samples per model evaluation.
    pub batch: u32,
    /// InvDiff: a second model mixed into every prediction (before guidance).
    pub delta: Option<Delta<'a>>,
}

/// A δ-model whose prediction is mixed with the main model's: r·ε_δ + (1 − r)·ε (InvDiff).
#[derive(Clone, Copy)]
pub struct Delta<'a> {
    /// The δ-model's configuration (same image shape and labels as the main model).
    pub model: &'a DitConfig,
    /// The δ-model's flat parameters.
    pub params: &'a [f32],
    /// The mixing weight r of the δ-model's prediction.
    pub r: f32,
}

/// Draws one sample per label row (`labels` holds `label_slots` entries per sample; unused
/// slots [`NO_LABEL`]); returns images (n, C, H, W).
pub fn generate(gpu: &Gpu, s: &SampleSpec, labels: &[u32]) -> Result<Vec<f32>> {
    Generator::new(gpu, s)?.generate(gpu, labels)
}

/// [`generate`] without blocking on the read-backs: what a browser page awaits.
pub async fn generate_async(gpu: &Gpu, s: &SampleSpec<'_>, labels: &[u32]) -> Result<Vec<f32>> {
    Generator::new(gpu, s)?.generate_async(gpu, labels).await
}

/// The models of a [`SampleSpec`] on the device, made once for any number of
/// [`Generator::generate`] calls (each call's samples are keyed by their index within it).
pub struct Generator<'a> {
    spec: &'a SampleSpec<'a>,
    models: Models<'a>,
}

impl<'a> Generator<'a> {
    /// Puts the models of `spec` on the device.
    pub fn new(gpu: &Gpu, spec: &'a SampleSpec<'a>) -> Result<Self> {
        Ok(Self {
            spec,
            models: Models::new(gpu, spec)?,
        })
    }

    /// [`generate`] with these models.
    pub fn generate(&self, gpu: &Gpu, labels: &[u32]) -> Result<Vec<f32>> {
        pollster::block_on(self.generate_async(gpu, labels))
    }

    /// [`Generator::generate`] without blocking on the read-backs.
    pub async fn generate_async(&self, gpu: &Gpu, labels: &[u32]) -> Result<Vec<f32>> {
        self.models.generate(gpu, self.spec, labels).await
    }
}

impl Models<'_> {
    async fn generate(&self, gpu: &Gpu, s: &SampleSpec<'_>, labels: &[u32]) -> Result<Vec<f32>> {
        let n = check(s, labels)?;
        let m = s.model;
        let (slots, image) = (m.label_slots as usize, m.image_len());
        let models = self;
        let mut out = Vec::with_capacity(n * image);
        let mut start = 0usize;
        while start < n {
            let b = (s.batch as usize).min(n - start);
            let rows = &labels[start * slots..(start + b) * slots];
            let x = models.sample_batch(gpu, s, rows, start).await?;
            if let Some(i) = x.iter().position(|v| !v.is_finite()) {
                return Err(Error::Diverged(format!(
                    "sample {} became non-finite: the model overflows at these settings (a diverged or damaged model, or an extreme guidance)",
                    start + i / image
                )));
            }
            out.extend(x);
            start += b;
        }
        Ok(out)
    }
}

/// The number of samples, once the labels, guidance and batch are known to be usable.
fn check(s: &SampleSpec, labels: &[u32]) -> Result<usize> {
    let m = s.model;
    let slots = m.label_slots as usize;
    if labels.is_empty() || !labels.len().is_multiple_of(slots) {
        return Err(Error::Shape(format!(
            "{} labels for samples of {slots} label slots",
            labels.len()
        )));
    }
    crate::bounds::guidance("guidance", s.guidance)?;
    if let Sampler::Ddim { eta, .. } = s.sampler {
        // η scales DDPM's posterior noise: above 1 the deterministic part's variance would
        // go negative.
        if !(0.0..=1.0).contains(&eta) {
            return Err(Error::Config(format!(
                "`eta` is {eta}; give a value in 0..=1 (0 = deterministic DDIM, 1 = DDPM's noise)"
            )));
        }
    }
    if let Sampler::Ddim { steps, .. } | Sampler::Euler { steps } = s.sampler {
        if steps == 0 {
            return Err(Error::Config("sampler steps must be at least 1".into()));
        }
        crate::bounds::at_most("sampler steps", steps, crate::bounds::MAX_SAMPLER_STEPS)?;
    }
    let samples = labels.len() / slots;
    crate::bounds::host_memory(
        &format!("{samples} samples"),
        samples as u64 * m.image_len() as u64 * 4,
    )?;
    if s.batch == 0 {
        return Err(Error::Config(
            "the sampling batch must be at least 1".into(),
        ));
    }
    let n = labels.len() / slots;
    if (n as u64) * (m.image_len() as u64) >= u32::MAX as u64 {
        return Err(Error::Shape(
            "too many samples for 32-bit noise counters".into(),
        ));
    }
    if let Some(d) = &s.delta {
        let dm = d.model;
        if (dm.channels, dm.height, dm.width, dm.patch) != (m.channels, m.height, m.width, m.patch)
            || (dm.num_labels, dm.label_slots) != (m.num_labels, m.label_slots)
        {
            return Err(Error::Config(
                "the δ-model's image shape or labels differ from the base model's".into(),
            ));
        }
    }
    Ok(n)
}

/// The model on the device, and InvDiff's δ-model with its weight r where there is one.
struct Models<'a> {
    dit: Dit,
    delta: Option<(Dit, &'a DitConfig, f32)>,
}

impl<'a> Models<'a> {
    fn new(gpu: &Gpu, s: &SampleSpec<'a>) -> Result<Self> {
        let (dev, paths) = (&gpu.device, gpu.paths);
        let delta = match &s.delta {
            Some(d) => Some((
                Dit::with_paths(dev, d.model.clone(), d.params, paths)?,
                d.model,
                d.r,
            )),
            None => None,
        };
        Ok(Self {
            dit: Dit::with_paths(dev, s.model.clone(), s.params, paths)?,
            delta,
        })
    }

    /// The chain for one batch of samples (`rows`: their label rows; `start`: the first
    /// sample's index, which keys its noise).
    async fn sample_batch(
        &self,
        gpu: &Gpu,
        s: &SampleSpec<'_>,
        rows: &[u32],
        start: usize,
    ) -> Result<Vec<f32>> {
        let (dev, m) = (&gpu.device, s.model);
        let (slots, image) = (m.label_slots as usize, m.image_len());
        let b = rows.len() / slots;
        let repeats = if s.guidance == 1.0 { 1 } else { 2 };
        let acts = Activations::new(dev, m, b as u32, repeats)?;
        let delta_acts = match &self.delta {
            Some((_, dm, _)) => Some(Activations::new(dev, dm, b as u32, repeats)?),
            None => None,
        };
        let geometry = m.geometry(b as u32);
        let patches = gpu.zeros("sample_patches", (b * image * 4) as u64);
        let mut rows = rows.to_vec();
        if repeats == 2 {
            for _ in 0..b {
                rows.push(m.null_label());
                rows.extend(std::iter::repeat_n(NO_LABEL, slots - 1));
            }
        }
        let schedule = DdpmSchedule::default_linear();
        let first = (start * image) as u64;
        let mut x = noise_range(s.seed, 0, first, b * image);
        for (k, st) in s.sampler.steps(&schedule)?.iter().enumerate() {
            let t = match s.process {
                Process::Ddpm => st.t as f32,
                Process::Flow => st.t as f32 * FLOW_TIME_SCALE,
            };
            acts.set_conditions(&gpu.queue, m, &vec![t; b], &rows)?;
            if let (Some((_, dm, _)), Some(da)) = (&self.delta, &delta_acts) {
                da.set_conditions(&gpu.queue, dm, &vec![t; b], &rows)?;
            }
            let tokens_in = tokens::patchify(&x, &geometry);
            gpu.queue
                .write_buffer(&patches, 0, bytemuck::cast_slice(&tokens_in));
            let raw = self
                .predict(gpu, &acts, delta_acts.as_ref(), &patches)
                .await?;
            let (cond, uncond) = raw.split_at(b * image);
            let guided: Vec<f32> = if repeats == 2 {
                cond.iter()
                    .zip(uncond)
                    .map(|(&c, &u)| u + s.guidance * (c - u))
                    .collect()
            } else {
                cond.to_vec()
            };
            let pred = tokens::unpatchify(&guided, &geometry);
            let z = if s.sampler.needs_noise(st) {
                noise_range(s.seed, k as u32 + 1, first, b * image)
            } else {
                Vec::new()
            };
            s.sampler.update(&schedule, st, &mut x, &pred, &z);
        }
        Ok(x)
    }

    /// One evaluation of every row: the model's prediction, mixed r·ε_δ + (1 − r)·ε where
    /// there is a δ-model.
    async fn predict(
        &self,
        gpu: &Gpu,
        acts: &Activations,
        delta_acts: Option<&Activations>,
        patches: &wgpu::Buffer,
    ) -> Result<Vec<f32>> {
        let dev = &gpu.device;
        let mut enc = gpu.encoder();
        self.dit
            .record_forward(dev, &mut enc, acts, patches, None)?;
        if let (Some((ddit, _, _)), Some(da)) = (&self.delta, delta_acts) {
            ddit.record_forward(dev, &mut enc, da, patches, None)?;
        }
        // No wait here: the read-back's copy follows on the same queue and waits for both.
        gpu.submit(enc);
        let len = acts.rows() as usize * self.dit.config.image_len();
        let mut raw: Vec<f32> = gpu.read_async(&acts.out, len).await?;
        if let (Some((_, _, r)), Some(da)) = (&self.delta, delta_acts) {
            let d: Vec<f32> = gpu.read_async(&da.out, raw.len()).await?;
            for (v, dv) in raw.iter_mut().zip(d) {
                *v = r * dv + (1.0 - r) * *v;
            }
        }
        Ok(raw)
    }
}

/// One label row from text: a label or a concept list joined by '+' (names as
/// `label_names`, or numbers), padded to the model's slots with [`NO_LABEL`].
pub fn parse_label_row(text: &str, names: &[String], m: &DitConfig) -> Result<Vec<u32>> {
    let find = |name: &str| -> Result<u32> {
        names
            .iter()
            .position(|n| n == name)
            .map(|i| i as u32)
            .or_else(|| name.parse::<u32>().ok().filter(|&l| l < m.num_labels))
            .ok_or_else(|| {
                Error::Config(format!(
                    "unknown label `{name}`; this model knows {} (or 0..{})",
                    names.join(", "),
                    m.num_labels - 1
                ))
            })
    };
    let slots = m.label_slots as usize;
    let mut row: Vec<u32> = text
        .split('+')
        .map(|c| find(c.trim()))
        .collect::<Result<_>>()?;
    if row.is_empty() || row.len() > slots {
        return Err(Error::Config(format!(
            "`{text}` names {} labels; this model takes 1..={slots} per sample",
            row.len()
        )));
    }
    row.resize(slots, NO_LABEL);
    Ok(row)
}
