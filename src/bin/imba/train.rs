//! `imba train`: a new run, or the continuation of one.

use crate::options::with_file;
use clap::Args;
use imba::gpu::Gpu;
use imba::parallel::Collective;

#[derive(Args)]
pub struct TrainArgs {
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

pub fn run(gpu: &Gpu, comm: &dyn Collective, a: TrainArgs) -> imba::Result<()> {
    let opts = with_file(*a.opts, a.config.as_deref())?;
    let lead = comm.rank() == 0;
    if !a.quiet && (lead || comm.size() > 1) {
        let rank = format!("rank {} of {}: ", comm.rank(), comm.size());
        let rank = if comm.size() > 1 { rank.as_str() } else { "" };
        eprintln!("{rank}adapter: {}", gpu.info.name);
    }
    // Options that change nothing for this data set and objective are named and dropped, so
    // the run's config.toml records only what trained it.
    let mut opts = opts;
    if a.resume.is_none() {
        if let Ok(config) = opts.clone().resolve() {
            let unread = config.unread(&opts);
            for name in unread.iter().filter(|_| lead) {
                eprintln!(
                    "note: `{name}` does not apply to {} data with objective {}; it is ignored",
                    config.dataset.name(),
                    config.objective.name()
                );
            }
            opts = opts.without(&unread);
        }
    }
    let resume = a.resume.as_deref();
    let o = imba::train::run::train_parallel(gpu, comm, opts, resume, !a.quiet && lead)?;
    if !lead {
        return Ok(());
    }
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
    let mut written = o.written.clone();
    if let Some(s) = o.end_samples.as_ref() {
        if o.config.dataset != imba::train::DatasetKind::Folder {
            written.push(score_end_samples(&o.config, &o.out, s)?);
        }
    }
    println!("outputs in {}:", o.out.display());
    for f in &written {
        println!("  {}", f.display());
    }
    Ok(())
}

/// Reads the end-of-run samples with the data set's oracle, prints the head-to-tail reading
/// and writes it as `samples/score.json`.
fn score_end_samples(
    config: &imba::train::TrainConfig,
    out: &std::path::Path,
    s: &imba::train::run::EndSamples,
) -> imba::Result<std::path::PathBuf> {
    let e = imba::eval::score(config, &s.data, &s.labels, &s.images)?;
    let shown: Vec<String> = e
        .metrics
        .iter()
        .filter(|(name, _)| !name.ends_with("/slope"))
        .map(|(name, v)| format!("{name} {v:.2}"))
        .collect();
    eprintln!(
        "oracle on the {} end-of-run samples (guidance {}): {}",
        e.samples,
        config.guidance,
        shown.join(" · ")
    );
    eprintln!("  ({})", e.score);
    let path = imba::train::RunDir::new(out).samples().join("score.json");
    imba::files::write_json(&path, &e)?;
    Ok(path)
}
