//! The GPU context: adapter choice, device features and limits, buffer helpers, readback.

pub mod paths;
mod pipeline_cache;
mod timer;

pub(crate) use pipeline_cache::pipeline_cache;
pub use pipeline_cache::with_pipeline_cache;
pub use timer::GpuTimer;

use crate::{Error, Result};
use wgpu::util::DeviceExt;

/// Optional device features the crate uses when the adapter has them.
pub const OPTIONAL_FEATURES: wgpu::Features = wgpu::Features::TIMESTAMP_QUERY
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS)
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
    .union(wgpu::Features::SUBGROUP)
    .union(wgpu::Features::SHADER_F16)
    .union(wgpu::Features::PIPELINE_CACHE);

/// A wgpu device opened on the chosen adapter, with what we need to know about it.
pub struct Gpu {
    /// The instance the adapter came from.
    pub instance: wgpu::Instance,
    /// The chosen adapter.
    pub adapter: wgpu::Adapter,
    /// The device opened on it.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// The kernel paths the workflow's models run on this device (see [`paths::Paths`]).
    pub paths: paths::Paths,
    /// The adapter's name, backend, driver and type.
    pub info: wgpu::AdapterInfo,
    /// Compiled pipelines kept across runs (see `pipeline_cache.rs`), saved when the `Gpu`
    /// is dropped.
    pipelines: Option<pipeline_cache::DiskCache>,
}

/// Preference order of device types: hardware first, the CPU (lavapipe) last.
fn type_rank(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// Native APIs before OpenGL: wgpu's GL backend runs every kernel (tested on llvmpipe), but
/// it serialises work on one context and has no subgroups, so the matmul runs its portable
/// kernel (a training step 11× slower than through Vulkan on the same llvmpipe).
fn backend_rank(b: wgpu::Backend) -> u32 {
    match b {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    }
}

/// Advice for a user whose best adapter is OpenGL over a CPU (Mesa's llvmpipe without its
/// Vulkan driver): every kernel runs there, but a training step is about 11× slower than
/// through Vulkan on the same CPU (BENCHMARKS.md), so a run that takes minutes takes an hour.
/// `None` for every other adapter.
pub fn slow_adapter_advice(
    backend: wgpu::Backend,
    device_type: wgpu::DeviceType,
) -> Option<String> {
    (backend == wgpu::Backend::Gl && device_type == wgpu::DeviceType::Cpu).then(|| {
        "the kernels run on OpenGL over a CPU driver, about 11× slower than Vulkan on the same \
         CPU; install Mesa's Vulkan driver (Debian/Ubuntu: `apt-get install \
         mesa-vulkan-drivers`, or scripts/setup.sh), or pass --backend gl to use OpenGL anyway"
            .into()
    })
}

/// The limits a device is opened with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LimitsChoice {
    /// Everything the adapter offers (the default).
    #[default]
    Adapter,
    /// WebGPU's default limits (`wgpu::Limits::default()`: 8 storage buffers per stage,
    /// 16 KiB of workgroup memory, 256 invocations per workgroup, 128 MiB per binding), lowered
    /// where the adapter offers less: what any WebGPU implementation grants a page that asks
    /// for nothing more, so what runs here runs in every browser.
    WebGpu,
}

/// The environment variable that sets [`LimitsChoice`] (`adapter` or `webgpu`).
pub const LIMITS_ENV: &str = "IMBA_LIMITS";

impl std::str::FromStr for LimitsChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "adapter" => Ok(Self::Adapter),
            "webgpu" => Ok(Self::WebGpu),
            other => Err(Error::Config(format!(
                "{other:?} is not a limits choice; use adapter or webgpu"
            ))),
        }
    }
}

impl LimitsChoice {
    /// `IMBA_LIMITS` if set, else [`LimitsChoice::Adapter`].
    pub fn from_env() -> Result<Self> {
        match std::env::var(LIMITS_ENV) {
            Ok(v) if !v.is_empty() => v
                .parse()
                .map_err(|e: Error| Error::Config(format!("{LIMITS_ENV}: {e}"))),
            _ => Ok(Self::Adapter),
        }
    }

    /// The limits to request on `adapter`.
    pub fn limits(self, adapter: &wgpu::Adapter) -> wgpu::Limits {
        match self {
            Self::Adapter => adapter.limits(),
            Self::WebGpu => wgpu::Limits::default().or_worse_values_from(&adapter.limits()),
        }
    }
}

/// Which adapter to open and how: [`Gpu::open`].
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// The first adapter whose name contains this (case-insensitive); else the best one.
    pub adapter: Option<String>,
    /// The APIs to look at; `None`: `WGPU_BACKEND` if set, else every compiled-in one.
    pub backends: Option<wgpu::Backends>,
    /// Which limits to open the device with.
    pub limits: LimitsChoice,
    /// The kernel paths; `None`: `IMBA_PATHS` if set, else chosen by the adapter's type.
    pub paths: Option<paths::Paths>,
}

impl GpuOptions {
    /// `WGPU_ADAPTER_NAME`, `WGPU_BACKEND` and `IMBA_LIMITS`.
    pub fn from_env() -> Result<Self> {
        Ok(Self {
            adapter: std::env::var("WGPU_ADAPTER_NAME")
                .ok()
                .filter(|s| !s.is_empty()),
            backends: None,
            limits: LimitsChoice::from_env()?,
            paths: None,
        })
    }
}

/// Parses a backend name as `--backend` and `WGPU_BACKEND` take it.
pub fn parse_backend(name: &str) -> Result<wgpu::Backends> {
    match name.trim().to_ascii_lowercase().as_str() {
        "vulkan" | "vk" => Ok(wgpu::Backends::VULKAN),
        "metal" | "mtl" => Ok(wgpu::Backends::METAL),
        "dx12" | "d3d12" => Ok(wgpu::Backends::DX12),
        "gl" | "gles" | "opengl" => Ok(wgpu::Backends::GL),
        other => Err(Error::Config(format!(
            "{other:?} is not a backend; use vulkan, metal, dx12 or gl"
        ))),
    }
}

/// Refuses a read-back of more bytes than `buffer` holds.
fn check_readable(bytes: u64, buffer: &wgpu::Buffer) -> Result<()> {
    if bytes > buffer.size() {
        return Err(Error::Buffer {
            name: "readback",
            problem: format!("asked for {bytes} bytes of a {}-byte buffer", buffer.size()),
        });
    }
    Ok(())
}

/// An instance over `backends` (or `WGPU_BACKEND`'s, else all) and its adapters (in a
/// browser: the one adapter the page is given).
async fn instance_and_adapters(
    backends: Option<wgpu::Backends>,
) -> (wgpu::Instance, wgpu::Backends, Vec<wgpu::Adapter>) {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    if let Some(b) = backends {
        desc.backends = b;
    }
    let backends = desc.backends;
    let instance = wgpu::Instance::new(desc);
    let adapters = instance.enumerate_adapters(backends).await;
    (instance, backends, adapters)
}

/// Every adapter wgpu sees on `backends` (`None`: `WGPU_BACKEND`'s, else all), best first,
/// with the instance that found them (what [`Gpu::from_adapter_with`] takes).
pub fn adapters(backends: Option<wgpu::Backends>) -> (wgpu::Instance, Vec<wgpu::Adapter>) {
    let (instance, _, mut list) = pollster::block_on(instance_and_adapters(backends));
    list.sort_by_key(|a| {
        let i = a.get_info();
        (backend_rank(i.backend), type_rank(i.device_type))
    });
    (instance, list)
}

impl Gpu {
    /// Opens the best adapter: `WGPU_BACKEND` (vulkan, metal, dx12, gl) restricts the APIs,
    /// `WGPU_ADAPTER_NAME` picks the first adapter whose name contains it (case-insensitive),
    /// `IMBA_LIMITS=webgpu` opens it with WebGPU's default limits; otherwise a hardware GPU is
    /// preferred and the software Vulkan adapter is the fallback.
    pub fn new() -> Result<Self> {
        Self::open(&GpuOptions::from_env()?)
    }

    /// As [`Gpu::new`], with an explicit adapter-name filter instead of the environment's.
    pub fn with_adapter_name(name: Option<&str>) -> Result<Self> {
        Self::open(&GpuOptions {
            adapter: name.map(str::to_string),
            ..GpuOptions::from_env()?
        })
    }

    /// Opens the adapter `options` pick, with the limits they ask for.
    pub fn open(options: &GpuOptions) -> Result<Self> {
        pollster::block_on(Self::open_async(options))
    }

    /// [`Gpu::open`] without blocking: what a browser page calls (a page cannot block), and
    /// the same device and bits natively.
    pub async fn open_async(options: &GpuOptions) -> Result<Self> {
        let (instance, backends, adapters) = instance_and_adapters(options.backends).await;
        let listing = adapters
            .iter()
            .map(|a| {
                let i = a.get_info();
                format!("'{}' ({:?}, {:?})", i.name, i.backend, i.device_type)
            })
            .collect::<Vec<_>>()
            .join(", ");
        let adapter =
            match options.adapter.as_deref() {
                Some(want) => {
                    let want_lc = want.to_lowercase();
                    adapters
                        .into_iter()
                        .find(|a| a.get_info().name.to_lowercase().contains(&want_lc))
                        .ok_or_else(|| {
                            Error::NoAdapter(format!(
                            "no adapter name contains '{want}' (--adapter or WGPU_ADAPTER_NAME) \
                             on backends {backends:?}; available: {}; `imba info --adapters` \
                             lists them",
                            if listing.is_empty() { "none".into() } else { listing.clone() }
                        ))
                        })?
                }
                None => adapters
                    .into_iter()
                    .min_by_key(|a| {
                        let i = a.get_info();
                        (backend_rank(i.backend), type_rank(i.device_type))
                    })
                    .ok_or_else(|| {
                        Error::NoAdapter(format!(
                        "wgpu found no adapter for backends {backends:?}. Install a GPU driver, or \
                         the software Vulkan driver (Debian/Ubuntu: `apt-get install \
                         mesa-vulkan-drivers`); check --backend or WGPU_BACKEND if set"
                    ))
                    })?,
            };
        let gpu = Self::from_adapter_with_async(instance, adapter, options.limits).await?;
        Ok(gpu.with_paths(options.paths))
    }

    /// The adapter of one rank of a data-parallel job on this machine: the adapter whose name
    /// contains `options.adapter`, if given; otherwise the adapters of the best kind
    /// ([`Gpu::new`]'s choice: hardware GPUs before the software one) on `options.backends`,
    /// in the driver's order, taken in turn by local rank (rank r opens adapter r mod count,
    /// so 8 ranks on an 8-GPU machine get one GPU each), with `options.limits`.
    pub fn for_local_rank(options: &GpuOptions, local_rank: usize) -> Result<Self> {
        if options.adapter.is_some() {
            return Self::open(options);
        }
        let (instance, _, adapters) = pollster::block_on(instance_and_adapters(options.backends));
        let kind = |a: &wgpu::Adapter| {
            let i = a.get_info();
            (backend_rank(i.backend), type_rank(i.device_type))
        };
        let Some(best) = adapters.iter().map(kind).min() else {
            return Self::open(options);
        };
        let mut same: Vec<wgpu::Adapter> =
            adapters.into_iter().filter(|a| kind(a) == best).collect();
        let pick = local_rank % same.len();
        Ok(
            Self::from_adapter_with(instance, same.swap_remove(pick), options.limits)?
                .with_paths(options.paths),
        )
    }

    /// This device with `paths` for the workflow's models, where given.
    fn with_paths(mut self, paths: Option<paths::Paths>) -> Self {
        self.paths = paths.unwrap_or(self.paths);
        self
    }

    /// Opens a device on `adapter` with its full limits and the optional features it has.
    pub fn from_adapter(instance: wgpu::Instance, adapter: wgpu::Adapter) -> Result<Self> {
        Self::from_adapter_with(instance, adapter, LimitsChoice::Adapter)
    }

    /// [`Gpu::from_adapter`] with the limits `limits` asks for.
    pub fn from_adapter_with(
        instance: wgpu::Instance,
        adapter: wgpu::Adapter,
        limits: LimitsChoice,
    ) -> Result<Self> {
        pollster::block_on(Self::from_adapter_with_async(instance, adapter, limits))
    }

    /// [`Gpu::from_adapter_with`] without blocking.
    pub async fn from_adapter_with_async(
        instance: wgpu::Instance,
        adapter: wgpu::Adapter,
        limits: LimitsChoice,
    ) -> Result<Self> {
        let info = adapter.get_info();
        let features = adapter.features() & OPTIONAL_FEATURES;
        let desc = wgpu::DeviceDescriptor {
            label: Some("imba"),
            required_features: features,
            required_limits: limits.limits(&adapter),
            ..Default::default()
        };
        let (device, queue) = adapter
            .request_device(&desc)
            .await
            .map_err(|e| Error::Device {
                adapter: info.name.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            pipelines: pipeline_cache::DiskCache::open(&device, &info),
            paths: paths::Paths::choose(&device)?,
            instance,
            adapter,
            device,
            queue,
            info,
        })
    }

    /// Runs `f` with this device's pipeline cache (see [`with_pipeline_cache`]): kernels made
    /// inside compile with it, and what they compile is kept for the next run. Without a
    /// cache (adapter, `IMBA_PIPELINE_CACHE=off`), just runs `f`.
    pub fn with_pipeline_cache<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.pipelines {
            Some(c) => with_pipeline_cache(&c.cache, f),
            None => f(),
        }
    }

    /// Writes the compiled pipelines to the cache file now (it is also written when the
    /// `Gpu` is dropped); a no-op where there is no cache.
    pub fn save_pipeline_cache(&self) -> Result<()> {
        match &self.pipelines {
            Some(c) => c
                .save()
                .map_err(|e| Error::io(c.path(), "write the pipeline cache", e)),
            None => Ok(()),
        }
    }

    /// Whether GPU timestamps can be written between passes of a command encoder.
    pub fn has_timestamps(&self) -> bool {
        self.device.features().contains(
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS,
        )
    }

    /// A storage buffer (also copy source and destination) holding `data`.
    pub fn upload<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> wgpu::Buffer {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        if bytes.is_empty() {
            return self.zeros(label, 4);
        }
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytes,
                usage: storage_usage(),
            })
    }

    /// A zero-filled storage buffer of `bytes` bytes (rounded up to a multiple of 4).
    pub fn zeros(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4).next_multiple_of(4),
            usage: storage_usage(),
            mapped_at_creation: false,
        })
    }

    /// A storage buffer of `len` f32 set to NaN, so that an element a kernel fails to write
    /// shows up in a comparison.
    pub fn poisoned(&self, label: &str, len: usize) -> wgpu::Buffer {
        self.upload(label, &vec![f32::NAN; len.max(1)])
    }

    /// Submits an encoder's commands without waiting: a read-back that follows on the same
    /// queue ([`Self::read`], [`Self::read_staging`]) waits for them and for its own copy at
    /// once.
    pub fn submit(&self, encoder: wgpu::CommandEncoder) {
        self.queue.submit(Some(encoder.finish()));
    }

    /// Submits an encoder's commands and waits for them to finish.
    pub fn submit_and_wait(&self, encoder: wgpu::CommandEncoder) -> Result<()> {
        self.submit(encoder);
        self.wait()
    }

    /// Waits until the queue is idle.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Readback(e.to_string()))
    }

    /// A new command encoder.
    pub fn encoder(&self) -> wgpu::CommandEncoder {
        self.device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("imba"),
            })
    }

    /// Copies the first `len` elements of a buffer back to the host.
    pub fn read<T: bytemuck::Pod>(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<T>> {
        pollster::block_on(self.read_async(buffer, len))
    }

    /// [`Gpu::read`] without blocking (a browser page's read-back).
    pub async fn read_async<T: bytemuck::Pod>(
        &self,
        buffer: &wgpu::Buffer,
        len: usize,
    ) -> Result<Vec<T>> {
        let bytes = (len * std::mem::size_of::<T>()) as u64;
        check_readable(bytes, buffer)?;
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = self.staging("readback", bytes);
        let mut encoder = self.encoder();
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, bytes);
        self.submit(encoder);
        let out = self.read_staging_async(&staging, len).await?;
        crate::capture::read_back(buffer, bytemuck::cast_slice(&out));
        Ok(out)
    }

    /// A host-readable buffer (MAP_READ | COPY_DST) of `bytes` bytes, for callers that copy
    /// results into it inside their own submission and read it with [`Self::read_staging`].
    pub fn staging(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4).next_multiple_of(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Waits for the queue, maps a staging buffer and copies its first `len` elements out.
    pub fn read_staging<T: bytemuck::Pod>(
        &self,
        staging: &wgpu::Buffer,
        len: usize,
    ) -> Result<Vec<T>> {
        pollster::block_on(self.read_staging_async(staging, len))
    }

    /// [`Gpu::read_staging`] without blocking: natively the queue is waited for at once; in a
    /// browser the mapping completes when the page's event loop next turns.
    pub async fn read_staging_async<T: bytemuck::Pod>(
        &self,
        staging: &wgpu::Buffer,
        len: usize,
    ) -> Result<Vec<T>> {
        let bytes = (len * std::mem::size_of::<T>()) as u64;
        check_readable(bytes, staging)?;
        let (tx, rx) = futures_channel::oneshot::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.await
            .map_err(|e| Error::Readback(e.to_string()))?
            .map_err(|e| Error::Readback(e.to_string()))?;
        let view = staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| Error::Readback(e.to_string()))?;
        let out = bytemuck::cast_slice::<u8, T>(&view[..bytes as usize]).to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }

    /// A human-readable description: adapter, backend, driver, features and the limits that
    /// matter to the kernels.
    pub fn describe(&self) -> String {
        let i = &self.info;
        let f = self.device.features();
        let l = self.device.limits();
        let yes = |b: bool| if b { "yes" } else { "no" };
        let mut s = String::new();
        s += &format!("adapter        {}\n", i.name);
        s += &format!("backend        {:?}\n", i.backend);
        s += &format!("device type    {:?}\n", i.device_type);
        s += &format!("driver         {} ({})\n", i.driver, i.driver_info);
        s += &format!("vendor/device  {:#06x}/{:#06x}\n", i.vendor, i.device);
        s += &format!(
            "subgroup size  {}..{}\n",
            i.subgroup_min_size, i.subgroup_max_size
        );
        s += "features\n";
        s += &format!(
            "  timestamps (in encoders)   {}\n",
            yes(f.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS))
        );
        s += &format!(
            "  subgroups                  {}\n",
            yes(f.contains(wgpu::Features::SUBGROUP))
        );
        s += &format!(
            "  shader f16                 {}\n",
            yes(f.contains(wgpu::Features::SHADER_F16))
        );
        s += "limits\n";
        s += &format!(
            "  max storage binding        {} MiB\n",
            l.max_storage_buffer_binding_size / (1 << 20)
        );
        s += &format!(
            "  max buffer size            {} MiB\n",
            l.max_buffer_size >> 20
        );
        s += &format!(
            "  max workgroups per dim     {}\n",
            l.max_compute_workgroups_per_dimension
        );
        s += &format!(
            "  max invocations per group  {}\n",
            l.max_compute_invocations_per_workgroup
        );
        s += &format!(
            "  workgroup memory           {} KiB\n",
            l.max_compute_workgroup_storage_size / 1024
        );
        s += &format!(
            "  storage buffers per stage  {}\n",
            l.max_storage_buffers_per_shader_stage
        );
        s
    }
}

/// Usage flags of the crate's storage buffers.
pub fn storage_usage() -> wgpu::BufferUsages {
    wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST
}

#[cfg(test)]
mod tests {
    use super::slow_adapter_advice;
    use wgpu::{Backend, DeviceType};

    #[test]
    fn only_opengl_over_a_cpu_gets_the_advice() {
        let advice = slow_adapter_advice(Backend::Gl, DeviceType::Cpu).unwrap();
        assert!(advice.contains("mesa-vulkan-drivers"), "{advice}");
        for (b, t) in [
            (Backend::Vulkan, DeviceType::Cpu),
            (Backend::Gl, DeviceType::DiscreteGpu),
            (Backend::Gl, DeviceType::IntegratedGpu),
            (Backend::Metal, DeviceType::IntegratedGpu),
        ] {
            assert!(slow_adapter_advice(b, t).is_none(), "{b:?} {t:?}");
        }
    }
}
