//! `imba sample`: samples of chosen labels or concept lists from a trained run or an exported
//! model.

use clap::Args;
use imba::diffusion::{Process, Sampler};
use imba::gpu::Gpu;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SamplerName {
    Ddpm,
    Ddim,
    Euler,
}

#[derive(Args)]
pub struct SampleArgs {
    /// The run folder written by `imba train` (its checkpoint.safetensors is read).
    #[arg(long, default_value = "runs/shapes-imba")]
    run: std::path::PathBuf,
    /// An exported model (a run's model.safetensors, or a snapshot) to sample instead of a
    /// run folder: it names its shape, process and labels.
    #[arg(long, conflicts_with = "run")]
    model: Option<std::path::PathBuf>,
    /// Class labels, by number or name, comma-separated (default: every label).
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    /// A concept list for multi-concept data, names joined by '+', e.g.
    /// left:red+left:circle+right:blue+right:square (repeatable).
    #[arg(long)]
    concepts: Vec<String>,
    /// Samples per label or concept list.
    #[arg(long, default_value_t = 8)]
    count: u32,
    /// Sampler: ddpm (ancestral, all 1000 steps), ddim, or euler (flow runs) [default: ddim
    /// for DDPM runs, euler for flow runs].
    #[arg(long, value_enum)]
    sampler: Option<SamplerName>,
    /// DDIM or Euler steps.
    #[arg(long, default_value_t = 50)]
    steps: u32,
    /// DDIM η (0 deterministic, 1 DDPM-like) [default: 0].
    #[arg(long)]
    eta: Option<f32>,
    /// Classifier-free guidance scale w: ε_u + w(ε_c − ε_u); 1 = no guidance.
    #[arg(long, default_value_t = 1.5)]
    guidance: f32,
    /// Use the raw weights instead of the EMA weights.
    #[arg(long)]
    no_ema: bool,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    seed: u32,
    /// Samples per model evaluation.
    #[arg(long, default_value_t = 64)]
    batch: u32,
    /// Output folder [default: <run>/samples-seed<seed>; with --model, beside the file:
    /// samples-<file stem>-seed<seed>].
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

/// What `imba sample` draws from: a run's checkpoint or an exported model.
struct Source {
    model: imba::model::DitConfig,
    process: Process,
    label_names: Vec<String>,
    params: Vec<f32>,
    /// The step of the weights and the run's steps, where known.
    trained: Option<imba::eval::Trained>,
    /// toy2d's class means, drawn on its scatter plot (a toy2d run only).
    centres: Vec<[f64; 2]>,
    /// "run" or "model", and its path, for the provenance record.
    origin: (&'static str, std::path::PathBuf),
    /// The default output folder.
    out: std::path::PathBuf,
}

fn source(a: &SampleArgs) -> imba::Result<Source> {
    let Some(file) = &a.model else {
        return run_source(a);
    };
    if a.no_ema {
        return Err(imba::Error::Config(
            "--no-ema: an exported model holds the EMA weights only; sample the run folder \
             (--run) for its raw weights"
                .into(),
        ));
    }
    let e = imba::train::export::load(file)?;
    let stem = file
        .file_stem()
        .map_or("model".into(), |s| s.to_string_lossy());
    let trained = e.step.zip(e.of_steps);
    Ok(Source {
        model: e.model,
        process: e.process,
        label_names: e.label_names,
        params: e.weights,
        trained: trained.map(|(step, of_steps)| imba::eval::Trained { step, of_steps }),
        centres: Vec::new(),
        origin: ("model", file.clone()),
        out: (file.parent().unwrap_or(std::path::Path::new(".")))
            .join(format!("samples-{stem}-seed{}", a.seed)),
    })
}

fn run_source(a: &SampleArgs) -> imba::Result<Source> {
    let saved = imba::train::RunDir::new(&a.run).load()?;
    let centres = if saved.config.dataset == imba::train::DatasetKind::Toy2d {
        let radius = imba::data::Toy2dSpec::default().radius;
        imba::data::toy2d_means(saved.config.classes, radius)
    } else {
        Vec::new()
    };
    let trained = imba::eval::Trained {
        step: saved.state.step,
        of_steps: saved.config.steps,
    };
    Ok(Source {
        process: saved.config.process,
        params: if a.no_ema {
            saved.state.params
        } else {
            saved.state.ema
        },
        model: saved.model,
        label_names: saved.label_names,
        trained: Some(trained),
        centres,
        origin: ("run", a.run.clone()),
        out: a.run.join(format!("samples-seed{}", a.seed)),
    })
}

pub fn run(gpu: &Gpu, a: SampleArgs) -> imba::Result<()> {
    let src = source(&a)?;
    let (m, names) = (&src.model, &src.label_names);
    let slots = m.label_slots as usize;
    let rows = label_rows(&a, m, names)?;
    if a.count == 0 {
        return Err(imba::Error::Config("--count must be at least 1".into()));
    }
    // The bound is on the samples drawn, every row's count together.
    let total = a.count as u64 * rows.len() as u64;
    imba::bounds::at_most(
        "count × rows (samples drawn)",
        total,
        imba::bounds::MAX_SAMPLES,
    )?;
    let labels: Vec<u32> = rows
        .iter()
        .flat_map(|r| std::iter::repeat_n(r.clone(), a.count as usize).flatten())
        .collect();
    let sampler = sampler(&a, src.process)?;
    let out = a.out.clone().unwrap_or_else(|| src.out.clone());
    imba::train::output_folder::check(&out, imba::train::OutputKind::Samples)?;
    let _lock = imba::train::FolderLock::acquire(&out)?;
    let start = std::time::Instant::now();
    let images = imba::diffusion::generate::generate(
        gpu,
        &imba::diffusion::generate::SampleSpec {
            model: m,
            params: &src.params,
            process: src.process,
            sampler,
            guidance: a.guidance,
            seed: a.seed,
            batch: a.batch,
            delta: None,
        },
        &labels,
    )?;
    let mut written =
        imba::report::save_samples(&out, m, &images, &labels, names, a.count, &src.centres)?;
    let weights = if a.no_ema { "raw" } else { "EMA" };
    // What the samples were drawn from, beside them: a run sampled before it finished says so.
    let record = out.join("provenance.json");
    let (kind, path) = &src.origin;
    imba::files::write_json(
        &record,
        &serde_json::json!({
            *kind: path.display().to_string(),
            "step": src.trained.map(|t| t.step),
            "of_steps": src.trained.map(|t| t.of_steps),
            "weights": weights,
            "sampler": format!("{sampler:?}"),
            "guidance": a.guidance,
            "seed": a.seed,
        }),
    )?;
    written.push(record);
    let of = src
        .trained
        .map_or("an export that names no step".into(), |t| t.describe());
    println!(
        "{} samples in {:.1} s ({sampler:?}, guidance {}, {weights} weights of {of})",
        labels.len() / slots,
        start.elapsed().as_secs_f64(),
        a.guidance,
    );
    for f in written {
        println!("  {}", f.display());
    }
    Ok(())
}

/// The label rows to sample: `--concepts` lists, `--labels`, or every label of a
/// one-label model.
fn label_rows(
    a: &SampleArgs,
    m: &imba::model::DitConfig,
    names: &[String],
) -> imba::Result<Vec<Vec<u32>>> {
    let slots = m.label_slots as usize;
    let given = if a.concepts.is_empty() {
        &a.labels
    } else {
        &a.concepts
    };
    if !given.is_empty() {
        return given
            .iter()
            .map(|l| imba::diffusion::generate::parse_label_row(l, names, m))
            .collect();
    }
    if slots == 1 {
        return Ok((0..m.num_labels).map(|l| vec![l]).collect());
    }
    Err(imba::Error::Config(
        "this model takes concept lists: give --concepts a+b+…".into(),
    ))
}

/// The sampler `--sampler`, `--steps` and `--eta` ask for, checked against the run's process.
fn sampler(a: &SampleArgs, process: Process) -> imba::Result<Sampler> {
    let sampler = match (a.sampler, process) {
        (Some(SamplerName::Ddpm), Process::Ddpm) => Sampler::Ddpm,
        (Some(SamplerName::Ddim) | None, Process::Ddpm) => Sampler::Ddim {
            steps: a.steps,
            eta: a.eta.unwrap_or(0.0),
        },
        (Some(SamplerName::Euler) | None, Process::Flow) => Sampler::Euler { steps: a.steps },
        _ => {
            return Err(imba::Error::Config(format!(
                "this run was trained with {process:?}: use ddpm or ddim for DDPM runs, euler for flow runs"
            )))
        }
    };
    if a.eta.is_some() && !matches!(sampler, Sampler::Ddim { .. }) {
        return Err(imba::Error::Config(format!(
            "`eta` is DDIM's; this run samples with {sampler:?}: leave --eta out (or use \
             --sampler ddim on a DDPM run)"
        )));
    }
    Ok(sampler)
}
