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
}

/// Runs one benchmark and prints its Markdown table.
pub fn run(gpu: &Gpu, command: BenchCommand) -> imba::Result<()> {
    match command {
        BenchCommand::Train {
            config,
            objectives,
            reps,
            warmup,
            opts,
        } => {
            let opts = with_file(*opts, config.as_deref())?;
            let (header, rows) =
                imba::bench::train::train_steps(gpu, &opts, &objectives, warmup, reps)?;
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
