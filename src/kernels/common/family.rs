//! A kernel family on one device, the one shape every launcher holds: the bindings its entry
//! points use (read from the WGSL, with their names and access), their pipelines by name,
//! specialisations made on first use and cached by (entry point, constants), the bind-group
//! cache, and a placeholder for each binding a launch may leave unused. A launch names its
//! operands by the shader's variable names; [`Family::bind`] checks them against the device
//! and each other and binds them; [`Family::launch`] also lays out the grid and records.

use super::{check_operands, check_storage, grid, record_pass, Binder, Layout, Region, Slot};
use crate::kernels::step_values::{PerStep, StepValues};
use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::Mutex;

/// What a launch binds at one of the shader's variables.
#[derive(Clone, Copy)]
pub(crate) struct Operand<'a> {
    /// The shader's variable.
    var: &'static str,
    /// The caller's name for it, in errors (the argument's name where it differs).
    name: &'static str,
    resource: Resource<'a>,
}

#[derive(Clone, Copy)]
enum Resource<'a> {
    Buffer(Region<'a>, u64),
    Texture(&'a wgpu::TextureView),
    /// A uniform buffer of the caller's (the per-step values).
    Uniform(&'a wgpu::Buffer),
    /// A uniform made from these values for the launch (cached by their bytes).
    Values(StepValues),
    Unused,
}

impl<'a> Operand<'a> {
    /// `bytes` of `region` bound at the shader's variable `var`.
    pub(crate) fn buffer(var: &'static str, region: impl Into<Region<'a>>, bytes: u64) -> Self {
        let resource = Resource::Buffer(region.into(), bytes);
        Self {
            var,
            name: var,
            resource,
        }
    }
    /// [`Self::buffer`] where given, the family's placeholder where not.
    pub(crate) fn maybe(var: &'static str, given: Option<(Region<'a>, u64)>) -> Self {
        match given {
            Some((region, bytes)) => Self::buffer(var, region, bytes),
            None => Self::unused(var),
        }
    }
    /// A storage texture bound at `var`.
    pub(crate) fn texture(var: &'static str, view: &'a wgpu::TextureView) -> Self {
        Self {
            var,
            name: var,
            resource: Resource::Texture(view),
        }
    }
    /// The per-step values at the shader's uniform `var`: the caller's buffer, or one made
    /// from the values.
    pub(crate) fn step(var: &'static str, per_step: PerStep<'a>) -> Self {
        let resource = match per_step {
            PerStep::Buffer(b) => Resource::Uniform(b),
            PerStep::Values(v) => Resource::Values(v),
        };
        Self {
            var,
            name: var,
            resource,
        }
    }
    /// The family's placeholder bound at `var`: this launch does not use it.
    pub(crate) fn unused(var: &'static str) -> Self {
        Self {
            var,
            name: var,
            resource: Resource::Unused,
        }
    }
    /// The operand as the caller's errors name it (e.g. `dx` for the shader's `out`).
    pub(crate) fn called(self, name: &'static str) -> Self {
        Self { name, ..self }
    }
}

/// A binding of the family's layout: its number, the shader's variable and its kind.
struct Binding {
    number: u32,
    var: String,
    slot: Slot,
}

/// Specialised pipelines by (shader, entry point, constants as (name, value bits)).
type Specialised = HashMap<(&'static str, &'static str, Vec<(String, u64)>), wgpu::ComputePipeline>;

/// One kernel family's layout, pipelines, caches and placeholders on one device.
pub(crate) struct Family {
    shader: &'static str,
    layout: Layout,
    bindings: Vec<Binding>,
    pipelines: HashMap<&'static str, wgpu::ComputePipeline>,
    specialised: Mutex<Specialised>,
    binder: Binder,
    /// One per storage binding: every unused writable binding needs a resource of its own
    /// (overlapping writable bindings are refused), and a texture may not be bound both
    /// read and written.
    placeholders: HashMap<u32, Placeholder>,
}

enum Placeholder {
    Buffer(wgpu::Buffer),
    Texture(wgpu::TextureView),
}

impl Family {
    /// The entry points `entries` of `shader`, compiled now; one layout holds every binding
    /// any of them uses, so one bind group serves them all.
    pub(crate) fn new(
        device: &wgpu::Device,
        shader: &'static str,
        entries: &[&'static str],
    ) -> Result<Self> {
        Self::with_variant(device, shader, entries, shader, &[])
    }

    /// [`Self::new`], the layout also holding the bindings of `variant_entries` of
    /// `variant`: a module written for the same bindings whose pipelines are compiled on
    /// first use with their constants ([`Self::specialised`]).
    pub(crate) fn with_variant(
        device: &wgpu::Device,
        shader: &'static str,
        entries: &[&'static str],
        variant: &'static str,
        variant_entries: &[&'static str],
    ) -> Result<Self> {
        let mut bindings = used_bindings(shader, entries)?;
        if !variant_entries.is_empty() {
            merge(
                &mut bindings,
                used_bindings(variant, variant_entries)?,
                variant,
            )?;
        }
        let slots: Vec<(u32, Slot)> = bindings.iter().map(|b| (b.number, b.slot)).collect();
        let layout = super::layout(device, shader, &slots)?;
        let compiled = super::specialised_pipelines(device, shader, &layout, entries, &[])?;
        let placeholders = bindings
            .iter()
            .filter_map(|b| {
                let p = match b.slot {
                    Slot::Read | Slot::ReadWrite => Placeholder::Buffer(super::placeholder(device)),
                    Slot::ReadTexture | Slot::WriteTexture => {
                        Placeholder::Texture(crate::kernels::linear_texture::placeholder(device))
                    }
                    // The parameters at 0 are made per launch; another uniform (the per-step
                    // values) may be left unused by an entry point.
                    Slot::Uniform if b.number == 0 => return None,
                    Slot::Uniform => Placeholder::Buffer(uniform_placeholder(device)),
                };
                Some((b.number, p))
            })
            .collect();
        Ok(Self {
            shader,
            layout,
            bindings,
            pipelines: entries.iter().copied().zip(compiled).collect(),
            specialised: Mutex::new(HashMap::new()),
            binder: Binder::default(),
            placeholders,
        })
    }

    /// The family's bind-group layout (for a caller that binds without the cache).
    #[cfg(feature = "workflow")]
    pub(crate) fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The pipeline of entry point `entry` (one of those compiled when the family was made).
    pub(crate) fn pipeline(&self, entry: &str) -> &wgpu::ComputePipeline {
        // Entry names are the launchers' constants: a miss is a bug in the launcher.
        self.pipelines.get(entry).unwrap_or_else(|| {
            panic!(
                "the {} family was not made with entry point `{entry}`",
                self.shader
            )
        })
    }

    /// The pipeline of `entry` of `shader` (the family's own, or a variant module written
    /// for its layout) with values for its overridable constants, compiled on first use and
    /// cached by (shader, entry point, constants).
    pub(crate) fn specialised(
        &self,
        device: &wgpu::Device,
        shader: &'static str,
        entry: &'static str,
        constants: &[(&str, f64)],
    ) -> Result<wgpu::ComputePipeline> {
        let key = (
            shader,
            entry,
            constants
                .iter()
                .map(|&(n, v)| (n.to_string(), v.to_bits()))
                .collect(),
        );
        // Every change to the cache is one insert: a panic elsewhere leaves it whole.
        let cached = |s: &Self| {
            let map = s.specialised.lock().unwrap_or_else(|e| e.into_inner());
            map.get(&key).cloned()
        };
        if let Some(p) = cached(self) {
            return Ok(p);
        }
        // Compiled without the lock held: another thread may compile the same one, and the
        // first insert wins.
        let made = super::pipeline(device, shader, &self.layout, entry, constants)?;
        let mut map = self.specialised.lock().unwrap_or_else(|e| e.into_inner());
        Ok(map.entry(key).or_insert(made).clone())
    }

    /// The bind group of `uniform` and `operands`, each named by its shader variable at most
    /// once (a binding not named gets its placeholder: the launch does not use it). Each
    /// buffer is checked against the device (alignment, size, the storage-binding limit) and
    /// the buffers against each other for aliasing, under their callers' names.
    pub(crate) fn bind<T: bytemuck::Pod>(
        &self,
        device: &wgpu::Device,
        uniform: &T,
        operands: &[Operand],
    ) -> Result<wgpu::BindGroup> {
        let mut numbered = Vec::with_capacity(operands.len());
        for op in operands {
            let b = self.binding(op.var)?;
            numbered.push((b.number, b.slot, op));
        }
        self.check_named_once(&numbered)?;
        // Checked where the group is new (see `Binder::bind_uniforms`).
        let check = || {
            let mut buffers = Vec::with_capacity(numbered.len());
            for (_, slot, op) in &numbered {
                if let Resource::Buffer(region, bytes) = op.resource {
                    check_storage(device, op.name, region, bytes)?;
                    buffers.push((op.name, region, bytes, *slot == Slot::ReadWrite));
                }
            }
            check_operands(&buffers)
        };
        let mut uniforms = vec![(0, bytemuck::bytes_of(uniform).to_vec())];
        let mut entries = Vec::with_capacity(numbered.len());
        for &(number, _, op) in &numbered {
            match op.resource {
                Resource::Values(v) => uniforms.push((number, bytemuck::bytes_of(&v).to_vec())),
                r => entries.push((number, self.resource(number, r))),
            }
        }
        for &number in self.placeholders.keys() {
            if !numbered.iter().any(|n| n.0 == number) {
                entries.push((number, self.resource(number, Resource::Unused)));
            }
        }
        entries.sort_by_key(|e| e.0);
        self.binder
            .bind_uniforms(device, &self.layout, uniforms, entries, check)
    }

    /// One dispatch of `entry` over a 2-D grid of `groups` workgroups: `uniform` is given the
    /// grid's width (the shaders' `groups_x`), the operands are bound by [`Self::bind`].
    pub(crate) fn launch<T: bytemuck::Pod>(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
        entry: &str,
        groups: u64,
        uniform: impl FnOnce(u32) -> T,
        operands: &[Operand],
    ) -> Result<()> {
        let (gx, gy) = grid(device, groups)?;
        let group = self.bind(device, &uniform(gx), operands)?;
        self.record(encoder, &[(entry, &group, (gx, gy))]);
        Ok(())
    }

    /// One compute pass of dispatches (entry point, bind group, grid), in order.
    pub(crate) fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        dispatches: &[(&str, &wgpu::BindGroup, (u32, u32))],
    ) {
        let list: Vec<_> = dispatches
            .iter()
            .map(|&(entry, group, grid)| (self.pipeline(entry), group, grid))
            .collect();
        record_pass(encoder, self.shader, &list);
    }

    fn binding(&self, var: &str) -> Result<&Binding> {
        self.bindings.iter().find(|b| b.var == var).ok_or_else(|| {
            Error::Launch(format!(
                "the {} kernels have no binding `{var}` in the entry points they were made with",
                self.shader
            ))
        })
    }

    /// No binding named twice; a binding not named is bound to its placeholder (the launch
    /// does not use it).
    fn check_named_once(&self, numbered: &[(u32, Slot, &Operand)]) -> Result<()> {
        for b in self.bindings.iter().filter(|b| b.number != 0) {
            let times = numbered.iter().filter(|n| n.0 == b.number).count();
            if times > 1 {
                return Err(Error::Launch(format!(
                    "a launch of the {} kernels binds `{}` {times} times (once is needed)",
                    self.shader, b.var
                )));
            }
        }
        Ok(())
    }

    fn resource<'a>(&'a self, number: u32, r: Resource<'a>) -> wgpu::BindingResource<'a> {
        match (r, self.placeholders.get(&number)) {
            (Resource::Buffer(region, bytes), _) => super::range(region, bytes),
            (Resource::Texture(view), _) => wgpu::BindingResource::TextureView(view),
            (Resource::Uniform(b), _) => b.as_entire_binding(),
            (Resource::Values(_), _) => {
                unreachable!("values are made into a uniform by the binder")
            }
            (Resource::Unused, Some(Placeholder::Buffer(b))) => b.as_entire_binding(),
            (Resource::Unused, Some(Placeholder::Texture(v))) => {
                wgpu::BindingResource::TextureView(v)
            }
            (Resource::Unused, None) => unreachable!("every storage binding has a placeholder"),
        }
    }
}

/// A uniform bound where an entry point does not read the per-step values: as large as the
/// shaders' `StepValues`.
fn uniform_placeholder(device: &wgpu::Device) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("unused-uniform"),
        size: std::mem::size_of::<StepValues>() as u64,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

/// Adds a variant module's bindings to `into`; a binding both declare must be the same kind.
fn merge(into: &mut Vec<Binding>, more: Vec<Binding>, variant: &str) -> Result<()> {
    for b in more {
        match into.iter().find(|a| a.number == b.number) {
            Some(a) if a.slot == b.slot => {}
            Some(a) => {
                return Err(Error::Shader {
                    name: variant.into(),
                    message: format!(
                        "binding {} is `{}` ({:?}) here but `{}` ({:?}) in the family's module",
                        b.number, b.var, b.slot, a.var, a.slot
                    ),
                })
            }
            None => into.push(b),
        }
    }
    into.sort_by_key(|b| b.number);
    Ok(())
}

/// Whether any of the entry points `indices` reads or writes global `handle`.
fn handle_used(
    info: &naga::valid::ModuleInfo,
    indices: &[usize],
    handle: naga::Handle<naga::GlobalVariable>,
) -> bool {
    indices
        .iter()
        .any(|&i| !info.get_entry_point(i)[handle].is_empty())
}

/// The bindings that `entries` of `shader` use (naga's analysis of the globals each entry
/// point reads or writes), with their variable names and access, ordered by number; the
/// uniform at binding 0 is always among them (every launch binds its parameters).
fn used_bindings(shader: &str, entries: &[&str]) -> Result<Vec<Binding>> {
    let source = crate::shaders::source(shader)?;
    let err = |message: String| Error::Shader {
        name: shader.into(),
        message,
    };
    let module =
        naga::front::wgsl::parse_str(&source).map_err(|e| err(e.emit_to_string(&source)))?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .map_err(|e| err(e.emit_to_string(&source)))?;
    let mut indices = Vec::new();
    for entry in entries {
        let i = module.entry_points.iter().position(|e| e.name == *entry);
        indices.push(i.ok_or_else(|| err(format!("no entry point `{entry}`")))?);
    }
    let binding = |handle, g: &naga::GlobalVariable| {
        Some(Binding {
            number: g.binding.as_ref()?.binding,
            var: g.name.clone().unwrap_or_default(),
            slot: super::slot_of(&module, g)?,
        })
        .filter(|_| handle_used(&info, &indices, handle))
    };
    let mut out: Vec<Binding> = module
        .global_variables
        .iter()
        .filter_map(|(handle, g)| binding(handle, g))
        .collect();
    // Every launch binds its parameters at 0, also where an entry point reads none.
    if !out.iter().any(|b| b.number == 0) {
        let uniform = module.global_variables.iter().find(|(_, g)| {
            g.binding.as_ref().is_some_and(|b| b.binding == 0)
                && g.space == naga::AddressSpace::Uniform
        });
        if let Some((_, g)) = uniform {
            out.push(Binding {
                number: 0,
                var: g.name.clone().unwrap_or_default(),
                slot: Slot::Uniform,
            });
        }
    }
    out.sort_by_key(|b| b.number);
    if let Some(w) = out.windows(2).find(|w| w[0].number == w[1].number) {
        return Err(err(format!(
            "`{}` and `{}` share binding {} and entry points {entries:?} use both; make \
             two families",
            w[0].var, w[1].var, w[0].number
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{used_bindings, Family, Operand};
    use crate::kernels::common::Slot;

    fn numbers(shader: &str, entries: &[&str]) -> Vec<(u32, Slot)> {
        let b = used_bindings(shader, entries).unwrap();
        b.iter().map(|b| (b.number, b.slot)).collect()
    }

    /// The layouts once written by hand come out of the entry points' use of the bindings.
    #[test]
    fn a_paths_layout_is_the_bindings_its_entry_points_use() {
        use Slot::*;
        let tex = [
            "ln_modulate_forward_tex",
            "ln_modulate_backward_tex",
            "segment_sums_tex",
        ];
        let adaln = [
            (0, Uniform),
            (4, ReadWrite),
            (5, ReadWrite),
            (6, ReadWrite),
            (7, ReadTexture),
            (8, ReadTexture),
            (9, ReadTexture),
        ];
        assert_eq!(numbers("adaln", &tex), adaln);
        let pack = [(0, Uniform), (1, Read), (2, WriteTexture)];
        assert_eq!(numbers("matmul_texture", &["pack_rows4"]), pack);
        let product = [
            (0, Uniform),
            (1, ReadTexture),
            (2, ReadTexture),
            (3, Read),
            (5, WriteTexture),
        ];
        assert_eq!(
            numbers("matmul_texture", &["matmul_texture8_to_texture"]),
            product
        );
        assert!(used_bindings("adaln", &["no_such_entry"]).is_err());
        assert!(used_bindings("no_such_family", &["x"]).is_err());
        let noise = used_bindings("noise", &["label_dropout"]).unwrap();
        let names: Vec<(u32, &str, Slot)> = noise
            .iter()
            .map(|b| (b.number, b.var.as_str(), b.slot))
            .collect();
        let want = [
            (0, "P", Uniform),
            (5, "out_u32", ReadWrite),
            (6, "labels_in", Read),
            (7, "S", Uniform),
        ];
        assert_eq!(names, want);
    }

    /// A launch that names a binding the family does not have, or one binding twice, is
    /// refused with the names.
    #[test]
    fn operands_are_bound_by_the_shaders_names_once_each() {
        let device = crate::kernels::common::test_device();
        let f = Family::new(&device, "activation", &["gelu_forward"]).unwrap();
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: 256,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let params = [0u32; 4];
        let typo = [Operand::buffer("xx", &buffer, 16)];
        let e = f.bind(&device, &params, &typo).unwrap_err().to_string();
        assert!(e.contains("no binding `xx`"), "{e}");
        let twice = [Operand::buffer("x", &buffer, 16), Operand::unused("x")];
        let e = f.bind(&device, &params, &twice).unwrap_err().to_string();
        assert!(e.contains("binds `x` 2 times"), "{e}");
    }
}
