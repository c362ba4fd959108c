//! What every launcher does: check buffers against the shape and the device's limits, lay
//! out a 2-D grid of workgroups, build bind groups and pipelines.

use crate::{Error, Result};
use std::cell::Cell;

mod binder;
mod family;
mod region;
pub use binder::release_unused_bindings;
pub(crate) use binder::{check_launch, check_operands, check_overlaps, Binder};
pub(crate) use family::{Family, Operand};
pub use region::Region;
pub(crate) use region::{check_storage, range};

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
    })))
}

/// The kind of slot a global variable binds, for the kinds our layouts use.
pub(crate) fn slot_of(module: &naga::Module, g: &naga::GlobalVariable) -> Option<Slot> {
    match g.space {
        naga::AddressSpace::Uniform => Some(Slot::Uniform),
        naga::AddressSpace::Storage { access } if access.contains(naga::StorageAccess::STORE) => {
            Some(Slot::ReadWrite)
        }
        naga::AddressSpace::Storage { .. } => Some(Slot::Read),
        naga::AddressSpace::Handle => match module.types[g.ty].inner {
            naga::TypeInner::Image {
                class: naga::ImageClass::Storage { access, .. },
                ..
            } if access.contains(naga::StorageAccess::STORE) => Some(Slot::WriteTexture),
            _ => Some(Slot::ReadTexture),
        },
        _ => None,
    }
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

/// An error scope for validation errors, where its answer can be waited for: natively. A
/// browser page cannot block on it, so there no scope is pushed and an error reaches the
/// device's uncaptured-error handler instead (the page reports it).
pub(crate) fn validation_scope(device: &wgpu::Device) -> Option<wgpu::ErrorScopeGuard> {
    if cfg!(target_arch = "wasm32") {
        return None;
    }
    Some(device.push_error_scope(wgpu::ErrorFilter::Validation))
}

/// The error `scope` caught, if any (waits for the device's answer).
pub(crate) fn caught(scope: Option<wgpu::ErrorScopeGuard>) -> Option<wgpu::Error> {
    scope.and_then(|s| pollster::block_on(s.pop()))
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
    let layout_slots = &layout.0.slots;
    let layout: &wgpu::BindGroupLayout = layout;
    let scope = validation_scope(device);
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
    if let Some(e) = caught(scope) {
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
    use wgpu::util::DeviceExt;
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("params"),
        contents: bytemuck::bytes_of(value),
        usage: wgpu::BufferUsages::UNIFORM,
    })
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

/// A device for the unit tests: like every kernel test, they need a Vulkan driver (lavapipe:
/// scripts/setup.sh).
#[cfg(test)]
pub(crate) fn test_device() -> wgpu::Device {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::VULKAN,
        ..wgpu::InstanceDescriptor::new_without_display_handle_from_env()
    });
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))
        .expect("a Vulkan adapter");
    pollster::block_on(adapter.request_device(&Default::default()))
        .unwrap()
        .0
}

#[cfg(test)]
mod region_tests {
    /// An offset whose sum with the bytes needed passes u64::MAX is refused, not wrapped.
    #[test]
    fn an_offset_near_the_top_of_u64_is_refused() {
        let device = super::test_device();
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
