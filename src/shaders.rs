//! The WGSL sources. Kernel families live in `shaders/*.wgsl`; shared snippets in
//! `shaders/lib/` are pulled in by `//!include NAME` lines, resolved here, so engines that
//! embed our kernels get complete, self-contained WGSL from [`source`].

use crate::{Error, Result};

/// Kernel families: (name, WGSL with include lines).
pub const FAMILIES: &[(&str, &str)] = &[
    ("noise", include_str!("../shaders/noise.wgsl")),
    ("activation", include_str!("../shaders/activation.wgsl")),
    ("loss", include_str!("../shaders/loss.wgsl")),
    ("loss_vec4", include_str!("../shaders/loss_vec4.wgsl")),
    ("time_norm", include_str!("../shaders/time_norm.wgsl")),
    ("reduce", include_str!("../shaders/reduce.wgsl")),
    ("matmul", include_str!("../shaders/matmul.wgsl")),
    (
        "matmul_texture",
        include_str!("../shaders/matmul_texture.wgsl"),
    ),
    ("matmul_tiled", include_str!("../shaders/matmul_tiled.wgsl")),
    ("unfused", include_str!("../shaders/unfused.wgsl")),
    ("adaln", include_str!("../shaders/adaln.wgsl")),
    ("attention", include_str!("../shaders/attention.wgsl")),
    (
        "attention_texture",
        include_str!("../shaders/attention_texture.wgsl"),
    ),
    (
        "attention_tiled",
        include_str!("../shaders/attention_tiled.wgsl"),
    ),
    ("embed", include_str!("../shaders/embed.wgsl")),
    ("optim", include_str!("../shaders/optim.wgsl")),
    ("pair", include_str!("../shaders/pair.wgsl")),
    ("contrastive", include_str!("../shaders/contrastive.wgsl")),
];

/// Snippets that families include.
const SNIPPETS: &[(&str, &str)] = &[
    ("philox.wgsl", include_str!("../shaders/lib/philox.wgsl")),
    (
        "tree_sum.wgsl",
        include_str!("../shaders/lib/tree_sum.wgsl"),
    ),
    (
        "loss_common.wgsl",
        include_str!("../shaders/lib/loss_common.wgsl"),
    ),
    (
        "image_index.wgsl",
        include_str!("../shaders/lib/image_index.wgsl"),
    ),
    ("grid64.wgsl", include_str!("../shaders/lib/grid64.wgsl")),
    (
        "step_values.wgsl",
        include_str!("../shaders/lib/step_values.wgsl"),
    ),
    ("put.wgsl", include_str!("../shaders/lib/put.wgsl")),
    (
        "matmul_bindings.wgsl",
        include_str!("../shaders/lib/matmul_bindings.wgsl"),
    ),
    (
        "attention_bindings.wgsl",
        include_str!("../shaders/lib/attention_bindings.wgsl"),
    ),
];

/// The complete WGSL of a kernel family, includes resolved.
pub fn source(family: &str) -> Result<String> {
    let raw = FAMILIES
        .iter()
        .find(|(n, _)| *n == family)
        .map(|(_, s)| *s)
        .ok_or_else(|| Error::Shader {
            name: family.into(),
            message: format!(
                "no such kernel family; known: {}",
                FAMILIES.iter().map(|f| f.0).collect::<Vec<_>>().join(", ")
            ),
        })?;
    let mut out = String::with_capacity(raw.len() * 2);
    for line in raw.lines() {
        if let Some(name) = line.trim().strip_prefix("//!include ") {
            let snippet = SNIPPETS
                .iter()
                .find(|(n, _)| *n == name.trim())
                .ok_or_else(|| Error::Shader {
                    name: family.into(),
                    message: format!("unknown include '{name}'"),
                })?;
            out += snippet.1;
        } else {
            out += line;
        }
        out.push('\n');
    }
    Ok(out)
}

/// The complete WGSL of a family as Tint (Chrome's and Dawn's WGSL compiler) takes it: with
/// `enable subgroups;` first where the family uses subgroup operations. Tint requires that
/// directive and naga (which wgpu uses) refuses it, so [`source`] leaves it out; engines on
/// Dawn or in a browser use this one (and request the `subgroups` feature for such a family).
pub fn tint_source(family: &str) -> Result<String> {
    let src = source(family)?;
    Ok(if uses_subgroups(&src) {
        format!("enable subgroups;\n{src}")
    } else {
        src
    })
}

/// Whether a WGSL module uses subgroup operations: naga refuses it without that capability.
fn uses_subgroups(src: &str) -> bool {
    let Ok(module) = naga::front::wgsl::parse_str(src) else {
        return false;
    };
    let caps = naga::valid::Capabilities::all() - naga::valid::Capabilities::SUBGROUP;
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .validate(&module)
        .is_err()
}

/// A shader module for a family on `device`.
pub fn module(device: &wgpu::Device, family: &str) -> Result<wgpu::ShaderModule> {
    let src = source(family)?;
    Ok(device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(family),
        source: wgpu::ShaderSource::Wgsl(src.into()),
    }))
}

/// A family translated by naga to the three native shading languages.
pub struct Translations {
    /// SPIR-V words (Vulkan).
    pub spirv: Vec<u32>,
    /// Metal Shading Language source.
    pub msl: String,
    /// HLSL source (DirectX 12).
    pub hlsl: String,
}

/// Parses and validates a family with naga (with subgroup operations allowed, as on devices
/// that have them) and writes SPIR-V, MSL and HLSL for every entry point, its
/// pipeline-overridable constants at their declared defaults.
pub fn translate(family: &str) -> Result<Translations> {
    translate_with(family, &[])
}

/// [`translate`] with values for pipeline-overridable constants (e.g. a tile shape or a
/// head size the launchers compile).
pub fn translate_with(family: &str, constants: &[(&str, f64)]) -> Result<Translations> {
    use naga::back::{hlsl, msl, spv};
    let err = |stage: &str, e: String| Error::Shader {
        name: family.into(),
        message: format!("{stage}: {e}"),
    };
    let src = source(family)?;
    let module =
        naga::front::wgsl::parse_str(&src).map_err(|e| err("parse", e.emit_to_string(&src)))?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .map_err(|e| err("validate", e.emit_to_string(&src)))?;

    let constants: naga::back::PipelineConstants = constants
        .iter()
        .map(|&(name, value)| (name.to_string(), value))
        .collect();
    let (module, info) =
        naga::back::pipeline_constants::process_overrides(&module, &info, None, &constants)
            .map_err(|e| err("overrides", e.to_string()))?;
    // Subgroup operations need SPIR-V 1.3 (Vulkan 1.1) and HLSL shader model 6.0 (wave
    // intrinsics); the portable families keep the lowest versions.
    let portable = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all() - naga::valid::Capabilities::SUBGROUP,
    )
    .validate(&module)
    .is_ok();
    let spv_opts = spv::Options {
        lang_version: if portable { (1, 0) } else { (1, 3) },
        ..Default::default()
    };
    let spirv = spv::write_vec(&module, &info, &spv_opts, None)
        .map_err(|e| err("SPIR-V", e.to_string()))?;

    let msl_opts = msl::Options {
        lang_version: (2, 1),
        ..Default::default()
    };
    let pipeline = msl::PipelineOptions::default();
    let (msl, _) = msl::write_string(&module, &info, &msl_opts, &pipeline)
        .map_err(|e| err("MSL", e.to_string()))?;

    let hlsl_opts = hlsl::Options {
        shader_model: if portable {
            hlsl::ShaderModel::V5_1
        } else {
            hlsl::ShaderModel::V6_0
        },
        ..Default::default()
    };
    let mut hlsl = String::new();
    let pipeline = hlsl::PipelineOptions::default();
    hlsl::Writer::new(&mut hlsl, &hlsl_opts, &pipeline)
        .write(&module, &info, None)
        .map_err(|e| err("HLSL", e.to_string()))?;
    Ok(Translations { spirv, msl, hlsl })
}
