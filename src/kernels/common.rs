//! What every launcher does: check buffers against the shape and the device's limits, lay
//! out a 2-D grid of workgroups, build bind groups and pipelines.

use crate::{Error, Result};
use std::cell::Cell;
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use wgpu::util::DeviceExt;

/// Whether a launch overwrites its output or adds to what the output holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Write {
    /// The launch writes its result over the output.
    #[default]
    Overwrite,
    /// The launch adds its result to what the output holds (a gradient summed over uses).
    Accumulate,
}

impl Write {
    /// The shaders' `accumulate` flag.
    pub(crate) fn flag(self) -> u32 {
        (self == Write::Accumulate) as u32
    }
}

/// A family's compute pipelines by entry-point name.
pub(crate) struct Pipelines(HashMap<&'static str, wgpu::ComputePipeline>);

impl Pipelines {
    /// Compiles `entries` of `family`'s module with `layout`.
    pub(crate) fn new(
        device: &wgpu::Device,
        family: &str,
        layout: &Layout,
        entries: &[&'static str],
    ) -> Result<Self> {
        Self::specialised(device, family, layout, entries, &[])
    }

    /// [`Self::new`] with values for the module's pipeline-overridable constants.
    pub(crate) fn specialised(
        device: &wgpu::Device,
        family: &str,
        layout: &Layout,
        entries: &[&'static str],
        constants: &[(&str, f64)],
    ) -> Result<Self> {
        let compiled = specialised_pipelines(device, family, layout, entries, constants)?;
        Ok(Self(entries.iter().copied().zip(compiled).collect()))
    }

    /// The pipeline of entry point `name` (one of those it was made with).
    pub(crate) fn get(&self, name: &str) -> &wgpu::ComputePipeline {
        &self.0[name]
    }
}

/// The pipeline of a family's single entry point `entry`, with values for the module's
/// pipeline-overridable constants (none: `&[]`).
pub(crate) fn pipeline(
    device: &wgpu::Device,
    family: &str,
    layout: &Layout,
    entry: &str,
    constants: &[(&str, f64)],
) -> Result<wgpu::ComputePipeline> {
    let mut one = specialised_pipelines(device, family, layout, &[entry], constants)?;
    Ok(one.pop().expect("one pipeline per entry point"))
}

/// Binding kinds used by our shaders.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Slot {
    Uniform,
    Read,
    ReadWrite,
    /// A read-only rgba32float storage texture, read with `textureLoad`. Not a sampled
    /// texture: on llvmpipe a sampled fetch is a function call per load, a storage-texture
    /// load is inlined (see shaders/matmul_texture.wgsl).
    ReadTexture,
    /// A write-only rgba32float storage texture.
    WriteTexture,
}

impl Slot {
    /// The slot's kind as replayed cases name it (see [`crate::capture`]).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Slot::Uniform => "uniform",
            Slot::Read => "read",
            Slot::ReadWrite => "read_write",
            Slot::ReadTexture => "read_texture",
            Slot::WriteTexture => "write_texture",
        }
    }
}

/// A bind-group layout with what each binding is (read, read-write, ...) and the shader
/// family whose variable names its bindings carry: what the aliasing check of
/// [`Binder::bind`] needs.
#[derive(Clone)]
pub(crate) struct Layout(std::sync::Arc<LayoutInner>);

struct LayoutInner {
    raw: wgpu::BindGroupLayout,
    slots: Vec<(u32, Slot)>,
    /// Set by the first pipeline made with this layout.
    family: std::sync::OnceLock<String>,
}

impl Layout {
    /// Whether binding `binding` is a writable storage buffer.
    pub(crate) fn writes(&self, binding: u32) -> bool {
        self.0
            .slots
            .iter()
            .any(|&(b, s)| b == binding && s == Slot::ReadWrite)
    }
}

impl std::ops::Deref for Layout {
    type Target = wgpu::BindGroupLayout;
    fn deref(&self) -> &wgpu::BindGroupLayout {
        &self.0.raw
    }
}

/// One explicit bind-group layout shared by every entry point of a family, so a launch can
/// bind its buffers once and run several entry points with the same bind group.
/// A layout that binds more than the device allows is refused by name (see
/// [`check_binding_limits`]) before wgpu would report it invalid.
pub(crate) fn layout(device: &wgpu::Device, label: &str, slots: &[(u32, Slot)]) -> Result<Layout> {
    check_binding_limits(device, label, slots)?;
    Ok(Layout(std::sync::Arc::new(LayoutInner {
        raw: raw_layout(device, label, slots),
        slots: slots.to_vec(),
        family: Default::default(),
    })))
}

fn raw_layout(device: &wgpu::Device, label: &str, slots: &[(u32, Slot)]) -> wgpu::BindGroupLayout {
    let entries: Vec<_> = slots
        .iter()
        .map(|&(binding, slot)| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: match slot {
                Slot::Uniform => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                Slot::Read | Slot::ReadWrite => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: matches!(slot, Slot::Read),
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                Slot::ReadTexture | Slot::WriteTexture => wgpu::BindingType::StorageTexture {
                    access: match slot {
                        Slot::ReadTexture => wgpu::StorageTextureAccess::ReadOnly,
                        _ => wgpu::StorageTextureAccess::WriteOnly,
                    },
                    format: wgpu::TextureFormat::Rgba32Float,
                    view_dimension: wgpu::TextureViewDimension::D2,
                },
            },
            count: None,
        })
        .collect();
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(label),
        entries: &entries,
    })
}

/// Compute pipelines for the named entry points of one module, all with `layout`, with
/// values for the module's pipeline-overridable constants. Shader or pipeline validation
/// failures come back as [`Error::Shader`] (inside an error scope) rather than as wgpu's
/// uncaptured-error panic.
fn specialised_pipelines(
    device: &wgpu::Device,
    family: &str,
    layout: &Layout,
    entries: &[&str],
    constants: &[(&str, f64)],
) -> Result<Vec<wgpu::ComputePipeline>> {
    layout.0.family.get_or_init(|| family.to_string());
    let layout_slots = &layout.0.slots;
    let layout: &wgpu::BindGroupLayout = layout;
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let module = crate::shaders::module(device, family)?;
    let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(family),
        bind_group_layouts: &[Some(layout)],
        immediate_size: 0,
    });
    let cache = crate::gpu::pipeline_cache();
    let out = entries
        .iter()
        .map(|entry| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&pl),
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    ..Default::default()
                },
                cache: cache.as_ref(),
            })
        })
        .collect::<Vec<_>>();
    if let Some(e) = pollster::block_on(scope.pop()) {
        return Err(Error::Shader {
            name: family.into(),
            message: e.to_string(),
        });
    }
    if crate::capture::enabled() {
        let slots: Vec<_> = layout_slots.iter().map(|&(b, s)| (b, s.name())).collect();
        crate::capture::pipelines_made(family, entries, constants, &slots, &out);
    }
    Ok(out)
}

/// The device limits every kernel family needs: WebGPU's defaults (8 storage buffers and 4
/// storage textures per shader stage, 16 KiB of workgroup memory, 256 invocations per
/// workgroup, 128 MiB per storage binding), which every browser and native adapter grants.
/// An engine that opens its device with these can make every family; a family made on a
/// device below them (fewer bindings than it binds, smaller workgroups) is refused with
/// [`Error::Limit`] naming the limit. Tensors larger than
/// 128 MiB need the adapter's `max_storage_buffer_binding_size` and `max_buffer_size` as well.
pub fn required_limits() -> wgpu::Limits {
    wgpu::Limits::default()
}

/// Refuses a family whose layout binds more storage buffers or storage textures than the
/// device allows in one shader stage, or a device below WebGPU's compute defaults, naming the
/// limit, before wgpu reports an invalid layout. Every family fits WebGPU's defaults.
fn check_binding_limits(device: &wgpu::Device, family: &str, slots: &[(u32, Slot)]) -> Result<()> {
    let l = device.limits();
    let buffers = slots
        .iter()
        .filter(|s| matches!(s.1, Slot::Read | Slot::ReadWrite))
        .count() as u32;
    let textures = slots
        .iter()
        .filter(|s| matches!(s.1, Slot::ReadTexture | Slot::WriteTexture))
        .count() as u32;
    let check = |what: &str, need: u32, have: u32| {
        if need <= have {
            return Ok(());
        }
        Err(Error::Limit(format!(
            "the {family} kernels bind {need} {what} in one shader stage but this device allows \
             {have} (max_{}_per_shader_stage); open the device with the adapter's limits \
             (IMBA_LIMITS=adapter) or use an adapter that allows {need}",
            what.replace(' ', "_")
        )))
    };
    check(
        "storage buffers",
        buffers,
        l.max_storage_buffers_per_shader_stage,
    )?;
    check(
        "storage textures",
        textures,
        l.max_storage_textures_per_shader_stage,
    )?;
    // The kernels' workgroups are written against WebGPU's compute defaults.
    let need = required_limits();
    for (name, need, have) in [
        (
            "max_compute_workgroup_storage_size",
            need.max_compute_workgroup_storage_size,
            l.max_compute_workgroup_storage_size,
        ),
        (
            "max_compute_invocations_per_workgroup",
            need.max_compute_invocations_per_workgroup,
            l.max_compute_invocations_per_workgroup,
        ),
        (
            "max_compute_workgroup_size_x",
            need.max_compute_workgroup_size_x,
            l.max_compute_workgroup_size_x,
        ),
        (
            "max_compute_workgroup_size_y",
            need.max_compute_workgroup_size_y,
            l.max_compute_workgroup_size_y,
        ),
    ] {
        if have < need {
            return Err(Error::Limit(format!(
                "the {family} kernels need {name} ≥ {need} (WebGPU's default) but this device \
                 allows {have}; open it with imba::kernels::required_limits() or use another \
                 adapter"
            )));
        }
    }
    Ok(())
}

thread_local! {
    /// GPU objects (uniform buffers and bind groups) created by launches recorded on this
    /// thread. A launch whose parameters and buffers were seen before creates none: see
    /// [`Binder`].
    static LAUNCH_OBJECTS: Cell<u64> = const { Cell::new(0) };
    /// Dispatches recorded by launches on this thread.
    static DISPATCHES: Cell<u64> = const { Cell::new(0) };
}

/// The number of GPU objects (uniform buffers and bind groups) that kernel launches recorded
/// on the calling thread have created so far. A launch that repeats an earlier one (same
/// parameters, same buffers) creates none; tests and benchmarks read it to count what a
/// training step allocates.
pub fn launch_objects_created() -> u64 {
    LAUNCH_OBJECTS.with(Cell::get)
}

/// The number of compute dispatches that kernel launches recorded on the calling thread have
/// recorded so far: benchmarks read it to report what a training step costs in launches.
pub fn dispatches_recorded() -> u64 {
    DISPATCHES.with(Cell::get)
}

/// A uniform buffer holding `value`, made anew (the benchmarks' unfused chain; launchers
/// use [`Binder`], which caches).
#[cfg(feature = "workflow")]
pub(crate) fn uniform<T: bytemuck::Pod>(device: &wgpu::Device, value: &T) -> wgpu::Buffer {
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("params"),
        contents: bytemuck::bytes_of(value),
        usage: wgpu::BufferUsages::UNIFORM,
    })
}

/// A resource bound in a bind group, by identity.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Bound {
    Buffer(wgpu::Buffer, u64, Option<NonZeroU64>),
    View(wgpu::TextureView),
}

/// What makes two bind groups the same: the layout, the uniform parameters' bytes and the
/// resources at each binding.
#[derive(Clone, PartialEq, Eq, Hash)]
struct BindKey {
    layout: wgpu::BindGroupLayout,
    uniform: Vec<u8>,
    entries: Vec<(u32, Bound)>,
}

/// A cached bind group and the release epoch in which a launch last used it.
type Cached = HashMap<BindKey, (wgpu::BindGroup, u64)>;

/// The epoch of [`release_unused_bindings`]: every cached group remembers the epoch of its
/// last use.
static EPOCH: AtomicU64 = AtomicU64::new(0);

/// Every live family's cache, so that one call releases what all of them hold.
static CACHES: Mutex<Vec<Weak<Mutex<Cached>>>> = Mutex::new(Vec::new());

/// Drops every cached bind group (in every kernel family of the process) that no launch used
/// since the previous call, and returns how many were dropped. A cached group holds its
/// buffers: a buffer the caller dropped is freed once no cached group binds it. Call it once
/// per step or frame; launches that repeat keep their groups (and create nothing new).
pub fn release_unused_bindings() -> usize {
    let epoch = EPOCH.fetch_add(1, Ordering::Relaxed);
    let mut caches = CACHES.lock().unwrap_or_else(|e| e.into_inner());
    caches.retain(|w| w.strong_count() > 0);
    let mut dropped = 0;
    for cache in caches.iter().filter_map(Weak::upgrade) {
        let mut groups = cache.lock().unwrap_or_else(|e| e.into_inner());
        let before = groups.len();
        groups.retain(|_, (_, used)| *used >= epoch);
        dropped += before - groups.len();
    }
    dropped
}

/// A family's cache of bind groups with their uniform buffers, keyed by [`BindKey`]. A launch
/// with parameters and buffers it has seen reuses the bind group (the uniform is immutable:
/// its bytes are part of the key), so a training step that repeats the last one creates no
/// GPU objects for them. Cached groups keep their buffers alive until
/// [`release_unused_bindings`] drops those no launch used since its previous call; without
/// it the cache is emptied when it reaches [`Binder::CAPACITY`] entries, which bounds what it
/// holds.
pub(crate) struct Binder {
    groups: Arc<Mutex<Cached>>,
}

impl Default for Binder {
    fn default() -> Self {
        let groups = Arc::new(Mutex::new(Cached::new()));
        let mut caches = CACHES.lock().unwrap_or_else(|e| e.into_inner());
        caches.retain(|w| w.strong_count() > 0);
        caches.push(Arc::downgrade(&groups));
        Self { groups }
    }
}

impl Binder {
    const CAPACITY: usize = 4096;

    /// The bind group of `layout` with `uniform` at binding 0 and `entries` after it.
    /// A launch whose buffers alias where one of them is written is refused (see
    /// [`check_aliasing`]); the check runs once per new set of buffers.
    pub(crate) fn bind<T: bytemuck::Pod>(
        &self,
        device: &wgpu::Device,
        layout: &Layout,
        uniform: &T,
        entries: Vec<(u32, wgpu::BindingResource<'_>)>,
    ) -> Result<wgpu::BindGroup> {
        let bound = entries
            .iter()
            .map(|(binding, resource)| {
                let b = match resource {
                    wgpu::BindingResource::Buffer(b) => {
                        Bound::Buffer(b.buffer.clone(), b.offset, b.size)
                    }
                    wgpu::BindingResource::TextureView(v) => Bound::View((*v).clone()),
                    _ => unreachable!("our kernels bind buffers and storage textures only"),
                };
                (*binding, b)
            })
            .collect();
        let key = BindKey {
            layout: layout.0.raw.clone(),
            uniform: bytemuck::bytes_of(uniform).to_vec(),
            entries: bound,
        };
        if let Some((g, used)) = self.cached().get_mut(&key) {
            *used = EPOCH.load(Ordering::Relaxed);
            return Ok(g.clone());
        }
        check_aliasing(layout, &key.entries)?;
        // Made without holding the cache's lock, inside an error scope: what wgpu refuses
        // here (e.g. an operand made on another device) comes back as an error with wgpu's
        // message instead of reaching its default handler (a panic), and the cache and the
        // family stay as they were.
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let ub = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("params"),
            contents: &key.uniform,
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let mut all = vec![(0, ub.as_entire_binding())];
        all.extend(entries);
        let g = bind_group(device, layout, all.clone());
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Launch(format!(
                "{}; every operand must be a buffer of the device the kernels were made on",
                e.to_string().trim_end()
            )));
        }
        crate::capture::group_made(&g, &key.uniform, &all[1..]);
        LAUNCH_OBJECTS.with(|n| n.set(n.get() + 2));
        let mut groups = self.cached();
        if groups.len() >= Self::CAPACITY {
            groups.clear();
        }
        groups.insert(key, (g.clone(), EPOCH.load(Ordering::Relaxed)));
        Ok(g)
    }

    /// The cache, also after a panic on another thread while it was held: every change to
    /// it is a single insert or clear, so it is never left half-made.
    fn cached(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Refuses bindings that share a buffer where one of them is written: a buffer bound both
/// read-only and read-write in one dispatch is a wgpu validation error (a panic under wgpu's
/// default handler), and two read-write bindings whose ranges overlap race (garbage). Two
/// read-write bindings of disjoint ranges of one buffer (tensors of one arena) are fine.
fn check_aliasing(layout: &Layout, entries: &[(u32, Bound)]) -> Result<()> {
    let slot = |b: u32| layout.0.slots.iter().find(|s| s.0 == b).map(|s| s.1);
    let operands: Vec<_> = entries
        .iter()
        .filter_map(|(binding, bound)| match bound {
            Bound::Buffer(buf, offset, size) => {
                let end = size.map_or(buf.size(), |s| offset.saturating_add(s.get()));
                Some((
                    *binding,
                    buf,
                    *offset..end,
                    slot(*binding)? == Slot::ReadWrite,
                ))
            }
            Bound::View(_) => None,
        })
        .collect();
    let Some((i, j, problem)) = first_alias(&operands) else {
        return Ok(());
    };
    let names = binding_names(layout.0.family.get().map(String::as_str).unwrap_or(""));
    let name = |b: u32| {
        names
            .get(&b)
            .cloned()
            .unwrap_or_else(|| format!("binding {b}"))
    };
    let (a, b) = (&operands[i], &operands[j]);
    Err(alias_error(&name(a.0), &a.2, &name(b.0), &b.2, problem))
}

/// Refuses operands of one launch (name, region, bytes, written) that alias, by the rule of
/// [`check_aliasing`], before any pass is recorded: for launchers whose path may copy an
/// input first (where the bindings alone would not show the alias), so that every path
/// accepts and refuses the same arguments.
pub(crate) fn check_operands(operands: &[(&str, Region, u64, bool)]) -> Result<()> {
    let list: Vec<_> = operands
        .iter()
        .map(|(n, r, bytes, w)| (*n, r.buffer, r.offset..r.offset.saturating_add(*bytes), *w))
        .collect();
    match first_alias(&list) {
        None => Ok(()),
        Some((i, j, problem)) => {
            let (a, b) = (&list[i], &list[j]);
            Err(alias_error(a.0, &a.2, b.0, &b.2, problem))
        }
    }
}

/// Refuses operands of a launch of several passes (name, region, bytes, written) whose bytes
/// overlap where one of them is written: what [`check_operands`] checks within one dispatch,
/// for operands bound in different passes (where sharing a buffer in disjoint ranges is
/// fine, and overlapping ones would corrupt each other).
pub(crate) fn check_overlaps(operands: &[(&str, Region, u64, bool)]) -> Result<()> {
    for (i, (n1, r1, b1, w1)) in operands.iter().enumerate() {
        for (n2, r2, b2, w2) in &operands[i + 1..] {
            let (a, b) = (
                r1.offset..r1.offset.saturating_add(*b1),
                r2.offset..r2.offset.saturating_add(*b2),
            );
            if r1.buffer == r2.buffer && (*w1 || *w2) && a.start < b.end && b.start < a.end {
                let problem = "their bytes overlap and one of them is written (one pass would \
                               overwrite what another reads or writes)";
                return Err(alias_error(n1, &a, n2, &b, problem));
            }
        }
    }
    Ok(())
}

/// The first pair of operands (id, buffer, byte range, written) that share a buffer where one
/// is written: read and written (wgpu forbids binding a buffer both ways in one dispatch), or
/// both written over overlapping ranges (a race).
fn first_alias<T>(
    ops: &[(T, &wgpu::Buffer, std::ops::Range<u64>, bool)],
) -> Option<(usize, usize, &'static str)> {
    for (i, (_, buf1, r1, w1)) in ops.iter().enumerate() {
        for (j, (_, buf2, r2, w2)) in ops.iter().enumerate().skip(i + 1) {
            if buf1 != buf2 || (!w1 && !w2) {
                continue;
            }
            if w1 != w2 {
                return Some((
                    i,
                    j,
                    "one is read and the other written in the same launch (wgpu forbids \
                     binding a buffer both ways)",
                ));
            }
            if r1.start < r2.end && r2.start < r1.end {
                return Some((
                    i,
                    j,
                    "both are written and their ranges overlap (the results would race)",
                ));
            }
        }
    }
    None
}

fn alias_error(
    a: &str,
    ra: &std::ops::Range<u64>,
    b: &str,
    rb: &std::ops::Range<u64>,
    problem: &str,
) -> Error {
    Error::Alias(format!(
        "`{a}` (bytes {}..{}) and `{b}` (bytes {}..{}) are the same buffer: {problem}; give the \
         output a buffer (or a region of one) of its own",
        ra.start, ra.end, rb.start, rb.end
    ))
}

/// The WGSL variable name of each binding of a shader family (for error messages).
fn binding_names(family: &str) -> HashMap<u32, String> {
    let Ok(source) = crate::shaders::source(family) else {
        return HashMap::new();
    };
    let Ok(module) = naga::front::wgsl::parse_str(&source) else {
        return HashMap::new();
    };
    module
        .global_variables
        .iter()
        .filter_map(|(_, g)| Some((g.binding.as_ref()?.binding, g.name.clone()?)))
        .collect()
}

/// An rgba32float texture for the texture paths (llvmpipe): kernels read it as a read-only
/// storage texture or write it as a write-only one, and copies fill or empty it.
pub(crate) fn rgba32f_texture(
    device: &wgpu::Device,
    label: &str,
    width: u32,
    height: u32,
) -> wgpu::TextureView {
    device
        .create_texture(&wgpu::TextureDescriptor {
            label: Some(label),
            size: wgpu::Extent3d {
                width,
                height,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba32Float,
            usage: wgpu::TextureUsages::STORAGE_BINDING
                | wgpu::TextureUsages::COPY_SRC
                | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        })
        .create_view(&Default::default())
}

/// A small storage buffer bound where an entry point's slot is unused in this launch. One
/// placeholder may fill several unused read-only slots of a launch, but each unused
/// read-write slot needs its own: WebGPU forbids two writable bindings of one buffer whose
/// ranges overlap in a dispatch (Dawn refuses it; wgpu does not check), and the aliasing
/// check of [`Binder::bind`] treats placeholders like any other buffer. COPY_SRC lets a
/// captured case read it (see [`crate::capture`]).
pub(crate) fn placeholder(device: &wgpu::Device) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("unused-slot"),
        size: 16,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

/// Where a launch's operand lives: a buffer and a byte offset into it, e.g. one named tensor
/// of a flat parameter buffer. A plain `&wgpu::Buffer` converts to offset 0. Offsets must be
/// multiples of the device's `min_storage_buffer_offset_alignment` (256 bytes is always
/// enough); launchers check.
#[derive(Clone, Copy, Debug)]
pub struct Region<'a> {
    /// The buffer (STORAGE usage).
    pub buffer: &'a wgpu::Buffer,
    /// Bytes from the start of `buffer`.
    pub offset: u64,
}

impl<'a> Region<'a> {
    /// `offset` bytes into `buffer`.
    pub fn new(buffer: &'a wgpu::Buffer, offset: u64) -> Self {
        Self { buffer, offset }
    }
}

impl<'a> From<&'a wgpu::Buffer> for Region<'a> {
    fn from(buffer: &'a wgpu::Buffer) -> Self {
        Self { buffer, offset: 0 }
    }
}

/// Checks that `region` can be bound as storage for `bytes` bytes on this device.
pub(crate) fn check_storage<'a>(
    device: &wgpu::Device,
    name: &'static str,
    region: impl Into<Region<'a>>,
    bytes: u64,
) -> Result<()> {
    let Region { buffer, offset } = region.into();
    let align = device.limits().min_storage_buffer_offset_alignment as u64;
    if offset % align != 0 {
        return Err(Error::Buffer {
            name,
            problem: format!(
                "offset {offset} is not a multiple of the device's storage offset alignment \
                 {align}; align tensors to 256 bytes"
            ),
        });
    }
    // Checked: an offset near u64::MAX must not wrap into a small end.
    let need = bytes;
    let Some(bytes) = bytes.checked_add(offset) else {
        return Err(Error::Buffer {
            name,
            problem: format!(
                "offset {offset} plus the {bytes} bytes the shape needs passes the end of any \
                 buffer; give an offset inside the buffer"
            ),
        });
    };
    if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
        return Err(Error::Buffer {
            name,
            problem: "lacks BufferUsages::STORAGE; create it with STORAGE usage".into(),
        });
    }
    if buffer.size() < bytes {
        return Err(Error::Buffer {
            name,
            problem: format!(
                "holds {} bytes but needs {bytes}: the shape's {} values of 4 bytes ({need} \
                 bytes){}; allocate it for the shape",
                buffer.size(),
                need / 4,
                if offset > 0 {
                    format!(" after offset {offset}")
                } else {
                    String::new()
                }
            ),
        });
    }
    let max = device.limits().max_storage_buffer_binding_size;
    if bytes - offset > max {
        return Err(Error::Limit(format!(
            "`{name}` needs a {bytes}-byte storage binding but this device allows {max}; use a \
             smaller batch"
        )));
    }
    Ok(())
}

/// The binding of the first `bytes` bytes of a region.
pub(crate) fn range<'a>(region: impl Into<Region<'a>>, bytes: u64) -> wgpu::BindingResource<'a> {
    let Region { buffer, offset } = region.into();
    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer,
        offset,
        size: NonZeroU64::new(bytes.max(4)),
    })
}

/// A 2-D grid for `groups` workgroups under the per-dimension limit: (x, y) with x·y ≥ groups.
pub(crate) fn grid(device: &wgpu::Device, groups: u64) -> Result<(u32, u32)> {
    let max = device.limits().max_compute_workgroups_per_dimension as u64;
    let groups = groups.max(1);
    let x = groups.min(max);
    let y = groups.div_ceil(x);
    if y > max {
        return Err(Error::Limit(format!(
            "{groups} workgroups exceed {max}×{max}; use a smaller batch"
        )));
    }
    Ok((x as u32, y as u32))
}

/// Bind group from (binding, resource) pairs.
pub(crate) fn bind_group(
    device: &wgpu::Device,
    layout: &wgpu::BindGroupLayout,
    entries: Vec<(u32, wgpu::BindingResource<'_>)>,
) -> wgpu::BindGroup {
    let entries: Vec<_> = entries
        .into_iter()
        .map(|(binding, resource)| wgpu::BindGroupEntry { binding, resource })
        .collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout,
        entries: &entries,
    })
}

/// One compute pass running `dispatches` (pipeline, bind group, (x, y) workgroups) in order;
/// wgpu orders them through their storage dependencies.
pub(crate) fn record_pass(
    encoder: &mut wgpu::CommandEncoder,
    label: &str,
    dispatches: &[(&wgpu::ComputePipeline, &wgpu::BindGroup, (u32, u32))],
) {
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some(label),
        timestamp_writes: None,
    });
    DISPATCHES.with(|n| n.set(n.get() + dispatches.len() as u64));
    crate::capture::dispatches_recorded(dispatches);
    for &(pipeline, bind_group, (x, y)) in dispatches {
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, bind_group, &[]);
        pass.dispatch_workgroups(x, y, 1);
    }
}

/// The binding of `x`, or of the placeholder `fallback` for an unused slot.
pub(crate) fn range_or<'a, R: Into<Region<'a>>>(
    x: Option<(R, u64)>,
    fallback: &'a wgpu::Buffer,
) -> wgpu::BindingResource<'a> {
    match x {
        Some((b, n)) => range(b, n),
        None => range(fallback, 16),
    }
}

/// A storage binding of a launch — (name for errors, region, bytes), or unused — and the
/// placeholder bound where it is unused.
pub(crate) type Binding<'a> = (Option<(&'static str, Region<'a>, u64)>, &'a wgpu::Buffer);

/// One dispatch of a family: where it is recorded, with which layout, pipeline and cache.
pub(crate) struct OneLaunch<'a> {
    pub label: &'a str,
    pub layout: &'a Layout,
    pub pipeline: &'a wgpu::ComputePipeline,
    pub binder: &'a Binder,
}

impl OneLaunch<'_> {
    /// Checks every used binding against the device, lays out a 2-D grid of 64-invocation
    /// workgroups for `invocations`, binds `uniform(groups_x)` and the storage slots in order
    /// from binding 1, and records the dispatch.
    pub(crate) fn record<T: bytemuck::Pod>(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        invocations: u64,
        uniform: impl FnOnce(u32) -> T,
        bindings: &[Binding],
    ) -> Result<()> {
        for (name, region, bytes) in bindings.iter().filter_map(|b| b.0) {
            check_storage(device, name, region, bytes)?;
        }
        // Aliasing by the launch's own names for its operands.
        let operands: Vec<_> = (1..)
            .zip(bindings)
            .filter_map(|(binding, b)| {
                b.0.map(|(name, r, bytes)| (name, r, bytes, self.layout.writes(binding)))
            })
            .collect();
        check_operands(&operands)?;
        let (gx, gy) = grid(device, invocations.div_ceil(64))?;
        let entries = bindings
            .iter()
            .enumerate()
            .map(|(i, (b, fallback))| (i as u32 + 1, range_or(b.map(|(_, r, n)| (r, n)), fallback)))
            .collect();
        let bg = self
            .binder
            .bind(device, self.layout, &uniform(gx), entries)?;
        record_pass(encoder, self.label, &[(self.pipeline, &bg, (gx, gy))]);
        Ok(())
    }
}

#[cfg(test)]
mod region_tests {
    /// An offset whose sum with the bytes needed passes u64::MAX is refused, not wrapped.
    #[test]
    fn an_offset_near_the_top_of_u64_is_refused() {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: wgpu::Backends::VULKAN,
            ..wgpu::InstanceDescriptor::new_without_display_handle_from_env()
        });
        // Like every kernel test, this needs a Vulkan driver (lavapipe: scripts/setup.sh).
        let adapter = pollster::block_on(instance.request_adapter(&Default::default()))
            .expect("a Vulkan adapter");
        let (device, _) = pollster::block_on(adapter.request_device(&Default::default())).unwrap();
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: 1024,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let far = super::Region::new(&buffer, u64::MAX - 255);
        let e = super::check_storage(&device, "x", far, 4096).unwrap_err();
        assert!(e.to_string().contains("passes the end"), "{e}");
    }
}
