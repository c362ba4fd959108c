//! `imba info`: the adapter, its limits, and the memory a model needs.

use clap::Args;
use imba::gpu::Gpu;

#[derive(Args)]
pub struct InfoArgs {
    /// List every adapter wgpu sees (every backend, or --backend's) with its driver, the
    /// limits that matter to imba and the kernel paths it would run, instead of describing
    /// the chosen one.
    #[arg(long, conflicts_with = "model")]
    pub adapters: bool,
    /// A DiT preset (S, B, L or XL with patch 2, 4 or 8, e.g. S/2) to report memory for.
    #[arg(long)]
    model: Option<String>,
    /// Batch size B for the memory report.
    #[arg(long, default_value_t = 128)]
    batch: u32,
    /// Image (or latent) height and width in pixels.
    #[arg(long, default_value_t = 32)]
    image_size: u32,
    /// Image (or latent) channels.
    #[arg(long, default_value_t = 4)]
    channels: u32,
    /// Number of labels (the label table has one more row, ∅).
    #[arg(long, default_value_t = 1000)]
    labels: u32,
    /// One forward of B rows (the baseline) instead of IMBA's dual forward of 2B rows.
    #[arg(long)]
    single: bool,
    /// With --model: print the roofline of one IMBA training step (FLOPs, fewest bytes
    /// moved, arithmetic intensity and time bound per kernel family) for the peaks below.
    #[arg(long, requires = "model")]
    roofline: bool,
    /// Peak FP32 rate for --roofline, TFLOP/s (default: H100/H200 without tensor cores).
    #[arg(long, default_value_t = 67.0, requires = "roofline")]
    peak_tflops: f64,
    /// Peak device-memory bandwidth for --roofline, TB/s (default: H100/H200 SXM).
    #[arg(long, default_value_t = 3.35, requires = "roofline")]
    peak_tbs: f64,
}

/// Prints the adapter, its features and limits, the kernel families, and with --model the
/// memory a DiT and batch need.
pub fn run(gpu: &Gpu, a: InfoArgs) -> imba::Result<()> {
    print!("{}", gpu.describe());
    let paths = gpu.paths;
    let env = std::env::var(imba::kernels::PATHS_ENV).ok();
    let why = if env.and_then(|v| v.parse().ok()) == Some(paths) {
        format!("forced by {}", imba::kernels::PATHS_ENV)
    } else if paths != imba::kernels::Paths::for_adapter(&gpu.info) {
        "forced by --paths".to_string()
    } else {
        format!("chosen for a {:?} adapter", gpu.info.device_type)
    };
    println!("kernel paths     {paths:?} ({why})");
    println!(
        "kernel families  {}",
        imba::shaders::FAMILIES
            .iter()
            .map(|f| f.0)
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(name) = &a.model {
        if a.batch == 0 {
            return Err(imba::Error::Config(
                "--batch must be at least 1 for the memory report and the roofline".into(),
            ));
        }
        imba::bounds::at_most("batch", a.batch, imba::bounds::MAX_BATCH)?;
        let cfg = imba::model::DitConfig::preset(name, a.image_size, a.channels, a.labels)?;
        if a.roofline {
            if !(a.peak_tflops > 0.0 && a.peak_tbs > 0.0) {
                return Err(imba::Error::Config(format!(
                    "--peak-tflops {} and --peak-tbs {} must both be positive",
                    a.peak_tflops, a.peak_tbs
                )));
            }
            let peaks = imba::model::Peaks {
                flops: a.peak_tflops * 1e12,
                bytes: a.peak_tbs * 1e12,
            };
            println!("\n{}", imba::model::Roofline::new(&cfg, a.batch, peaks));
        }
        let r = imba::model::MemoryReport::new(&cfg, a.batch, if a.single { 1 } else { 2 });
        println!("\n{r}");
        let max = gpu.device.limits().max_storage_buffer_binding_size;
        if r.largest.1 > max {
            println!(
                "does not fit:     `{}` exceeds this adapter's {max}-byte storage binding; \
                 use a smaller batch",
                r.largest.0
            );
        }
    }
    Ok(())
}

/// `imba info --adapters`: every adapter, its limits and the kernel paths it would run.
pub fn list_adapters(options: &imba::gpu::GpuOptions) -> imba::Result<()> {
    let (instance, adapters) = imba::gpu::adapters(options.backends);
    if adapters.is_empty() {
        println!(
            "no adapter found; install a GPU driver or Mesa's lavapipe \
             (Debian/Ubuntu: apt-get install mesa-vulkan-drivers)"
        );
        return Ok(());
    }
    for (i, adapter) in adapters.into_iter().enumerate() {
        let info = adapter.get_info();
        println!(
            "[{i}] {} ({:?}, {:?})",
            info.name, info.backend, info.device_type
        );
        println!("    driver       {} {}", info.driver, info.driver_info);
        match Gpu::from_adapter_with(instance.clone(), adapter, options.limits) {
            Ok(gpu) => print_adapter(&gpu)?,
            Err(e) => println!("    cannot open a device: {e}"),
        }
    }
    Ok(())
}

/// The limits and features imba reads, and the paths its kernels choose on `gpu`.
fn print_adapter(gpu: &Gpu) -> imba::Result<()> {
    let l = gpu.device.limits();
    let f = gpu.device.features();
    let i = &gpu.info;
    let subgroups = if f.contains(wgpu::Features::SUBGROUP) {
        format!(
            "yes, {}..{} lanes",
            i.subgroup_min_size, i.subgroup_max_size
        )
    } else {
        "no".into()
    };
    println!("    subgroups    {subgroups}");
    println!(
        "    limits       {} storage buffers/stage, {} MiB per binding, {} KiB workgroup memory, \
         {} invocations/workgroup",
        l.max_storage_buffers_per_shader_stage,
        l.max_storage_buffer_binding_size >> 20,
        l.max_compute_workgroup_storage_size / 1024,
        l.max_compute_invocations_per_workgroup
    );
    let dev = &gpu.device;
    let paths = gpu.paths;
    let matmul = imba::kernels::MatmulKernels::with_paths(dev, paths)?.path(dev, 256, 128, 128);
    let shape = imba::kernels::AttentionShape {
        samples: 16,
        tokens: 16,
        heads: 4,
        head_dim: 32,
    };
    let attention = imba::kernels::AttentionKernels::with_paths(dev, paths)?.path(dev, shape);
    println!("    paths        {paths:?}: matmul {matmul:?}, attention {attention:?}");
    Ok(())
}
