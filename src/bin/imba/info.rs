//! `imba info`: the adapter, its limits, and the memory a model needs.

use clap::Args;
use imba::gpu::Gpu;

#[derive(Args)]
pub struct InfoArgs {
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
}

/// Prints the adapter, its features and limits, the kernel families, and with --model the
/// memory a DiT and batch need.
pub fn run(gpu: &Gpu, a: InfoArgs) -> imba::Result<()> {
    print!("{}", gpu.describe());
    println!(
        "kernel families  {}",
        imba::shaders::FAMILIES
            .iter()
            .map(|f| f.0)
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(name) = &a.model {
        let cfg = imba::model::DitConfig::preset(name, a.image_size, a.channels, a.labels)?;
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
