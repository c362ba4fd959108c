//! `imba bench torch`: imba and PyTorch doing the same work on the same machine, run by run
//! in alternation (one imba run, one PyTorch run, repeated), so that load from elsewhere
//! slows both alike. PyTorch runs in a child process (`scripts/torch_side_by_side.py`,
//! embedded in the binary) that builds each workload on request and times one run per
//! request; imba times its own runs in this process. Reported: the median of each and the
//! median of the per-round ratios with their range.

use super::dit::StepBench;
use crate::diffusion::{Generator, Process, SampleSpec, Sampler};
use crate::gpu::Gpu;
use crate::kernels::{ImbaLossArgs, ImbaParams, LossKernels, Target, TargetKind, TokenShape};
use crate::model::{DitConfig, ParamLayout};
use crate::{Error, Result};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

const SCRIPT: &str = include_str!("../../scripts/torch_side_by_side.py");
const MODEL: &str = include_str!("../../scripts/torch_dit.py");

/// One piece of work timed on both sides.
#[derive(Clone, Debug)]
pub enum Work {
    /// The fused IMBA loss on (B, N, K) tokens, ε drawn inside (imba: Philox in the kernel;
    /// PyTorch: torch.randn), with both predictions' gradients. `compiled` times PyTorch's
    /// torch.compile'd function instead of eager mode.
    Loss { shape: TokenShape, compiled: bool },
    /// One IMBA training step of `config` at `batch` images.
    Step {
        name: String,
        config: DitConfig,
        batch: u32,
    },
    /// DDIM (η = 0) over `steps` steps with guidance 4, `batch` images.
    Sample {
        name: String,
        config: DitConfig,
        batch: u32,
        steps: u32,
    },
}

impl Work {
    fn describe(&self) -> String {
        match self {
            Work::Loss { shape, compiled } => format!(
                "fused IMBA loss ({}, {}, {}), PyTorch {}",
                shape.batch,
                shape.tokens,
                shape.token_dim,
                if *compiled { "torch.compile" } else { "eager" }
            ),
            Work::Step { name, batch, .. } => format!("IMBA training step, {name}, batch {batch}"),
            Work::Sample {
                name, batch, steps, ..
            } => format!("DDIM-{steps} sampling with guidance, {name}, {batch} images"),
        }
    }

    fn request(&self) -> Value {
        match self {
            Work::Loss { shape, compiled } => json!({
                "op": "loss",
                "shape": [shape.batch, shape.tokens, shape.token_dim],
                "compile": compiled,
            }),
            Work::Step { config, batch, .. } => {
                json!({"op": "step", "config": config, "batch": batch})
            }
            Work::Sample {
                config,
                batch,
                steps,
                ..
            } => json!({
                "op": "sample", "config": config, "batch": batch, "steps": steps, "guidance": 4.0,
            }),
        }
    }
}

/// One row of the table: medians over the rounds, and the per-round ratios imba / PyTorch.
pub struct SideRow {
    pub work: String,
    pub imba_ms: f64,
    pub torch_ms: f64,
    /// Median, lowest and highest per-round ratio.
    pub ratio: (f64, f64, f64),
}

/// What the PyTorch side runs on, for the table's header.
pub struct SideReport {
    pub imba: String,
    pub torch: String,
    pub rounds: usize,
    pub rows: Vec<SideRow>,
    /// Work PyTorch could not run, with its error (e.g. torch.compile without a compiler).
    pub failed: Vec<(String, String)>,
}

impl SideReport {
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "imba: {}\nPyTorch: {}\n{} alternating rounds per row (medians; ratio = imba ms / \
             PyTorch ms per round: median [lowest, highest])\n\n\
             | work | imba ms | PyTorch ms | imba / PyTorch |\n|---|---:|---:|---:|\n",
            self.imba, self.torch, self.rounds
        );
        for r in &self.rows {
            s += &format!(
                "| {} | {:.2} | {:.2} | {:.2} [{:.2}, {:.2}] |\n",
                r.work, r.imba_ms, r.torch_ms, r.ratio.0, r.ratio.1, r.ratio.2
            );
        }
        for (w, e) in &self.failed {
            s += &format!("\nnot run by PyTorch: {w}: {e}");
        }
        s
    }
}

/// The PyTorch child process.
struct Torch {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Torch {
    /// Starts the script with `python` in a fresh folder under the system's temp dir.
    fn start(python: &Path, device: &str, threads: u32, tf32: bool) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("imba-torch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "create", e))?;
        for (name, text) in [("torch_side_by_side.py", SCRIPT), ("torch_dit.py", MODEL)] {
            crate::files::write_file(&dir.join(name), text.as_bytes())?;
        }
        let mut cmd = Command::new(python);
        cmd.arg(dir.join("torch_side_by_side.py")).args([
            "--device",
            device,
            "--threads",
            &threads.to_string(),
        ]);
        if tf32 {
            cmd.arg("--tf32");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io(python, "run the PyTorch interpreter", e))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        Ok(Self {
            child,
            stdin,
            stdout,
        })
    }

    fn ask(&mut self, request: &Value) -> Result<Value> {
        let lost = |e: std::io::Error| {
            Error::Config(format!(
                "the PyTorch process stopped answering ({e}); see its output above"
            ))
        };
        writeln!(self.stdin, "{request}").map_err(lost)?;
        let mut line = String::new();
        self.stdout.read_line(&mut line).map_err(lost)?;
        if line.is_empty() {
            return Err(Error::Config(
                "the PyTorch process exited; see its output above (is torch installed?)".into(),
            ));
        }
        serde_json::from_str(&line)
            .map_err(|e| Error::Config(format!("bad answer from PyTorch ({e}): {line}")))
    }
}

impl Drop for Torch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How to run the comparison.
pub struct SideOptions {
    pub python: PathBuf,
    /// torch device: "cpu" or "cuda".
    pub device: String,
    /// PyTorch CPU threads (0: its default).
    pub threads: u32,
    pub tf32: bool,
    pub warmup: usize,
    pub rounds: usize,
}

/// Runs every piece of `work` on both sides, alternating.
pub fn side_by_side(gpu: &Gpu, opts: &SideOptions, work: &[Work]) -> Result<SideReport> {
    let mut torch = Torch::start(&opts.python, &opts.device, opts.threads, opts.tf32)?;
    let info = torch.ask(&json!({"op": "info"}))?;
    let mut report = SideReport {
        imba: gpu
            .describe()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
        torch: format!(
            "{} on {}, {} threads, TF32 {}",
            info["torch"].as_str().unwrap_or("?"),
            info["device"].as_str().unwrap_or("?"),
            info["threads"],
            if info["tf32"].as_bool() == Some(true) {
                "on"
            } else {
                "off"
            }
        ),
        rounds: opts.rounds.max(1),
        rows: Vec::new(),
        failed: Vec::new(),
    };
    for w in work {
        let answer = torch.ask(&w.request())?;
        if let Some(e) = answer["error"].as_str() {
            report.failed.push((w.describe(), e.to_string()));
            continue;
        }
        report.rows.push(imba_side(gpu, &mut torch, w, opts)?);
    }
    Ok(report)
}

/// Builds imba's side of `w` and alternates its runs with PyTorch's.
fn imba_side(gpu: &Gpu, torch: &mut Torch, w: &Work, opts: &SideOptions) -> Result<SideRow> {
    match w {
        Work::Loss { shape, .. } => {
            let mut run = LossRun::new(gpu, *shape)?;
            alternate(torch, &mut || run.run_ms(), w, opts)
        }
        Work::Step { config, batch, .. } => {
            let mut bench = StepBench::new(gpu, config, *batch)?;
            alternate(torch, &mut || bench.step_ms(), w, opts)
        }
        Work::Sample {
            config,
            batch,
            steps,
            ..
        } => {
            let params = ParamLayout::new(config).init_all_nonzero(3);
            let spec = sample_spec(config, &params, *batch, *steps);
            // The models are made before the clock starts: both sides time the chain only.
            let generator = Generator::new(gpu, &spec)?;
            let labels: Vec<u32> = (0..*batch).map(|i| i % config.num_labels.max(1)).collect();
            let mut run = || -> Result<f64> {
                let start = Instant::now();
                generator.generate(gpu, &labels)?;
                Ok(start.elapsed().as_secs_f64() * 1e3)
            };
            alternate(torch, &mut run, w, opts)
        }
    }
}

fn alternate(
    torch: &mut Torch,
    imba: &mut dyn FnMut() -> Result<f64>,
    w: &Work,
    opts: &SideOptions,
) -> Result<SideRow> {
    let (mut mine, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..opts.warmup + opts.rounds.max(1) {
        let a = imba()?;
        let b = torch.ask(&json!({"op": "run"}))?["ms"]
            .as_f64()
            .ok_or_else(|| Error::Config("PyTorch answered a run without a time".into()))?;
        if round >= opts.warmup {
            mine.push(a);
            theirs.push(b);
        }
    }
    let mut ratios: Vec<f64> = mine.iter().zip(&theirs).map(|(a, b)| a / b).collect();
    ratios.sort_by(f64::total_cmp);
    Ok(SideRow {
        work: w.describe(),
        imba_ms: median(mine),
        torch_ms: median(theirs),
        ratio: (
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1],
        ),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The fused loss on fixed predictions, ε from Philox keyed by a step that advances per run.
struct LossRun<'g> {
    gpu: &'g Gpu,
    shape: TokenShape,
    kernels: LossKernels,
    /// pred_c, pred_u, weights, grad_c, grad_u, scalars.
    bufs: [wgpu::Buffer; 6],
    workspace: crate::kernels::LossWorkspace,
    step: u32,
}

impl<'g> LossRun<'g> {
    fn new(gpu: &'g Gpu, shape: TokenShape) -> Result<Self> {
        shape.validate()?;
        let dev = &gpu.device;
        let nk = shape.elements() as usize;
        let fill = |salt: usize| -> Vec<f32> {
            (0..nk)
                .map(|i| (((i ^ salt) * 2_654_435_761) % 2001) as f32 / 1000.0 - 1.0)
                .collect()
        };
        let kernels = LossKernels::new(dev)?;
        let bytes = nk as u64 * 4;
        Ok(Self {
            workspace: kernels.workspace(dev, shape)?,
            bufs: [
                gpu.upload("pred_c", &fill(1)),
                gpu.upload("pred_u", &fill(2)),
                gpu.zeros("weights", shape.rows() * 4),
                gpu.zeros("grad_c", bytes),
                gpu.zeros("grad_u", bytes),
                gpu.zeros("scalars", 16),
            ],
            kernels,
            gpu,
            shape,
            step: 0,
        })
    }

    fn run_ms(&mut self) -> Result<f64> {
        self.step += 1;
        let s = self.shape;
        // The token shape as images of one channel, patch 1: ε is drawn per element.
        let geometry = crate::kernels::ImageGeometry {
            batch: s.batch,
            channels: s.token_dim,
            height: 1,
            width: s.tokens,
            patch: 1,
        };
        let [pc, pu, w, gc, gu, sc] = &self.bufs;
        let args = ImbaLossArgs {
            shape: s,
            pred_cond: pc.into(),
            pred_uncond: pu.into(),
            target: Target::Philox {
                step_values: None,
                first_sample: 0,
                seed: 1,
                step: self.step,
                geometry,
                kind: TargetKind::Epsilon,
                x0: None,
            },
            weights: w.into(),
            grad_cond: gc.into(),
            grad_uncond: gu.into(),
            scalars: sc.into(),
            workspace: &self.workspace,
        };
        let start = Instant::now();
        let mut enc = self.gpu.encoder();
        self.kernels
            .record_imba(&self.gpu.device, &mut enc, &args, &ImbaParams::default())?;
        self.gpu.submit_and_wait(enc)?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    }
}

/// DDIM (η = 0) with guidance 4 and the DDPM schedule.
fn sample_spec<'a>(
    config: &'a DitConfig,
    params: &'a [f32],
    batch: u32,
    steps: u32,
) -> SampleSpec<'a> {
    SampleSpec {
        model: config,
        params,
        process: Process::Ddpm,
        sampler: Sampler::Ddim { steps, eta: 0.0 },
        guidance: 4.0,
        seed: 7,
        batch,
        delta: None,
    }
}
