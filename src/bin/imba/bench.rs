//! `imba bench`: training steps, kernels, the matmul and the DiT step, timed on this
//! adapter, as Markdown tables for BENCHMARKS.md.

use crate::options::with_file;
use clap::Subcommand;
use imba::gpu::Gpu;
use imba::kernels::ImageGeometry;

#[derive(Subcommand)]
pub enum BenchCommand {
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
        objectives: Vec<imba::objectives::ObjectiveKind>,
        /// Timed steps per objective (median reported).
        #[arg(long, default_value_t = 10)]
        reps: usize,
        /// Untimed warm-up steps per objective (`--warmup` is the training's learning-rate
        /// warm-up, as in `imba train`).
        #[arg(long, default_value_t = 2)]
        untimed: usize,
        #[command(flatten)]
        opts: Box<imba::train::TrainOptions>,
    },
    /// Fused vs unfused IMBA loss, baseline MSE and the noise kernel, with GPU timestamps, at the
    /// DiT-S/2-like sizes (or --size); prints a Markdown table for BENCHMARKS.md.
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
    /// DiT-S, for A·B and A·Bᵀ; prints a Markdown table for BENCHMARKS.md.
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
    /// imba and PyTorch doing the same work on this machine, run by run in alternation: the
    /// fused IMBA loss (PyTorch eager and torch.compile), the IMBA training step at the
    /// default run's config and at DiT-S/2 shape, and DDIM-50 sampling. PyTorch runs in a
    /// child process; without --python, it is installed into target/torch-venv on first use
    /// (a large download).
    Torch {
        /// A Python with torch installed; default target/torch-venv/bin/python, made on first
        /// use.
        #[arg(long)]
        python: Option<std::path::PathBuf>,
        /// PyTorch's device: cpu, or cuda to compare with a GPU adapter.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// PyTorch CPU threads (default: this machine's cores).
        #[arg(long)]
        threads: Option<u32>,
        /// Allow TF32 matmuls on CUDA (off by default: imba computes in FP32).
        #[arg(long)]
        tf32: bool,
        /// Timed rounds per row (one run of each side per round).
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        /// Untimed rounds first.
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// What to run, comma-separated, from loss, loss-compiled, step, step-s2, sample.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "loss,loss-compiled,step,step-s2,sample"
        )]
        work: Vec<String>,
        /// The fused loss's token shape B,N,K.
        #[arg(long, default_value = "256,256,16", value_parser = parse_mkn)]
        loss_shape: (u32, u32, u32),
        /// Images per step at DiT-S/2 shape (32×32×4, 1000 labels).
        #[arg(long, default_value_t = 2)]
        s2_batch: u32,
        /// Images per sampling chain (default config).
        #[arg(long, default_value_t = 16)]
        sample_batch: u32,
    },
}

/// Refuses a count no benchmark can use — no timed repetition (a table of nothing), or so many
/// that their timings alone would not fit — before anything runs.
fn check_counts(command: &BenchCommand) -> imba::Result<()> {
    use imba::bounds::{at_most, MAX_BATCH, MAX_REPS};
    /// (option, value) pairs.
    type Counts = Vec<(&'static str, usize)>;
    let (timed, untimed): (Counts, Counts) = match command {
        BenchCommand::Train { reps, untimed, .. } => {
            (vec![("reps", *reps)], vec![("untimed", *untimed)])
        }
        BenchCommand::Kernels { reps, warmup, .. } => {
            (vec![("reps", *reps)], vec![("warmup", *warmup)])
        }
        BenchCommand::Matmul {
            reps,
            warmup,
            portable_reps,
            stream,
            ..
        } => (
            vec![("reps", *reps), ("stream", *stream)],
            vec![("warmup", *warmup), ("portable-reps", *portable_reps)],
        ),
        BenchCommand::Dit {
            reps,
            warmup,
            batch,
            ..
        } => {
            at_most("batch", *batch, MAX_BATCH)?;
            (vec![("reps", *reps)], vec![("warmup", *warmup)])
        }
        BenchCommand::Torch { rounds, warmup, .. } => {
            (vec![("rounds", *rounds)], vec![("warmup", *warmup)])
        }
    };
    for (name, n) in timed {
        if n == 0 {
            return Err(imba::Error::Config(format!(
                "`{name}` is 0: nothing would be timed; give at least 1"
            )));
        }
        at_most(name, n as u64, MAX_REPS)?;
    }
    for (name, n) in untimed {
        at_most(name, n as u64, MAX_REPS)?;
    }
    Ok(())
}

/// Runs one benchmark and prints its Markdown table.
pub fn run(gpu: &Gpu, command: BenchCommand) -> imba::Result<()> {
    check_counts(&command)?;
    match command {
        BenchCommand::Train {
            config,
            objectives,
            reps,
            untimed,
            opts,
        } => {
            let opts = with_file(*opts, config.as_deref())?;
            let (header, rows) =
                imba::bench::train::train_steps(gpu, &opts, &objectives, untimed, reps)?;
            println!("{}", imba::bench::train::markdown(&header, &rows));
            Ok(())
        }
        BenchCommand::Kernels { reps, warmup, size } => {
            let sizes = if size.is_empty() {
                imba::bench::default_sizes()
            } else {
                size
            };
            let report = imba::bench::kernels(gpu, &sizes, warmup, reps)?;
            println!("{}", report.markdown());
            Ok(())
        }
        BenchCommand::Matmul {
            reps,
            warmup,
            portable_reps,
            shape,
            stream,
        } => {
            let shapes = if shape.is_empty() {
                imba::bench::MATMUL_SHAPES.to_vec()
            } else {
                shape
            };
            let report = imba::bench::matmul(gpu, &shapes, warmup, reps, portable_reps, stream)?;
            println!("{}", report.markdown());
            Ok(())
        }
        BenchCommand::Dit {
            model,
            image_size,
            channels,
            labels,
            batch,
            depth,
            reps,
            warmup,
        } => {
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
            let r = imba::bench::dit_step(gpu, &cfg, batch, warmup, reps)?;
            println!("adapter: {}\n", gpu.info.name);
            println!("{}", r.markdown());
            Ok(())
        }
        BenchCommand::Torch { .. } => torch_side_by_side(gpu, command),
    }
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

/// `imba bench torch`.
fn torch_side_by_side(gpu: &Gpu, command: BenchCommand) -> imba::Result<()> {
    let BenchCommand::Torch {
        python,
        device,
        threads,
        tf32,
        rounds,
        warmup,
        work,
        loss_shape,
        s2_batch,
        sample_batch,
    } = command
    else {
        unreachable!("called for `bench torch` only")
    };
    let defaults = imba::train::TrainOptions::default().resolve()?;
    let (data, _) = imba::train::setup::load_data(&defaults)?;
    let default_model = imba::train::setup::model_config(&defaults, &data)?;
    let s2 = imba::model::DitConfig::preset("S/2", 32, 4, 1000)?;
    let (b, n, k) = loss_shape;
    let mut list = Vec::new();
    for w in &work {
        list.push(match w.as_str() {
            "loss" | "loss-compiled" => imba::bench::Work::Loss {
                shape: imba::kernels::TokenShape::new(b, n, k),
                compiled: w == "loss-compiled",
            },
            "step" => imba::bench::Work::Step {
                name: "default config".into(),
                config: default_model.clone(),
                batch: defaults.batch,
            },
            "step-s2" => imba::bench::Work::Step {
                name: "DiT-S/2 shape (32×32×4)".into(),
                config: s2.clone(),
                batch: s2_batch,
            },
            "sample" => imba::bench::Work::Sample {
                name: "default config".into(),
                config: default_model.clone(),
                batch: sample_batch,
                steps: 50,
            },
            other => {
                return Err(imba::Error::Config(format!(
                    "unknown work '{other}'; use loss, loss-compiled, step, step-s2 or sample"
                )))
            }
        });
    }
    // The work list is checked before PyTorch is looked for (or installed).
    let python = match python {
        Some(p) => p,
        None => torch_venv()?,
    };
    let opts = imba::bench::SideOptions {
        python,
        device,
        threads: threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32)),
        tf32,
        warmup,
        rounds,
    };
    let report = imba::bench::side_by_side(gpu, &opts, &list)?;
    println!("{}", report.markdown());
    Ok(())
}

/// target/torch-venv/bin/python, made and given torch (from the package registry) on first
/// use.
fn torch_venv() -> imba::Result<std::path::PathBuf> {
    let venv = std::path::Path::new("target/torch-venv");
    let python = venv.join("bin/python");
    let has_torch = |p: &std::path::Path| {
        std::process::Command::new(p)
            .args(["-c", "import torch"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has_torch(&python) {
        return Ok(python);
    }
    eprintln!(
        "installing PyTorch into {} (first use; a large download)",
        venv.display()
    );
    let steps: [(&str, Vec<&str>); 2] = [
        ("python3", vec!["-m", "venv", "target/torch-venv"]),
        (
            "target/torch-venv/bin/pip",
            vec!["install", "--quiet", "torch", "numpy"],
        ),
    ];
    for (program, args) in steps {
        let status = std::process::Command::new(program)
            .args(&args)
            .status()
            .map_err(|e| imba::Error::io(std::path::Path::new(program), "run", e))?;
        if !status.success() {
            return Err(imba::Error::Config(format!(
                "`{program} {}` failed; install torch yourself and pass --python",
                args.join(" ")
            )));
        }
    }
    Ok(python)
}
