//! `imba seedselect`: the initial noise of a rare label's samples optimised through a
//! deterministic sampler.

use clap::Args;
use imba::gpu::Gpu;
use imba::remedies::seedselect::{self, Options};

#[derive(Args)]
pub struct SeedSelectArgs {
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

impl From<&SeedSelectArgs> for Options {
    fn from(a: &SeedSelectArgs) -> Self {
        Options {
            samples: a.samples,
            steps: a.steps,
            iters: a.iters,
            lr: a.lr,
            guidance: a.guidance,
            seed: a.seed,
            batch: a.batch,
            ..Default::default()
        }
    }
}

pub fn run(gpu: &Gpu, a: SeedSelectArgs) -> imba::Result<()> {
    let o = Options::from(&a);
    let out = a.out.unwrap_or_else(|| {
        a.run.join(format!(
            "seedselect-{}",
            a.label.replace(['+', ':', '/'], "_")
        ))
    });
    let req = seedselect::Request {
        label: &a.label,
        refs: a.refs,
        ema: !a.no_ema,
        weights: (a.sem_weight, a.app_weight),
    };
    let r = seedselect::run(gpu, &a.run, &req, &o, &out)?;
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
    println!(
        "near-copy check (mean distance to the nearest reference): plain {:.3}, seedselect \
         {:.3}; references to each other {:.3}",
        r.plain_nearest_reference, r.selected_nearest_reference, r.reference_spacing
    );
    println!("wrote {}", out.display());
    Ok(())
}
