//! Every launcher's uniform struct (Rust, `#[repr(C)]`) has the size and field offsets of the
//! WGSL struct of the same name, as naga lays it out. The two are written by hand on both
//! sides, so this is the check that they agree: same names, same offsets, same size. Fields
//! whose names start with `pad` or `_pad` are padding on either side and are not compared
//! by name.

use super::{
    activation, adaln, attention, contrastive, embed, loss, matmul, noise, optim, pair, reduce,
    step_values,
};
use std::mem::{offset_of, size_of};

/// One Rust uniform struct: its family, name, size and (field, offset) list.
struct RustLayout {
    family: &'static str,
    name: &'static str,
    size: usize,
    fields: Vec<(&'static str, usize)>,
}

macro_rules! layout {
    ($family:expr, $t:ty, [$($f:ident),* $(,)?]) => {
        RustLayout {
            family: $family,
            name: stringify!($t).rsplit("::").next().unwrap().trim(),
            size: size_of::<$t>(),
            fields: vec![$((stringify!($f), offset_of!($t, $f))),*],
        }
    };
}

#[rustfmt::skip]
fn rust_layouts() -> Vec<RustLayout> {
    vec![
        layout!("activation", activation::ActParams, [n, accumulate, groups_x]),
        layout!("adaln", adaln::AdaParams, [rows, dim, tokens, mod_stride, shift_col, scale_col, gate_col, accumulate, groups_x, eps, a_stride, a_col, b_stride, b_col, out_stride, out_col, use_b, segments, chunk_rows, chunks]),
        layout!("attention", attention::AttnParams, [samples, tokens, heads, head_dim, dim, scale, groups_x]),
        layout!("attention_tiled", attention::AttnParams, [samples, tokens, heads, head_dim, dim, scale, groups_x]),
        layout!("attention_texture", attention::AttnTexParams, [samples, tokens, heads, head_dim, dim, scale, groups_x, texels]),
        layout!("contrastive", contrastive::ContrastiveParams, [batch, features, base, out_base, tau, scale, accumulate, groups_x]),
        layout!("embed", embed::EmbedParams, [len, repeats, period, rows, batch, dim, slots, table_rows, accumulate, groups_x]),
        layout!("loss", loss::LossParams, [batch, tokens, token_dim, target_source, channels, height, width, patch_size, seed, target_kind, d_form, weights_from_buffer, normalize, groups_x, partial_count, gamma, lambda, inv_count, tokens_per_thread, quad_base]),
        layout!("loss_vec4", loss::LossParams, [batch, tokens, token_dim, target_source, channels, height, width, patch_size, seed, target_kind, d_form, weights_from_buffer, normalize, groups_x, partial_count, gamma, lambda, inv_count, tokens_per_thread, quad_base]),
        layout!("time_norm", loss::TimeNormParams, [batch, tokens, buckets, decay]),
        layout!("matmul", matmul::MatmulParams, [m, n, k, a_row, a_col, b_row, b_col, use_bias, accumulate, groups_x]),
        layout!("matmul_tiled", matmul::MatmulParams, [m, n, k, a_row, a_col, b_row, b_col, use_bias, accumulate, groups_x]),
        layout!("matmul_texture", matmul::PackParams, [rows, cols, row_stride, col_stride, row_offset, width, height, groups_x]),
        layout!("matmul_texture", matmul::ProductParams, [m, n, k4, row_offset, use_bias, accumulate]),
        layout!("noise", noise::NoiseParams, [batch, channels, height, width, patch_size, seed, schedule, steps_in_table, total, groups_x, drop_threshold, null_label, quad_base, nan_bits ]),
        layout!("optim", optim::OptimParams, [n, chunk, partials, groups_x, beta1, beta2, eps, weight_decay, max_norm, use_clip ]),
        layout!("pair", pair::PairParams, [half, per_sample, ka, kb, inv_count, accumulate, groups_x, partial_count ]),
        layout!("reduce", reduce::ReduceParams, [items, width, chunk, groups_x]),
        layout!("noise", step_values::StepValues, [step, lr, bias_correction1, bias_correction2, ema_decay]),
        layout!("loss", step_values::StepValues, [step, lr, bias_correction1, bias_correction2, ema_decay]),
        layout!("loss_vec4", step_values::StepValues, [step, lr, bias_correction1, bias_correction2, ema_decay]),
        layout!("optim", step_values::StepValues, [step, lr, bias_correction1, bias_correction2, ema_decay]),
    ]
}

/// The WGSL struct `name` of `family`: its span and (member, offset) list.
fn wgsl_layout(family: &str, name: &str) -> (u32, Vec<(String, u32)>) {
    let src = crate::shaders::source(family).unwrap();
    let module = naga::front::wgsl::parse_str(&src).unwrap();
    let ty = module
        .types
        .iter()
        .find(|(_, t)| t.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("{family}.wgsl has no struct {name}"))
        .1;
    match &ty.inner {
        naga::TypeInner::Struct { members, span } => (
            *span,
            members
                .iter()
                .map(|m| (m.name.clone().unwrap_or_default(), m.offset))
                .collect(),
        ),
        other => panic!("{family}: {name} is not a struct: {other:?}"),
    }
}

fn is_pad(name: &str) -> bool {
    name.starts_with("pad") || name.starts_with("_pad")
}

#[test]
fn rust_uniform_structs_match_their_wgsl_layouts() {
    let mut problems = Vec::new();
    for r in rust_layouts() {
        let (span, members) = wgsl_layout(r.family, r.name);
        if span as usize != r.size {
            problems.push(format!(
                "{}::{}: Rust size {} vs WGSL span {span}",
                r.family, r.name, r.size
            ));
        }
        let named: Vec<_> = members.iter().filter(|(n, _)| !is_pad(n)).collect();
        for (name, offset) in &named {
            match r.fields.iter().find(|(f, _)| f == name) {
                Some((_, o)) if *o == *offset as usize => {}
                Some((_, o)) => problems.push(format!(
                    "{}::{}.{name}: Rust offset {o} vs WGSL {offset}",
                    r.family, r.name
                )),
                None if r.fields.len() == named.len() => problems.push(format!(
                    "{}::{}.{name}: no Rust field of that name",
                    r.family, r.name
                )),
                None => {}
            }
        }
        for (f, _) in &r.fields {
            if !members.iter().any(|(n, _)| n == f) {
                problems.push(format!(
                    "{}::{}.{f}: not in the WGSL struct",
                    r.family, r.name
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "uniform layouts disagree:\n{}",
        problems.join("\n")
    );
}

/// Every `const NAME: u32 = Nu;` of a family's module (its includes resolved), by name.
fn wgsl_u32_constants(family: &str) -> Vec<(String, u32)> {
    let source = crate::shaders::source(family).expect("a family's source");
    let module = naga::front::wgsl::parse_str(&source).expect("valid WGSL");
    module
        .constants
        .iter()
        .filter_map(|(_, c)| {
            let value = match module.global_expressions[c.init] {
                naga::Expression::Literal(naga::Literal::U32(v)) => v,
                _ => return None,
            };
            Some((c.name.clone()?, value))
        })
        .collect()
}

/// The values the launchers put in the uniforms' selector fields (`d_form`, `target_source`,
/// `target_kind`) are the WGSL's constants of the same names, in every module that reads
/// them.
#[test]
fn the_loss_selectors_are_the_wgsl_constants() {
    for family in ["loss", "loss_vec4"] {
        let wgsl = wgsl_u32_constants(family);
        for (name, value) in loss::wgsl::ALL {
            let found = wgsl.iter().find(|(n, _)| n == name);
            assert_eq!(
                found.map(|(_, v)| *v),
                Some(value),
                "{family}.wgsl's {name} against the launcher's {value}"
            );
        }
    }
}

#[test]
fn the_constant_check_reads_values() {
    let wgsl = wgsl_u32_constants("loss");
    assert!(
        wgsl.iter().any(|(n, v)| n == "D_FORM_TOKEN_MSE" && *v == 4),
        "{wgsl:?}"
    );
}
