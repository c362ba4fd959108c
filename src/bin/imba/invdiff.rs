//! `imba invdiff`: loss-inferred groups and a δ-model trained beside a frozen run.

use crate::options::EvalSampling;
use clap::Args;
use imba::gpu::Gpu;
use imba::remedies::invdiff;

#[derive(Args)]
pub struct InvDiffArgs {
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
    /// Peak δ learning rate [default: 1e-4, the official code's].
    #[arg(long)]
    lr: Option<f32>,
    /// Linear warm-up steps of the δ learning rate [default: a tenth of --steps].
    #[arg(long)]
    warmup: Option<u32>,
    /// Keep the δ learning rate constant after the warm-up instead of the cosine decay.
    #[arg(long)]
    constant_lr: bool,
    /// Output folder [default: <base>/invdiff].
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    #[command(flatten)]
    sampling: EvalSampling,
}

pub fn run(gpu: &Gpu, a: InvDiffArgs) -> imba::Result<()> {
    let saved = imba::train::RunDir::new(&a.base).load()?;
    let mut o = invdiff::Options::for_base(&saved.config);
    o.steps = a.steps;
    o.warmup = a.warmup.unwrap_or(a.steps / 10);
    o.cosine = !a.constant_lr;
    o.groups = a.groups;
    o.r = a.r;
    o.draws = a.draws;
    o.var_weight = a.var_weight;
    if let Some(depth) = a.delta_depth {
        o.delta_init = invdiff::DeltaInit::Scratch { depth };
    }
    if let Some(lr) = a.lr {
        o.lr = lr;
    }
    let out = a.out.unwrap_or_else(|| a.base.join("invdiff"));
    let r = invdiff::run(gpu, &a.base, &o, &(&a.sampling).into(), &out)?;
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
