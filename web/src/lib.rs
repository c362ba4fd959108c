//! imba in a browser tab: the JavaScript face of `imba::train::live`. The page (web/app.js)
//! opens the tab's WebGPU device, samples grids from a checkpoint written by `imba train`,
//! and trains the default model step by step. Natively this crate is empty: the same code
//! runs there through imba's library (`examples/live.rs`).
#![cfg(target_arch = "wasm32")]

use imba::gpu::{Gpu, GpuOptions, LimitsChoice};
use imba::train::live::{config_from_toml, Checkpoint, Grid, GridOptions, LiveRun};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Mutex;
use wasm_bindgen::prelude::*;

/// An error as the page shows it: imba's message, which names the problem and the fix.
fn js(e: imba::Error) -> JsError {
    JsError::new(&e.to_string())
}

/// What a page without an adapter is told: the fix is in the browser, not in a driver.
const NO_ADAPTER: &str = "the browser gave the page no WebGPU adapter: WebGPU is off or \
    blocked for this GPU. Use a recent Chrome, Edge or Safari, or Firefox with WebGPU; on Linux, \
    start Chrome with --enable-unsafe-webgpu --enable-features=Vulkan (chrome://gpu says why \
    WebGPU is off)";

/// The page's device, opened once and kept for the page's life (runs borrow it).
#[wasm_bindgen]
pub struct Device {
    gpu: &'static Gpu,
}

/// Opens the tab's WebGPU adapter. `webgpu_limits`: ask for WebGPU's default limits only
/// (what every browser grants) instead of all the adapter offers.
#[wasm_bindgen]
pub async fn open_device(webgpu_limits: bool) -> Result<Device, JsError> {
    let options = GpuOptions {
        backends: Some(imba::wgpu::Backends::BROWSER_WEBGPU),
        limits: if webgpu_limits {
            LimitsChoice::WebGpu
        } else {
            LimitsChoice::Adapter
        },
        ..Default::default()
    };
    let gpu = Gpu::open_async(&options).await.map_err(|e| match e {
        imba::Error::NoAdapter(_) => JsError::new(NO_ADAPTER),
        e => js(e),
    })?;
    gpu.device.on_uncaptured_error(std::sync::Arc::new(|e| {
        reported().push(e.to_string());
    }));
    Ok(Device {
        gpu: Box::leak(Box::new(gpu)),
    })
}

/// WebGPU errors the device reported outside an error scope (a page cannot wait on one):
/// checked after every awaited call, so no failure passes silently.
static REPORTED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The reported errors, also after a panic while they were held.
fn reported() -> std::sync::MutexGuard<'static, Vec<String>> {
    REPORTED.lock().unwrap_or_else(|e| e.into_inner())
}

/// The first WebGPU error reported since the last check, as an error.
fn device_errors() -> Result<(), JsError> {
    match reported().drain(..).next() {
        Some(e) => Err(JsError::new(&format!("WebGPU reported: {e}"))),
        None => Ok(()),
    }
}

/// A value as JSON for the page.
fn json<T: serde::Serialize>(v: &T) -> Result<JsValue, JsError> {
    let text = serde_json::to_string(v).map_err(|e| JsError::new(&e.to_string()))?;
    Ok(text.into())
}

#[wasm_bindgen]
impl Device {
    /// The adapter: name, backend, driver, features and the limits the kernels use.
    pub fn describe(&self) -> String {
        self.gpu.describe()
    }

    /// The adapter in one line: its name (browsers may keep it private), backend and type.
    pub fn adapter(&self) -> String {
        let i = &self.gpu.info;
        let name = if i.name.is_empty() {
            "an adapter the browser does not name"
        } else {
            &i.name
        };
        format!("{name} ({:?}, {:?})", i.backend, i.device_type)
    }
}

/// A grid as the page draws it (imba's `Grid`, read through getters).
#[wasm_bindgen]
pub struct Samples(Grid);

#[wasm_bindgen]
impl Samples {
    /// Images (n, C, H, W) in [−1, 1].
    #[wasm_bindgen(getter)]
    pub fn images(&self) -> Vec<f32> {
        self.0.images.clone()
    }
    /// Each sample's label row.
    #[wasm_bindgen(getter)]
    pub fn labels(&self) -> Vec<u32> {
        self.0.labels.clone()
    }
    /// Samples per row of the grid.
    #[wasm_bindgen(getter)]
    pub fn cols(&self) -> u32 {
        self.0.cols
    }
    #[wasm_bindgen(getter)]
    pub fn channels(&self) -> u32 {
        self.0.channels
    }
    #[wasm_bindgen(getter)]
    pub fn height(&self) -> u32 {
        self.0.height
    }
    #[wasm_bindgen(getter)]
    pub fn width(&self) -> u32 {
        self.0.width
    }
}

fn grid_options(per_label: u32, seed: u32, guidance: f32, steps: u32) -> GridOptions {
    GridOptions {
        per_label,
        seed,
        guidance,
        steps,
    }
}

/// A checkpoint loaded from the page (a file the visitor chose, or one it fetched).
#[wasm_bindgen]
pub struct Model {
    checkpoint: Rc<Checkpoint>,
}

#[wasm_bindgen]
impl Model {
    /// Reads `checkpoint.safetensors` or `model.safetensors` of an `imba train` run.
    #[wasm_bindgen(constructor)]
    pub fn new(name: &str, bytes: &[u8]) -> Result<Model, JsError> {
        let checkpoint = Checkpoint::from_bytes(name, bytes).map_err(js)?;
        Ok(Self {
            checkpoint: Rc::new(checkpoint),
        })
    }

    /// Label names, in label order.
    pub fn label_names(&self) -> Vec<String> {
        self.checkpoint.exported.label_names.clone()
    }

    /// What the weights are: process, training step and the run's steps, where the file says.
    pub fn describe(&self) -> String {
        let e = &self.checkpoint.exported;
        let process = match e.process {
            imba::diffusion::Process::Ddpm => "DDPM (ε-prediction)",
            imba::diffusion::Process::Flow => "rectified flow",
        };
        match (e.step, e.of_steps) {
            (Some(s), Some(n)) => format!("{process}, EMA weights of step {s} of {n}"),
            (Some(s), None) => format!("{process}, EMA weights of step {s}"),
            _ => format!("{process}, EMA weights"),
        }
    }

    /// The run's training config (TOML; empty for an exported model, which holds none).
    pub fn config(&self) -> String {
        let config = self.checkpoint.config.as_ref();
        config.map(|c| c.to_toml()).unwrap_or_default()
    }

    /// Samples every label `per_label` times from the EMA weights.
    pub fn sample(
        &self,
        device: &Device,
        per_label: u32,
        seed: u32,
        guidance: f32,
        steps: u32,
    ) -> js_sys::Promise {
        let (checkpoint, gpu) = (self.checkpoint.clone(), device.gpu);
        let o = grid_options(per_label, seed, guidance, steps);
        wasm_bindgen_futures::future_to_promise(async move {
            let grid = checkpoint.sample(gpu, o).await.map_err(js)?;
            device_errors()?;
            Ok(Samples(grid).into())
        })
    }
}

/// A training run in the tab.
#[wasm_bindgen]
pub struct Run {
    run: Rc<RefCell<Live>>,
}

/// The run for reading, unless a call that changes it is still awaiting the device.
fn read_run(run: &RefCell<Live>) -> Result<std::cell::Ref<'_, Live>, JsError> {
    run.try_borrow()
        .map_err(|_| JsError::new("the run is busy: await the previous call first"))
}

/// A run on the page's device, which lives as long as the page.
type Live = LiveRun<'static>;

/// The run, unless a call on it is still awaiting the device.
fn borrow_run<'a>(run: &'a RefCell<Live>) -> Result<std::cell::RefMut<'a, Live>, JsError> {
    run.try_borrow_mut()
        .map_err(|_| JsError::new("the run is busy: await the previous call first"))
}

#[wasm_bindgen]
impl Run {
    /// A run of `imba train`'s configuration: `config_toml` as its `--config` file takes
    /// (empty: the defaults, the built-in long-tailed shapes).
    #[wasm_bindgen(constructor)]
    pub fn new(device: &Device, config_toml: &str) -> Result<Run, JsError> {
        let config = config_from_toml(config_toml).map_err(js)?;
        let run = LiveRun::new(device.gpu, config).map_err(js)?;
        device_errors()?;
        Ok(Self {
            run: Rc::new(RefCell::new(run)),
        })
    }

    /// Runs up to `n` steps; resolves to their stats (JSON: an array of objects with step,
    /// loss, mean_d, lr, grad_norm, ms, …).
    // The borrow held across the awaits is the run's busy flag: every other call takes the
    // run with `try_borrow`, so one made meanwhile gets the "busy" error, not a panic.
    #[allow(clippy::await_holding_refcell_ref)]
    pub fn steps(&self, n: u32) -> js_sys::Promise {
        let run = self.run.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut r = borrow_run(&run)?;
            let stats = r.steps(n).await.map_err(js)?;
            device_errors()?;
            Ok(json(&stats)?)
        })
    }

    /// Steps done.
    pub fn step(&self) -> Result<u32, JsError> {
        Ok(read_run(&self.run)?.trainer.step)
    }

    /// The configured total.
    pub fn total_steps(&self) -> Result<u32, JsError> {
        Ok(read_run(&self.run)?.trainer.config.steps)
    }

    /// The run's config (TOML), as `imba train --config` reads it.
    pub fn config(&self) -> Result<String, JsError> {
        Ok(read_run(&self.run)?.trainer.config.to_toml())
    }

    /// Mean D per label against its training count (JSON: [{name, count, mean_d}]).
    pub fn d_by_label(&self) -> Result<JsValue, JsError> {
        json(&read_run(&self.run)?.d_by_label())
    }

    /// A grid from the current EMA weights.
    #[allow(clippy::await_holding_refcell_ref)] // the busy flag, as in `steps`
    pub fn sample(&self, per_label: u32, seed: u32, guidance: f32, steps: u32) -> js_sys::Promise {
        let run = self.run.clone();
        let o = grid_options(per_label, seed, guidance, steps);
        wasm_bindgen_futures::future_to_promise(async move {
            let r = read_run(&run)?;
            let grid = r.sample(o).await.map_err(js)?;
            device_errors()?;
            Ok(Samples(grid).into())
        })
    }
}
