//! The fused IMBA loss on a synthetic batch in which a square "rare object" in the middle of
//! every image is predicted badly by the unconditional pass (as an under-trained concept
//! would be) and the rest well: the weight D should single those tokens out. The GPU result
//! is checked against the f64 CPU reference.
//!
//! Run: `cargo run --release --example demo [-- --batch 8 --channels 4 --size 16 --patch 2
//! --gamma 0.8 --lambda 0.9 --seed 0]`

use imba::gpu::{Gpu, GpuTimer};
use imba::kernels::{
    ImageGeometry, ImbaLossArgs, ImbaParams, LossKernels, Target, TargetKind, TokenShape,
};
use imba::model::tokens;
use imba::reference::loss as reference;

/// The batch and loss settings.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub geometry: ImageGeometry,
    pub params: ImbaParams,
    pub seed: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            geometry: ImageGeometry {
                batch: 8,
                channels: 4,
                height: 16,
                width: 16,
                patch: 2,
            },
            params: ImbaParams::default(),
            seed: 0,
        }
    }
}

/// What the demonstration measured.
pub struct Report {
    pub shape: TokenShape,
    /// [L, L_c, L_u, mean D] from the GPU and from the reference.
    pub gpu: [f32; 4],
    pub reference: [f64; 4],
    /// Largest relative error of D and of ∂L/∂ε_c against the reference.
    pub max_rel_d: f64,
    pub max_rel_grad: f64,
    /// Mean D over the badly predicted centre tokens and over the others.
    pub rare_d: f64,
    pub common_d: f64,
    /// GPU time of the launch, where the adapter has timestamps (includes pipeline warm-up).
    pub gpu_ms: Option<f64>,
}

/// Whether token n of a w×w token grid lies in the centre square.
fn rare(n: u32, w: u32) -> bool {
    let (r, c) = (n / w, n % w);
    let lo = w / 4;
    (lo..w - lo).contains(&r) && (lo..w - lo).contains(&c)
}

/// Predictions: the conditional pass 0.3 off everywhere, the unconditional pass 0.9 off on
/// the centre tokens and 0.15 elsewhere (a fixed ± pattern).
fn predictions(target: &[f32], s: TokenShape, grid_w: u32) -> (Vec<f32>, Vec<f32>) {
    let k = s.token_dim as usize;
    let mut pred_c = vec![0.0f32; target.len()];
    let mut pred_u = vec![0.0f32; target.len()];
    for (i, &t) in target.iter().enumerate() {
        let n = ((i / k) as u32) % s.tokens;
        let sign = if (i * 2654435761) % 7 < 3 { -1.0 } else { 1.0 };
        let scale_u = if rare(n, grid_w) { 0.9 } else { 0.15 };
        pred_u[i] = t + sign * scale_u;
        pred_c[i] = t + 0.3 * sign;
    }
    (pred_c, pred_u)
}

/// Runs the fused loss once on `gpu` and compares it with the reference.
pub fn run(gpu: &Gpu, o: &Options) -> imba::Result<Report> {
    let g = o.geometry;
    g.validate()?;
    o.params.validate()?;
    let s = g.token_shape();
    let grid_w = g.width / g.patch;
    let target = tokens::output_tokens(&imba::rng::noise(o.seed, 0, g.elements() as usize), &g);
    let (pred_c, pred_u) = predictions(&target, s, grid_w);
    let dev = &gpu.device;
    let kernels = LossKernels::new(dev)?;
    let ws = kernels.workspace(dev, s)?;
    let pc = gpu.upload("pred_cond", &pred_c);
    let pu = gpu.upload("pred_uncond", &pred_u);
    let weights = gpu.poisoned("weights", s.rows() as usize);
    let gc = gpu.poisoned("grad_cond", s.elements() as usize);
    let gu = gpu.poisoned("grad_uncond", s.elements() as usize);
    let scalars = gpu.poisoned("scalars", 4);
    let args = ImbaLossArgs {
        shape: s,
        pred_cond: (&pc).into(),
        pred_uncond: (&pu).into(),
        target: Target::Philox {
            step_values: None,
            first_sample: 0,
            seed: o.seed,
            step: 0,
            geometry: g,
            kind: TargetKind::Epsilon,
            x0: None,
        },
        weights: (&weights).into(),
        grad_cond: (&gc).into(),
        grad_uncond: (&gu).into(),
        scalars: (&scalars).into(),
        workspace: &ws,
    };
    let timer = GpuTimer::new(gpu);
    let mut enc = gpu.encoder();
    if let Some(t) = &timer {
        t.start(&mut enc);
    }
    kernels.record_imba(dev, &mut enc, &args, &o.params)?;
    if let Some(t) = &timer {
        t.stop(&mut enc);
    }
    gpu.submit_and_wait(enc)?;
    let gpu_ms = match &timer {
        Some(t) => Some(t.elapsed_ns(gpu)? / 1e6),
        None => None,
    };
    let got: Vec<f32> = gpu.read(&scalars, 4)?;
    let d: Vec<f32> = gpu.read(&weights, s.rows() as usize)?;
    let gcv: Vec<f32> = gpu.read(&gc, s.elements() as usize)?;
    let want = reference::imba(
        s,
        &reference::widen(&pred_c),
        &reference::widen(&pred_u),
        &reference::widen(&target),
        &o.params,
    );
    let rel = |g: f32, w: f64, floor: f64| (g as f64 - w).abs() / (w.abs() + floor);
    let max_rel = |got: &[f32], want: &[f64], floor: f64| {
        got.iter()
            .zip(want)
            .map(|(&g, &w)| rel(g, w, floor))
            .fold(0.0, f64::max)
    };
    let mean_where = |keep: bool| {
        let v: Vec<f64> = d
            .iter()
            .enumerate()
            .filter(|(t, _)| rare((*t as u32) % s.tokens, grid_w) == keep)
            .map(|(_, &x)| x as f64)
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    Ok(Report {
        shape: s,
        gpu: [got[0], got[1], got[2], got[3]],
        reference: [want.loss, want.loss_cond, want.loss_uncond, want.mean_d],
        max_rel_d: max_rel(&d, &want.weights, 1e-30),
        max_rel_grad: max_rel(&gcv, &want.grad_cond, 1e-12),
        rare_d: mean_where(true),
        common_d: mean_where(false),
        gpu_ms,
    })
}

impl Report {
    /// Whether the GPU agrees with the reference (D and the gradient elementwise, the loss).
    pub fn agrees(&self) -> bool {
        let loss_rel = (self.gpu[0] as f64 - self.reference[0]).abs() / self.reference[0].abs();
        self.max_rel_d <= 1e-4 && self.max_rel_grad <= 1e-3 && loss_rel <= 1e-5
    }
}

/// `--name value` pairs into options; unknown names and bad values are refused by name.
fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    for pair in args.chunks(2) {
        let [name, value] = pair else {
            return Err(format!("{} needs a value", pair[0]));
        };
        let bad = |e: &dyn std::fmt::Display| format!("{name} {value}: {e}");
        let int = || value.parse::<u32>().map_err(|e| bad(&e));
        let real = || value.parse::<f32>().map_err(|e| bad(&e));
        match name.as_str() {
            "--batch" => o.geometry.batch = int()?,
            "--channels" => o.geometry.channels = int()?,
            "--size" => (o.geometry.height, o.geometry.width) = (int()?, int()?),
            "--patch" => o.geometry.patch = int()?,
            "--gamma" => o.params.gamma = real()?,
            "--lambda" => o.params.lambda = real()?,
            "--seed" => o.seed = int()?,
            _ => {
                return Err(format!(
                    "unknown option {name}; see the comment at the top of examples/demo.rs"
                ))
            }
        }
    }
    Ok(o)
}

fn print(gpu: &Gpu, o: &Options, r: &Report) {
    let g = o.geometry;
    let s = r.shape;
    println!("adapter: {} ({:?})", gpu.info.name, gpu.info.backend);
    println!(
        "batch (B, C, H, W) = ({}, {}, {}, {}), patch {} → tokens (B, N, K) = ({}, {}, {})",
        g.batch, g.channels, g.height, g.width, g.patch, s.batch, s.tokens, s.token_dim
    );
    println!(
        "IMBA γ = {}, λ = {}; target ε regenerated from Philox (seed {}, step 0)\n",
        o.params.gamma, o.params.lambda, o.seed
    );
    println!("              GPU (fused)      CPU reference (f64)");
    for (i, name) in ["L", "L_c", "L_u", "mean D"].iter().enumerate() {
        println!("  {name:<8}  {:<15.8}  {:.8}", r.gpu[i], r.reference[i]);
    }
    println!(
        "  max relative error: D {:.1e}, ∂L/∂ε_c {:.1e}\n",
        r.max_rel_d, r.max_rel_grad
    );
    println!("D on the badly predicted centre tokens: {:.4}", r.rare_d);
    println!("D on the well predicted tokens:         {:.4}", r.common_d);
    match r.gpu_ms {
        Some(ms) => println!("{ms:.3} ms GPU time (first run, includes pipeline warm-up)"),
        None => println!("no timestamp support on this adapter"),
    }
}

#[allow(dead_code)] // the tests include this file as a module and call `run`
fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = parse(&args).map_err(|e| e.to_string()).and_then(|o| {
        let gpu = Gpu::new().map_err(|e| e.to_string())?;
        let r = run(&gpu, &o).map_err(|e| e.to_string())?;
        print(&gpu, &o, &r);
        if r.agrees() {
            Ok(())
        } else {
            Err("the GPU result disagrees with the CPU reference".into())
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
