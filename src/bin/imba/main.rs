//! The `imba` command line: a thin shell over the library, one module per command (its
//! arguments and the call into the library).

mod bench;
mod compare;
mod eval;
mod import;
mod info;
mod invdiff;
mod options;
mod ranks;
mod sample;
mod seedselect;
mod train;

use clap::{Parser, Subcommand};
use imba::gpu::Gpu;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "imba",
    version,
    about = "IMBA concept-balancing diffusion training kernels in WGSL, on any GPU"
)]
struct Cli {
    /// Use the first adapter whose name contains this text (default: WGPU_ADAPTER_NAME, else
    /// the best hardware GPU, else the software Vulkan adapter). `imba info --adapters`
    /// lists them.
    #[arg(long, global = true)]
    adapter: Option<String>,
    /// Search only this API: vulkan, metal, dx12 or gl (default: WGPU_BACKEND, else all).
    #[arg(long, global = true, value_parser = parse_backend)]
    backend: Option<wgpu::Backends>,
    /// Device limits: `adapter` (all the adapter offers) or `webgpu` (WebGPU's defaults, what
    /// a browser grants; default: IMBA_LIMITS, else adapter).
    #[arg(long, global = true, value_parser = parse_limits)]
    limits: Option<imba::gpu::LimitsChoice>,
    /// Kernel paths: tiled (GPU kernels), texture (llvmpipe kernels) or portable, on any
    /// adapter (default: IMBA_PATHS, else chosen by the adapter's type).
    #[arg(long, global = true, value_parser = parse_paths)]
    paths: Option<imba::kernels::Paths>,
    /// Load imba checkpoints and models whose seal (checksum record) was removed, unverified
    /// (default: refused; IMBA_TRUST_UNSEALED=1 does the same).
    #[arg(long, global = true)]
    trust_unsealed: bool,
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
    Train(train::TrainArgs),
    /// Draw samples from a trained run: PNG grid, one PNG per sample, and the raw samples
    /// (safetensors).
    Sample(sample::SampleArgs),
    /// Evaluate a trained run on its data set's oracle (shapes detector, toy2d hit rate,
    /// digits classifier): scores per label and per frequency bucket, written to
    /// <run>/eval.json.
    Eval(eval::EvalArgs),
    /// Train and evaluate several objectives × seeds at equal compute on one data set; write
    /// compare.md (mean ± std over seeds), compare.json and PNG plots into --out
    /// [default: runs/compare-<dataset>]. Finished runs in that folder are reused.
    Compare(compare::CompareArgs),
    /// SeedSelect (training-free): optimise the initial noise of a trained run's samples of
    /// one label (or concept list) so that they match a few of its training images, through
    /// a deterministic DDIM chain; report the oracle's success against plain sampling from
    /// the same seeds, and the time per seed. Writes plain/, selected/ and report.json.
    Seedselect(seedselect::SeedSelectArgs),
    /// InvDiff (no bias labels): infer soft groups from a trained run's per-sample losses,
    /// train a small zero-initialised δ-DiT beside the frozen model with the mean + variance
    /// group loss, and evaluate r·ε_δ + (1 − r)·ε against the frozen model alone on the same
    /// seeds. Writes report.json, groups.safetensors, delta.safetensors, log.jsonl.
    Invdiff(invdiff::InvDiffArgs),
    /// Turn a reference DiT's state dict saved in PyTorch (safetensors, facebookresearch/DiT
    /// names; learn_sigma = true or false) into a model file that `imba sample --model`
    /// takes: its shape is read off the tensors, the heads, process and label names are
    /// given here. Needs no GPU.
    Import(import::ImportArgs),
    /// Print the adapter, backend, driver, and the features and limits the kernels use; with
    /// --model, also the memory a DiT and batch need for training.
    Info(info::InfoArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn parse_paths(s: &str) -> Result<imba::kernels::Paths, String> {
    s.parse().map_err(|e: imba::Error| e.to_string())
}

fn parse_backend(s: &str) -> Result<wgpu::Backends, String> {
    imba::gpu::parse_backend(s).map_err(|e| e.to_string())
}

fn parse_limits(s: &str) -> Result<imba::gpu::LimitsChoice, String> {
    s.parse().map_err(|e: imba::Error| e.to_string())
}

fn run(cli: Cli, job: &ranks::Job) -> imba::Result<()> {
    if cli.trust_unsealed {
        imba::model::checksum::trust_unsealed();
    }
    let mut options = imba::gpu::GpuOptions::from_env()?;
    if cli.adapter.is_some() {
        options.adapter = cli.adapter.clone();
    }
    options.backends = cli.backend.or(options.backends);
    options.limits = cli.limits.unwrap_or(options.limits);
    options.paths = cli.paths;
    if let Command::Info(a) = &cli.command {
        if a.adapters {
            return info::list_adapters(&options);
        }
    }
    if let Command::Import(a) = cli.command {
        return import::run(a);
    }
    let comm = job.comm();
    let gpu = match comm.size() {
        1 => Gpu::open(&options)?,
        _ => Gpu::for_local_rank(&options, comm.local_rank())?,
    };
    // Said only when the adapter was the default's choice, not one the user named.
    let named_backend = std::env::var_os("WGPU_BACKEND").is_some_and(|b| !b.is_empty());
    if options.backends.is_none() && options.adapter.is_none() && !named_backend {
        let advice = imba::gpu::slow_adapter_advice(gpu.info.backend, gpu.info.device_type);
        if let Some(a) = advice.filter(|_| comm.rank() == 0) {
            eprintln!("note: {a}");
        }
    }
    // One device in this process: its kernels compile with its pipeline cache.
    gpu.with_pipeline_cache(|| dispatch(&gpu, comm, cli.command))
}

fn dispatch(
    gpu: &Gpu,
    comm: &dyn imba::parallel::Collective,
    command: Command,
) -> imba::Result<()> {
    match command {
        Command::Info(a) => info::run(gpu, a),
        Command::Train(a) => train::run(gpu, comm, a),
        Command::Sample(a) => sample::run(gpu, a),
        Command::Seedselect(a) => seedselect::run(gpu, a),
        Command::Invdiff(a) => invdiff::run(gpu, a),
        Command::Eval(a) => eval::run(gpu, a),
        Command::Compare(a) => compare::run(gpu, a),
        Command::Bench(c) => bench::run(gpu, c),
        Command::Import(_) => unreachable!("imported before a device is opened"),
    }
}

/// Output into a closed pipe (`imba sample … | head`) ends the process quietly, as it ends
/// other Unix tools, instead of a panic on the failed write (Rust ignores SIGPIPE). Not under
/// an MPI launcher, whose ranks' connections may rely on the signal being ignored.
#[cfg(unix)]
fn end_quietly_on_closed_pipe() {
    if imba::parallel::launched_ranks().is_none() {
        // SAFETY: sets the default disposition of one signal at start-up, before any thread
        // that could be writing to a pipe exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
}

fn main() -> ExitCode {
    #[cfg(unix)]
    end_quietly_on_closed_pipe();
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // Silences the Vulkan loader's warning on headless machines.
        std::env::set_var("XDG_RUNTIME_DIR", "/tmp");
    }
    if let Err(e) = imba::train::stop::install() {
        eprintln!(
            "warning: cannot handle SIGINT/SIGTERM/SIGHUP ({e}); a signal ends the process at once"
        );
    }
    let args = match options::expand_dataset_paths(std::env::args_os()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    let job = match ranks::Job::start(matches!(cli.command, Command::Train(_))) {
        Ok(job) => job,
        Err(imba::Error::OtherRank { .. }) => return ExitCode::FAILURE,
        Err(e) => {
            ranks::say(&format!("error: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let result = run(cli, &job);
    job.finish(result)
}

#[cfg(test)]
mod tests {
    /// clap's own consistency checks (unique option names, valid defaults and relations),
    /// which it otherwise makes only when a debug build first parses.
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
