//! The browser page's scenario run natively: samples a grid from a checkpoint and trains a
//! few steps of a configuration, as `web/test/spec.json` describes, and prints the results
//! as JSON. The browser test (web/serve.mjs) compares the page's results with these.
//!
//! cargo run --release --example live -- web/test/spec.json

use imba::gpu::Gpu;
use imba::train::live::{config_from_toml, Checkpoint, GridOptions, LiveRun};
use serde::Deserialize;
use std::path::Path;
use std::time::Instant;

#[derive(Deserialize)]
struct Spec {
    checkpoint: String,
    sample: GridOptions,
    train: TrainSpec,
}

#[derive(Deserialize)]
struct TrainSpec {
    steps: u32,
    /// A TOML config as `imba train --config` reads it; empty: the defaults.
    config: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: live SPEC.json (see web/test/spec.json)")?;
    let spec: Spec = serde_json::from_slice(&std::fs::read(&path)?)?;
    let gpu = Gpu::new()?;
    let dir = Path::new(&path).parent().unwrap_or(Path::new("."));
    let bytes = std::fs::read(dir.join(&spec.checkpoint))?;
    let checkpoint = Checkpoint::from_bytes(&spec.checkpoint, &bytes)?;
    // Timed twice: the first call also compiles the model's pipelines.
    let timed = || -> imba::Result<_> {
        let start = Instant::now();
        let grid = pollster::block_on(checkpoint.sample(&gpu, spec.sample))?;
        Ok((grid, start.elapsed().as_secs_f64() * 1e3))
    };
    let (grid, sample_ms) = timed()?;
    let (_, sample_again_ms) = timed()?;
    let config = config_from_toml(&spec.train.config)?;
    let mut run = LiveRun::new(&gpu, config)?;
    let start = Instant::now();
    let stats = pollster::block_on(run.steps(spec.train.steps))?;
    let train_ms = start.elapsed().as_secs_f64() * 1e3;
    let out = serde_json::json!({
        "adapter": gpu.info.name,
        "sample": grid,
        "train": stats,
        "d_by_label": run.d_by_label(),
        "ms": { "sample": sample_ms, "sample_again": sample_again_ms, "train": train_ms },
    });
    println!("{out}");
    Ok(())
}
