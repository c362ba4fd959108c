//! `imba eval`: a trained run scored by its data set's oracle.

use crate::options::EvalSampling;
use clap::Args;
use imba::gpu::Gpu;

#[derive(Args)]
pub struct EvalArgs {
    /// The run folder written by `imba train`.
    #[arg(long, default_value = "runs/shapes-imba")]
    run: std::path::PathBuf,
    /// Score the snapshot kept at this step (a run trained with --snapshots) instead of the
    /// final model; the scores are printed, eval.json is left alone.
    #[arg(long)]
    step: Option<u32>,
    #[command(flatten)]
    sampling: EvalSampling,
}

pub fn run(gpu: &Gpu, a: EvalArgs) -> imba::Result<()> {
    let o = (&a.sampling).into();
    // eval.json goes into the run folder: no other process may be writing there.
    let _lock = match a.step {
        None => Some(imba::train::FolderLock::acquire(&a.run)?),
        Some(_) => None,
    };
    let e = match a.step {
        Some(step) => imba::eval::evaluate_snapshot(gpu, &a.run, step, &o)?.evaluation,
        None => imba::eval::evaluate_run(gpu, &a.run, &o)?.evaluation,
    };
    if let Some(t) = &e.trained {
        println!("scored: {}", t.describe());
    }
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
    if a.step.is_some() {
        return Ok(());
    }
    let path = imba::train::RunDir::new(&a.run).eval();
    imba::files::write_json(&path, &e)?;
    println!("written: {}", path.display());
    Ok(())
}
