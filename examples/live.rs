//! The browser page's scenario run natively: samples a grid from a checkpoint and trains a
//! few steps of a configuration, as `web/test/spec.json` describes, and prints the results
//! as JSON. The browser test (web/serve.mjs) compares the page's results with these.
//!
//! cargo run --release --example live -- web/test/spec.json

use imba::gpu::Gpu;
use imba::train::live::{config_from_toml, Checkpoint, GridOptions, LiveRun};
use serde::Deserialize;
use std::path::Path;

#[derive(Deserialize)]
struct Spec {
    checkpoint: String,
    sample: SampleSpec,
    train: TrainSpec,
}

#[derive(Deserialize)]
struct SampleSpec {
    per_label: u32,
    seed: u32,
    guidance: f32,
    steps: u32,
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
    let s = &spec.sample;
    let options = GridOptions {
        per_label: s.per_label,
        seed: s.seed,
        guidance: s.guidance,
        steps: s.steps,
    };
    let checkpoint = Checkpoint::from_bytes(&spec.checkpoint, &bytes)?;
    let grid = pollster::block_on(checkpoint.sample(&gpu, options))?;
    let config = config_from_toml(&spec.train.config)?;
    let mut run = LiveRun::new(&gpu, config)?;
    let stats = pollster::block_on(run.steps(spec.train.steps))?;
    let out = serde_json::json!({
        "adapter": gpu.info.name,
        "sample": grid,
        "train": stats,
        "d_by_label": run.d_by_label(),
    });
    println!("{out}");
    Ok(())
}
