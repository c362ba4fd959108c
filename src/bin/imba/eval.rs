//! `imba eval`: a trained run scored by its data set's oracle.

use crate::options::EvalSampling;
use clap::Args;
use imba::gpu::Gpu;

#[derive(Args)]
pub struct EvalArgs {
    /// The run folder written by `imba train`.
    #[arg(long, default_value = "runs/shapes-imba")]
    run: std::path::PathBuf,
    #[command(flatten)]
    sampling: EvalSampling,
}

pub fn run(gpu: &Gpu, a: EvalArgs) -> imba::Result<()> {
    let e = imba::eval::evaluate_run(gpu, &a.run, &(&a.sampling).into())?.evaluation;
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
    let path = imba::train::RunDir::new(&a.run).eval();
    imba::error::write_json(&path, &e)?;
    println!("written: {}", path.display());
    Ok(())
}
