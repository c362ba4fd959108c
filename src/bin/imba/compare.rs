//! `imba compare`: objectives × seeds at equal compute, trained, scored and tabulated.

use crate::options::{with_file, EvalSampling};
use clap::Args;
use imba::gpu::Gpu;

#[derive(Args)]
pub struct CompareArgs {
    /// Objectives, comma-separated: baseline, baseline-matched (one pass of 2B rows),
    /// dual-baseline, imba (token-wise D), imba-sample (sample-wise D), imba-tnorm (D over its
    /// timestep bucket's mean), imba-tnorm-sample, class-mean-d, inverse-frequency, shuffled-d,
    /// time-mean-d, mean-d (host weight rules), cbdm (frequency prior), cbdm-uniform, ccua, invdiff (on the
    /// baseline run of each seed; list baseline first).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "baseline,dual-baseline,imba,imba-sample"
    )]
    objectives: Vec<String>,
    /// Training seeds, comma-separated (the data set stays that of --data-seed, unless
    /// --data-per-seed).
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    seeds: Vec<u32>,
    /// Each seed draws its own data set (data seed = seed; with permuted frequencies, its own
    /// choice of rare labels); the objectives of a seed share it.
    #[arg(long)]
    data_per_seed: bool,
    /// Further guidance scales at which every final model is also scored, comma-separated
    /// (e.g. 1,2.6 beside --eval-guidance 1.5).
    #[arg(long, value_delimiter = ',')]
    guidance_sweep: Vec<f32>,
    /// The objective every other is compared with seed by seed [default: dual-baseline
    /// where compared, else the first]
    #[arg(long)]
    control: Option<String>,
    /// A TOML file of training options shared by every run (flags override it).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Report the finished runs only (train and score nothing; list the missing ones).
    #[arg(long)]
    report_only: bool,
    /// Only the final table, no per-run lines.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    sampling: EvalSampling,
    #[command(flatten)]
    opts: Box<imba::train::TrainOptions>,
}

pub fn run(gpu: &Gpu, a: CompareArgs) -> imba::Result<()> {
    let base = with_file(*a.opts, a.config.as_deref())?;
    let spec = imba::compare::CompareSpec {
        base,
        variants: a.objectives.clone(),
        seeds: a.seeds.clone(),
        eval: (&a.sampling).into(),
        sweep: a.guidance_sweep.clone(),
        control: a.control.clone(),
        report_only: a.report_only,
        data_per_seed: a.data_per_seed,
    };
    if !a.quiet {
        eprintln!("adapter: {}", gpu.info.name);
    }
    // Options that change no run are named, not silently kept (errors are left to the
    // comparison, which names them in full).
    let unread = imba::compare::unread(&spec).unwrap_or_default();
    if let (false, Ok(base)) = (unread.is_empty(), spec.base.clone().resolve()) {
        for name in &unread {
            eprintln!(
                "note: `{name}` changes none of the compared runs ({} on {} data); it is \
                 ignored",
                a.objectives.join(", "),
                base.dataset.name()
            );
        }
    }
    // Dropped, so that no run's config records them.
    let spec = imba::compare::CompareSpec {
        base: spec.base.clone().without(&unread),
        ..spec
    };
    let c = imba::compare::compare(gpu, &spec, !a.quiet)?;
    let shown: Vec<String> = a
        .objectives
        .iter()
        .filter(|v| c.runs.iter().any(|r| &r.variant == *v))
        .cloned()
        .collect();
    println!("{}", imba::compare::markdown(&c, &shown));
    Ok(())
}
