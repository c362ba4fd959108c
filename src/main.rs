//! The `imba` command line: training, sampling, device information, a fused-loss
//! demonstration, benchmarks.

use clap::{Args, Parser, Subcommand};
use imba::gpu::{Gpu, GpuTimer};
use imba::kernels::*;
use imba::reference;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "imba",
    version,
    about = "IMBA concept-balancing diffusion training kernels in WGSL, on any GPU"
)]
struct Cli {
    /// Use the first adapter whose name contains this text (default: WGPU_ADAPTER_NAME, else
    /// the best hardware GPU, else the software Vulkan adapter). WGPU_BACKEND=vulkan|metal|dx12
    /// restricts the APIs searched.
    #[arg(long, global = true)]
    adapter: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a DiT on a (long-tailed) data set with the baseline, IMBA or dual-baseline
    /// objective. With no options: the built-in shapes set, IMBA, a small model, a few minutes
    /// on a 2-core CPU. Every option is also a key of a TOML file (--config); flags override
    /// the file. Writes into the run folder (--out): config.toml, split.json, log.jsonl (one
    /// line per step), loss.png, checkpoint.safetensors (every --checkpoint-every steps),
    /// model.safetensors (EMA weights, DiT names) and samples/.
    Train(TrainArgs),
    /// Draw samples from a trained run: PNG grid, one PNG per sample, and the raw samples
    /// (safetensors).
    Sample(SampleArgs),
    /// Evaluate a trained run on its data set's oracle (shapes detector, toy2d hit rate,
    /// digits classifier): scores per label and per frequency bucket, written to
    /// <run>/eval.json.
    Eval(EvalArgs),
    /// Train and evaluate several objectives × seeds at equal compute on one data set; write
    /// compare.md (mean ± std over seeds), compare.json and PNG plots into --out
    /// [default: runs/compare-<dataset>]. Finished runs in that folder are reused.
    Compare(CompareArgs),
    /// SeedSelect (training-free): optimise the initial noise of a trained run's samples of
    /// one label (or concept list) so that they match a few of its training images, through
    /// a deterministic DDIM chain; report the oracle's success against plain sampling from
    /// the same seeds, and the time per seed. Writes plain/, selected/ and report.json.
    Seedselect(SeedSelectArgs),
    /// InvDiff (no bias labels): infer soft groups from a trained run's per-sample losses,
    /// train a small zero-initialised δ-DiT beside the frozen model with the mean + variance
    /// group loss, and evaluate r·ε_δ + (1 − r)·ε against the frozen model alone on the same
    /// seeds. Writes report.json, groups.safetensors, delta.safetensors, log.jsonl.
    Invdiff(InvDiffArgs),
    /// Print the adapter, backend, driver, and the features and limits the kernels use; with
    /// --model, also the memory a DiT and batch need for training.
    Info(InfoArgs),
    /// Run the fused IMBA loss on a synthetic batch, check it against the CPU reference, and
    /// show that D weights the tokens the unconditional pass predicts worst.
    Demo(DemoArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Args)]
struct InfoArgs {
    /// A DiT preset (S, B, L or XL with patch 2, 4 or 8, e.g. S/2) to report memory for.
    #[arg(long)]
    model: Option<String>,
    /// Batch size B for the memory report.
    #[arg(long, default_value_t = 128)]
    batch: u32,
    /// Image (or latent) height and width in pixels.
    #[arg(long, default_value_t = 32)]
    image_size: u32,
    /// Image (or latent) channels.
    #[arg(long, default_value_t = 4)]
    channels: u32,
    /// Number of labels (the label table has one more row, ∅).
    #[arg(long, default_value_t = 1000)]
    labels: u32,
    /// One forward of B rows (the baseline) instead of IMBA's dual forward of 2B rows.
    #[arg(long)]
    single: bool,
}

#[derive(Args)]
struct TrainArgs {
    /// A TOML file of options (keys as the long flags, with _ for -); flags override it.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Continue the run in this folder from its checkpoint, bit-exactly; only steps,
    /// checkpoint-every and the sampling options may change.
    #[arg(long)]
    resume: Option<std::path::PathBuf>,
    /// No progress bar or split table.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    opts: Box<imba::train::TrainOptions>,
}

/// How evaluation samples are drawn.
#[derive(Args)]
struct EvalSampling {
    /// Samples per label (per prompt for shapes concepts; 0 = toy2d 100, shapes 16, all 256
    /// concept prompts once, digits 50).
    #[arg(long, default_value_t = 0)]
    eval_per_label: u32,
    /// DDIM (or Euler) steps of the evaluation samples.
    #[arg(long, default_value_t = 50)]
    eval_steps: u32,
    /// Classifier-free guidance of the evaluation samples.
    #[arg(long, default_value_t = 1.5)]
    eval_guidance: f32,
    /// Noise seed of the evaluation samples.
    #[arg(long, default_value_t = 1000)]
    eval_seed: u32,
}

impl EvalSampling {
    fn options(&self) -> imba::eval::EvalOptions {
        imba::eval::EvalOptions {
            per_label: self.eval_per_label,
            steps: self.eval_steps,
            guidance: self.eval_guidance,
            seed: self.eval_seed,
            ema: true,
        }
    }
}

#[derive(Args)]
struct EvalArgs {
    /// The run folder written by `imba train`.
    #[arg(long, default_value = "runs/shapes-imba")]
    run: std::path::PathBuf,
    #[command(flatten)]
    sampling: EvalSampling,
}

#[derive(Args)]
struct CompareArgs {
    /// Objectives, comma-separated: baseline, dual-baseline, imba (token-wise D),
    /// imba-sample (sample-wise D), cbdm (frequency prior), cbdm-uniform, ccua, invdiff (on the
    /// baseline run of each seed; list baseline first).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "baseline,dual-baseline,imba,imba-sample"
    )]
    objectives: Vec<String>,
    /// Training seeds, comma-separated (the data set stays that of --data-seed).
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    seeds: Vec<u32>,
    /// A TOML file of training options shared by every run (flags override it).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Only the final table, no per-run lines.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    sampling: EvalSampling,
    #[command(flatten)]
    opts: Box<imba::train::TrainOptions>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SamplerName {
    Ddpm,
    Ddim,
    Euler,
}

#[derive(Args)]
struct SeedSelectArgs {
    /// The run folder written by `imba train`.
    #[arg(long)]
    run: std::path::PathBuf,
    /// The rare label, by name or number, or a concept list joined by '+'.
    #[arg(long)]
    label: String,
    /// Reference images: the first this many training images with exactly this label row.
    #[arg(long, default_value_t = 5)]
    refs: u32,
    /// Seeds to optimise (and plain samples to compare with).
    #[arg(long, default_value_t = 16)]
    samples: u32,
    /// DDIM (or Euler) steps of the chain.
    #[arg(long, default_value_t = 20)]
    steps: u32,
    /// AdamW iterations.
    #[arg(long, default_value_t = 30)]
    iters: u32,
    /// AdamW learning rate (divided by 10 after iteration 3).
    #[arg(long, default_value_t = 0.1)]
    lr: f32,
    /// Classifier-free guidance scale of the chain.
    #[arg(long, default_value_t = 1.5)]
    guidance: f32,
    /// Noise seed (iteration 0 is `imba sample --seed` with this seed).
    #[arg(long, default_value_t = 0)]
    seed: u32,
    /// Seeds optimised together.
    #[arg(long, default_value_t = 16)]
    batch: u32,
    /// Weight of the semantic loss (10 as published).
    #[arg(long, default_value_t = 10.0)]
    sem_weight: f64,
    /// Weight of the appearance loss (1 as published).
    #[arg(long, default_value_t = 1.0)]
    app_weight: f64,
    /// Use the raw weights instead of the EMA weights.
    #[arg(long)]
    no_ema: bool,
    /// Output folder [default: <run>/seedselect-<label>].
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

#[derive(Args)]
struct InvDiffArgs {
    /// The trained (biased) run folder; its EMA weights are frozen.
    #[arg(long)]
    base: std::path::PathBuf,
    /// δ training steps.
    #[arg(long, default_value_t = 500)]
    steps: u32,
    /// Soft groups G.
    #[arg(long, default_value_t = 8)]
    groups: u32,
    /// Mixing weight r of the δ-model.
    #[arg(long, default_value_t = 0.8)]
    r: f32,
    /// Start the δ-DiT fresh with this depth (the paper's "small δ-network") instead of as
    /// a copy of the frozen model with its output layer zeroed (the official code's default).
    #[arg(long)]
    delta_depth: Option<u32>,
    /// (t, ε) draws per training image for its loss.
    #[arg(long, default_value_t = 4)]
    draws: u32,
    /// λ of the variance term (0: the mean of the group losses alone, an ablation).
    #[arg(long, default_value_t = 1.0)]
    var_weight: f64,
    /// δ learning rate [default: the base run's].
    #[arg(long)]
    lr: Option<f32>,
    /// Output folder [default: <base>/invdiff].
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    #[command(flatten)]
    sampling: EvalSampling,
}

#[derive(Args)]
struct SampleArgs {
    /// The run folder written by `imba train` (its checkpoint.safetensors is read).
    #[arg(long, default_value = "runs/shapes-imba")]
    run: std::path::PathBuf,
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
    /// DDIM η (0 deterministic, 1 DDPM-like).
    #[arg(long, default_value_t = 0.0)]
    eta: f32,
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
    /// Output folder [default: <run>/samples-seed<seed>].
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

#[derive(Args)]
struct DemoArgs {
    /// Batch size B.
    #[arg(long, default_value_t = 8)]
    batch: u32,
    /// Image channels C.
    #[arg(long, default_value_t = 4)]
    channels: u32,
    /// Image height and width (square).
    #[arg(long, default_value_t = 16)]
    size: u32,
    /// Patch size p (must divide --size).
    #[arg(long, default_value_t = 2)]
    patch: u32,
    /// IMBA exponent γ (0 gives the dual baseline, D ≡ 1).
    #[arg(long, default_value_t = 0.8)]
    gamma: f32,
    /// IMBA mix λ of the conditional term.
    #[arg(long, default_value_t = 0.9)]
    lambda: f32,
    /// Philox seed.
    #[arg(long, default_value_t = 0)]
    seed: u32,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Steps/s of whole training steps for each objective on one training config (the same
    /// options as `imba train`); prints a Markdown table for BENCHMARKS.md.
    Train {
        /// A TOML file of training options.
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// Objectives to time, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "baseline,dual-baseline,imba,cbdm,ccua"
        )]
        objectives: Vec<imba::train::Objective>,
        /// Timed steps per objective (median reported).
        #[arg(long, default_value_t = 10)]
        reps: usize,
        /// Untimed warm-up steps.
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        #[command(flatten)]
        opts: Box<imba::train::TrainOptions>,
    },
    /// Fused vs unfused IMBA loss, baseline MSE and the noise kernel, with GPU timestamps, at the
    /// issue's sizes (or --size); prints a Markdown table for BENCHMARKS.md.
    Kernels {
        /// Timed runs per kernel (median reported).
        #[arg(long, default_value_t = 20)]
        reps: usize,
        /// Untimed warm-up runs.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// Image geometry B,C,H,W,p (repeatable); default: 256,4,32,32,2 64,3,32,32,4 1024,2,1,1,1.
        #[arg(long, value_parser = parse_geometry)]
        size: Vec<ImageGeometry>,
    },
    /// GFLOP/s of the matmul (default kernel and portable kernel) at the linear-layer shapes of
    /// issue 3, for A·B and A·Bᵀ; prints a Markdown table for BENCHMARKS.md.
    Matmul {
        /// Timed runs per product with the default kernel (median reported).
        #[arg(long, default_value_t = 10)]
        reps: usize,
        /// Untimed warm-up runs.
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// Timed runs of the slow portable kernel (0 skips it).
        #[arg(long, default_value_t = 3)]
        portable_reps: usize,
        /// Product shape M,K,N (repeatable); default: 1024,64,192 1024,256,64 4096,128,512
        /// 1024,1024,1024.
        #[arg(long, value_parser = parse_mkn)]
        shape: Vec<(u32, u32, u32)>,
        /// Products of the default kernel recorded back to back in one submission; the time
        /// reported is per product. 1 (the default) pays a submit and wait per product (about
        /// 0.3 ms on lavapipe, half the time of a (1024, 64, 192) product); a training step
        /// records hundreds of launches per submission, which a larger value models.
        #[arg(long, default_value_t = 1)]
        stream: usize,
    },
    /// Wall-clock time of a DiT's dual forward and of a whole IMBA training step (forward,
    /// fused loss, backward, gradient norm, AdamW, EMA) on random data.
    Dit {
        /// A preset (S/2, B/4, …) or "tiny" (depth 2, D 32, 2 heads, patch 2).
        #[arg(long, default_value = "tiny")]
        model: String,
        /// Image (or latent) height and width.
        #[arg(long, default_value_t = 8)]
        image_size: u32,
        /// Image channels.
        #[arg(long, default_value_t = 3)]
        channels: u32,
        /// Number of labels.
        #[arg(long, default_value_t = 10)]
        labels: u32,
        /// Samples per step (the dual forward runs twice as many rows).
        #[arg(long, default_value_t = 16)]
        batch: u32,
        /// Overrides the preset's depth (e.g. a shallow S for a quick measurement).
        #[arg(long)]
        depth: Option<u32>,
        /// Timed steps (median reported).
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Untimed warm-up steps.
        #[arg(long, default_value_t = 1)]
        warmup: usize,
    },
}

fn parse_mkn(s: &str) -> Result<(u32, u32, u32), String> {
    let v: Vec<u32> = s
        .split(',')
        .map(|x| x.trim().parse::<u32>().map_err(|e| format!("'{x}': {e}")))
        .collect::<Result<_, _>>()?;
    match v[..] {
        [m, k, n] if m > 0 && k > 0 && n > 0 => Ok((m, k, n)),
        _ => Err(format!(
            "expected M,K,N (three positive integers), got '{s}'"
        )),
    }
}

fn parse_geometry(s: &str) -> Result<ImageGeometry, String> {
    let v: Vec<u32> = s
        .split(',')
        .map(|x| x.trim().parse::<u32>().map_err(|e| format!("'{x}': {e}")))
        .collect::<Result<_, _>>()?;
    let [batch, channels, height, width, patch] = v[..] else {
        return Err(format!("expected B,C,H,W,p (five integers), got '{s}'"));
    };
    let g = ImageGeometry {
        batch,
        channels,
        height,
        width,
        patch,
    };
    g.validate().map_err(|e| e.to_string())?;
    Ok(g)
}

/// Command-line options over those of a TOML file.
fn with_file(
    opts: imba::train::TrainOptions,
    file: Option<&std::path::Path>,
) -> imba::Result<imba::train::TrainOptions> {
    Ok(match file {
        Some(f) => opts.or(imba::train::TrainOptions::from_toml_file(f)?),
        None => opts,
    })
}

fn train(gpu: &Gpu, a: TrainArgs) -> imba::Result<()> {
    let opts = with_file(*a.opts, a.config.as_deref())?;
    if !a.quiet {
        eprintln!("adapter: {}", gpu.info.name);
    }
    let o = imba::train::run::train(gpu, opts, a.resume.as_deref(), !a.quiet)?;
    if let Some(s) = o.last {
        println!(
            "trained {} steps in {:.1} s ({:.2} steps/s); step {}: loss {:.5}, L_c {:.5}, L_u {:.5}, mean D {:.4}",
            o.steps_run,
            o.seconds,
            o.steps_run as f64 / o.seconds.max(1e-9),
            s.step,
            s.loss,
            s.loss_c,
            s.loss_u,
            s.mean_d
        );
    }
    println!("outputs in {}:", o.out.display());
    for f in &o.written {
        println!("  {}", f.display());
    }
    Ok(())
}

fn eval(gpu: &Gpu, a: EvalArgs) -> imba::Result<()> {
    let e = imba::eval::evaluate_run(gpu, &a.run, &a.sampling.options())?.evaluation;
    println!("{} samples; per-label score: {}", e.samples, e.score);
    for (k, v) in &e.metrics {
        println!("  {k:<16} {v:.4}");
    }
    println!("per label:");
    for l in &e.per_label {
        println!(
            "  {:<16} {:>6} images  {:<4}  {:.3}",
            l.name, l.frequency, l.bucket, l.score
        );
    }
    for n in &e.notes {
        println!("note: {n}");
    }
    let path = a.run.join("eval.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&e).expect("serialisable"),
    )
    .map_err(|err| imba::Error::Io {
        path: path.display().to_string(),
        problem: format!("cannot write ({err})"),
    })?;
    println!("written: {}", path.display());
    Ok(())
}

fn compare(gpu: &Gpu, a: CompareArgs) -> imba::Result<()> {
    let base = with_file(*a.opts, a.config.as_deref())?;
    let spec = imba::compare::CompareSpec {
        base,
        variants: a.objectives.clone(),
        seeds: a.seeds.clone(),
        eval: a.sampling.options(),
    };
    if !a.quiet {
        eprintln!("adapter: {}", gpu.info.name);
    }
    let c = imba::compare::compare(gpu, &spec, !a.quiet)?;
    println!("{}", imba::compare::markdown(&c, &a.objectives));
    Ok(())
}

fn seedselect(gpu: &Gpu, a: SeedSelectArgs) -> imba::Result<()> {
    let o = imba::remedies::seedselect::Options {
        samples: a.samples,
        steps: a.steps,
        iters: a.iters,
        lr: a.lr,
        guidance: a.guidance,
        seed: a.seed,
        batch: a.batch,
        ..Default::default()
    };
    let out = a.out.unwrap_or_else(|| {
        a.run.join(format!(
            "seedselect-{}",
            a.label.replace(['+', ':', '/'], "_")
        ))
    });
    let r = imba::remedies::seedselect::run(
        gpu,
        &a.run,
        &a.label,
        a.refs,
        !a.no_ema,
        (a.sem_weight, a.app_weight),
        &o,
        &out,
    )?;
    println!(
        "{}: {} of {} training images as references; encoder {} ({:.1} s)",
        r.label, r.references, r.available, r.encoder, r.encoder_seconds
    );
    println!(
        "loss per sample {:.4} -> {:.4} over {} iterations",
        r.losses[0],
        r.losses[r.losses.len() - 1],
        o.iters
    );
    println!(
        "success ({}): plain {:.3}, seedselect {:.3}  ({} seeds, {:.1} s per seed)",
        r.score, r.plain_success, r.selected_success, o.samples, r.seconds_per_seed
    );
    println!(
        "diversity (mean pairwise distance): plain {:.3}, seedselect {:.3}",
        r.plain_diversity, r.selected_diversity
    );
    println!("wrote {}", out.display());
    Ok(())
}

fn invdiff(gpu: &Gpu, a: InvDiffArgs) -> imba::Result<()> {
    let saved = imba::train::state::load(&a.base.join(imba::train::run::CHECKPOINT))?;
    let mut o = imba::remedies::invdiff::Options::for_base(&saved.config);
    o.steps = a.steps;
    o.groups = a.groups;
    o.r = a.r;
    o.draws = a.draws;
    o.var_weight = a.var_weight;
    if let Some(depth) = a.delta_depth {
        o.delta_init = imba::remedies::invdiff::DeltaInit::Scratch { depth };
    }
    if let Some(lr) = a.lr {
        o.lr = lr;
    }
    let out = a.out.unwrap_or_else(|| a.base.join("invdiff"));
    let r = imba::remedies::invdiff::run(gpu, &a.base, &o, &a.sampling.options(), &out)?;
    println!(
        "groups: spread of the group-mean losses {:.4} -> {:.4}; mass {:?}",
        r.spread_start,
        r.spread_end,
        r.group_mass.iter().map(|m| m.round()).collect::<Vec<_>>()
    );
    println!(
        "δ-model: {} parameters (base {}); loss {:.4} -> {:.4} over {} steps",
        r.delta_params, r.base_params, r.loss_first, r.loss_last, o.steps
    );
    println!(
        "seconds: losses {:.0}, groups {:.0}, δ training {:.0}, evaluation {:.0}",
        r.seconds[0], r.seconds[1], r.seconds[2], r.seconds[3]
    );
    println!("{:<16} {:>8} {:>8}", "metric", "frozen", "invdiff");
    for (k, v) in &r.evaluation.metrics {
        let b = r.base_evaluation.metric(k).unwrap_or(f64::NAN);
        println!("{k:<16} {b:>8.3} {v:>8.3}");
    }
    println!("wrote {}", out.display());
    Ok(())
}

fn sample(gpu: &Gpu, a: SampleArgs) -> imba::Result<()> {
    use imba::diffusion::Sampler;
    use imba::train::Process;
    let saved = imba::train::state::load(&a.run.join(imba::train::run::CHECKPOINT))?;
    let (m, names) = (&saved.model, &saved.label_names);
    let slots = m.label_slots as usize;
    let mut rows: Vec<Vec<u32>> = Vec::new();
    if !a.concepts.is_empty() {
        for list in &a.concepts {
            rows.push(imba::diffusion::generate::parse_label_row(list, names, m)?);
        }
    } else if !a.labels.is_empty() {
        for l in &a.labels {
            rows.push(imba::diffusion::generate::parse_label_row(l, names, m)?);
        }
    } else if slots == 1 {
        rows = (0..m.num_labels).map(|l| vec![l]).collect();
    } else {
        return Err(imba::Error::Config(
            "this model takes concept lists: give --concepts a+b+…".into(),
        ));
    }
    if a.count == 0 {
        return Err(imba::Error::Config("--count must be at least 1".into()));
    }
    let labels: Vec<u32> = rows
        .iter()
        .flat_map(|r| std::iter::repeat_n(r.clone(), a.count as usize).flatten())
        .collect();
    let process = saved.config.process;
    let sampler = match (a.sampler, process) {
        (Some(SamplerName::Ddpm), Process::Ddpm) => Sampler::Ddpm,
        (Some(SamplerName::Ddim) | None, Process::Ddpm) => Sampler::Ddim {
            steps: a.steps,
            eta: a.eta,
        },
        (Some(SamplerName::Euler) | None, Process::Flow) => Sampler::Euler { steps: a.steps },
        _ => {
            return Err(imba::Error::Config(format!(
                "this run was trained with {process:?}: use ddpm or ddim for DDPM runs, euler for flow runs"
            )))
        }
    };
    let params = if a.no_ema {
        &saved.state.params
    } else {
        &saved.state.ema
    };
    let start = std::time::Instant::now();
    let images = imba::diffusion::generate::generate(
        gpu,
        &imba::diffusion::generate::SampleSpec {
            model: m,
            params,
            process,
            sampler,
            guidance: a.guidance,
            seed: a.seed,
            batch: a.batch,
            delta: None,
        },
        &labels,
    )?;
    let out = a
        .out
        .unwrap_or_else(|| a.run.join(format!("samples-seed{}", a.seed)));
    let centres = if saved.config.dataset == imba::train::DatasetKind::Toy2d {
        imba::data::toy2d_means(
            saved.config.classes,
            imba::data::Toy2dSpec::default().radius,
        )
    } else {
        Vec::new()
    };
    let written =
        imba::report::save_samples(&out, m, &images, &labels, names, a.count, &centres)?;
    println!(
        "{} samples in {:.1} s ({sampler:?}, guidance {}, {} weights of step {})",
        labels.len() / slots,
        start.elapsed().as_secs_f64(),
        a.guidance,
        if a.no_ema { "raw" } else { "EMA" },
        saved.state.step
    );
    for f in written {
        println!("  {}", f.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // Silences the Vulkan loader's warning on headless machines.
        std::env::set_var("XDG_RUNTIME_DIR", "/tmp");
    }
    let cli = Cli::parse();
    let name = cli.adapter.clone().or_else(|| {
        std::env::var("WGPU_ADAPTER_NAME")
            .ok()
            .filter(|s| !s.is_empty())
    });
    let result = Gpu::with_adapter_name(name.as_deref()).and_then(|gpu| match cli.command {
        Command::Info(a) => {
            print!("{}", gpu.describe());
            println!(
                "kernel families  {}",
                imba::shaders::FAMILIES
                    .iter()
                    .map(|f| f.0)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if let Some(name) = &a.model {
                let cfg = imba::model::DitConfig::preset(name, a.image_size, a.channels, a.labels)?;
                let r = imba::model::MemoryReport::new(&cfg, a.batch, if a.single { 1 } else { 2 });
                println!("\n{r}");
                let max = gpu.device.limits().max_storage_buffer_binding_size;
                if r.largest.1 > max {
                    println!(
                        "does not fit:     `{}` exceeds this adapter's {max}-byte storage binding; \
                         use a smaller batch",
                        r.largest.0
                    );
                }
            }
            Ok(())
        }
        Command::Demo(a) => demo(&gpu, &a),
        Command::Train(a) => train(&gpu, a),
        Command::Sample(a) => sample(&gpu, a),
        Command::Seedselect(a) => seedselect(&gpu, a),
        Command::Invdiff(a) => invdiff(&gpu, a),
        Command::Eval(a) => eval(&gpu, a),
        Command::Compare(a) => compare(&gpu, a),
        Command::Bench(BenchCommand::Train {
            config,
            objectives,
            reps,
            warmup,
            opts,
        }) => {
            let opts = with_file(*opts, config.as_deref())?;
            let (header, rows) =
                imba::bench::train::train_steps(&gpu, &opts, &objectives, warmup, reps)?;
            println!("{}", imba::bench::train::markdown(&header, &rows));
            Ok(())
        }
        Command::Bench(BenchCommand::Kernels { reps, warmup, size }) => {
            let sizes = if size.is_empty() {
                imba::bench::default_sizes()
            } else {
                size
            };
            let report = imba::bench::kernels(&gpu, &sizes, warmup, reps)?;
            println!("{}", report.markdown());
            Ok(())
        }
        Command::Bench(BenchCommand::Matmul {
            reps,
            warmup,
            portable_reps,
            shape,
            stream,
        }) => {
            let shapes = if shape.is_empty() {
                imba::bench::MATMUL_SHAPES.to_vec()
            } else {
                shape
            };
            let report = imba::bench::matmul(&gpu, &shapes, warmup, reps, portable_reps, stream)?;
            println!("{}", report.markdown());
            Ok(())
        }
        Command::Bench(BenchCommand::Dit {
            model,
            image_size,
            channels,
            labels,
            batch,
            depth,
            reps,
            warmup,
        }) => {
            let mut cfg = if model.eq_ignore_ascii_case("tiny") {
                imba::model::DitConfig {
                    height: image_size,
                    width: image_size,
                    channels,
                    num_labels: labels,
                    ..imba::model::DitConfig::tiny()
                }
            } else {
                imba::model::DitConfig::preset(&model, image_size, channels, labels)?
            };
            if let Some(d) = depth {
                cfg.depth = d;
            }
            cfg.validate()?;
            let r = imba::bench::dit_step(&gpu, &cfg, batch, warmup, reps)?;
            println!("adapter: {}\n", gpu.info.name);
            println!("{}", r.markdown());
            Ok(())
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A synthetic batch in which a square "rare object" in the middle of every image is
/// predicted badly by the unconditional pass (as an under-trained concept would be) and the
/// rest well; the fused loss should give those tokens the larger weight D.
fn demo(gpu: &Gpu, a: &DemoArgs) -> imba::Result<()> {
    let g = ImageGeometry {
        batch: a.batch,
        channels: a.channels,
        height: a.size,
        width: a.size,
        patch: a.patch,
    };
    g.validate()?;
    let p = ImbaParams {
        gamma: a.gamma,
        lambda: a.lambda,
        ..Default::default()
    };
    p.validate()?;
    let s = g.token_shape();
    let tokens_w = a.size / a.patch;
    let rare = |n: u32| {
        let (r, c) = (n / tokens_w, n % tokens_w);
        let lo = tokens_w / 4;
        let hi = tokens_w - lo;
        (lo..hi).contains(&r) && (lo..hi).contains(&c)
    };
    let target = reference::noise::target_tokens(&g, a.seed, 0, None);
    let k = s.token_dim as usize;
    let mut pred_c = vec![0.0f32; target.len()];
    let mut pred_u = vec![0.0f32; target.len()];
    for (i, &t) in target.iter().enumerate() {
        let n = ((i / k) as u32) % s.tokens;
        // A fixed, deterministic error pattern: ±1 alternating, scaled per region.
        let sign = if (i * 2654435761) % 7 < 3 { -1.0 } else { 1.0 };
        let scale_u = if rare(n) { 0.9 } else { 0.15 };
        pred_u[i] = t + sign * scale_u;
        pred_c[i] = t + 0.3 * sign;
    }
    let dev = &gpu.device;
    let kernels = LossKernels::new(dev)?;
    let ws = kernels.workspace(dev, s)?;
    let pc = gpu.upload("pred_cond", &pred_c);
    let pu = gpu.upload("pred_uncond", &pred_u);
    let weights = gpu.poisoned("weights", s.rows() as usize);
    let gc = gpu.poisoned("grad_cond", s.elements() as usize);
    let gu = gpu.poisoned("grad_uncond", s.elements() as usize);
    let scalars = gpu.poisoned("scalars", 4);
    let args = ImbaLossArgs {
        shape: s,
        pred_cond: &pc,
        pred_uncond: &pu,
        target: Target::Philox {
            seed: a.seed,
            step: 0,
            geometry: g,
            kind: TargetKind::Epsilon,
            x0: None,
        },
        weights: &weights,
        grad_cond: &gc,
        grad_uncond: &gu,
        scalars: &scalars,
        workspace: &ws,
    };
    let timer = GpuTimer::new(gpu);
    let mut enc = gpu.encoder();
    if let Some(t) = &timer {
        t.start(&mut enc);
    }
    kernels.record_imba(dev, &mut enc, &args, &p)?;
    if let Some(t) = &timer {
        t.stop(&mut enc);
    }
    gpu.submit_and_wait(enc)?;
    let gpu_ms = match &timer {
        Some(t) => format!(
            "{:.3} ms GPU time (first run, includes pipeline warm-up)",
            t.elapsed_ns(gpu)? / 1e6
        ),
        None => "no timestamp support on this adapter".into(),
    };
    let got: Vec<f32> = gpu.read(&scalars, 4)?;
    let d: Vec<f32> = gpu.read(&weights, s.rows() as usize)?;
    let gcv: Vec<f32> = gpu.read(&gc, s.elements() as usize)?;
    let want = reference::loss::imba(
        s,
        &reference::loss::widen(&pred_c),
        &reference::loss::widen(&pred_u),
        &reference::loss::widen(&target),
        &p,
    );
    let rel = |g: f32, w: f64| (g as f64 - w).abs() / w.abs().max(1e-30);
    let max_d = d
        .iter()
        .zip(&want.weights)
        .map(|(&g, &w)| rel(g, w))
        .fold(0.0, f64::max);
    let max_g = gcv
        .iter()
        .zip(&want.grad_cond)
        .map(|(&g, &w)| (g as f64 - w).abs() / (w.abs() + 1e-12))
        .fold(0.0, f64::max);
    let (mut rare_d, mut rare_n, mut common_d, mut common_n) = (0.0, 0, 0.0, 0);
    for (t, &dv) in d.iter().enumerate() {
        if rare((t as u32) % s.tokens) {
            rare_d += dv as f64;
            rare_n += 1;
        } else {
            common_d += dv as f64;
            common_n += 1;
        }
    }
    println!("adapter: {} ({:?})", gpu.info.name, gpu.info.backend);
    println!(
        "batch (B, C, H, W) = ({}, {}, {}, {}), patch {} → tokens (B, N, K) = ({}, {}, {})",
        g.batch, g.channels, g.height, g.width, g.patch, s.batch, s.tokens, s.token_dim
    );
    println!(
        "IMBA γ = {}, λ = {}; target ε regenerated from Philox (seed {}, step 0)",
        p.gamma, p.lambda, a.seed
    );
    println!();
    println!("              GPU (fused)      CPU reference (f64)");
    for (i, name) in ["L", "L_c", "L_u", "mean D"].iter().enumerate() {
        let w = [want.loss, want.loss_cond, want.loss_uncond, want.mean_d][i];
        println!("  {name:<8}  {:<15.8}  {w:.8}", got[i]);
    }
    println!("  max relative error: D {max_d:.1e}, ∂L/∂ε_c {max_g:.1e}");
    println!();
    println!(
        "D on the badly predicted centre tokens: {:.4} (mean of {rare_n})",
        rare_d / rare_n.max(1) as f64
    );
    println!(
        "D on the well predicted tokens:         {:.4} (mean of {common_n})",
        common_d / common_n.max(1) as f64
    );
    println!("{gpu_ms}");
    if max_d > 1e-4 || max_g > 1e-3 || rel(got[0], want.loss) > 1e-5 {
        return Err(imba::Error::Readback(
            "the GPU result disagrees with the CPU reference".into(),
        ));
    }
    Ok(())
}
