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
    // Timed twice: the first call also compiles the model's pipelines.
    let mut sample_ms = Vec::new();
    let mut grid = None;
    for _ in 0..2 {
        let start = Instant::now();
        grid = Some(pollster::block_on(checkpoint.sample(&gpu, options))?);
        sample_ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
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
        "ms": { "sample": sample_ms[0], "sample_again": sample_ms[1], "train": train_ms },
    });
    println!("{out}");
    Ok(())
}
