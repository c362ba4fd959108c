//! Every kernel family must translate with naga to SPIR-V, MSL and HLSL (the portable core),
//! and the SPIR-V must pass `spirv-val` when that tool is installed.

use imba::shaders;

#[test]
fn every_family_translates_to_spirv_msl_hlsl() {
    for (family, _) in shaders::FAMILIES {
        let t = shaders::translate(family).unwrap_or_else(|e| panic!("{e}"));
        check(family, &t);
    }
}

/// The GPU kernels as the launchers specialise them: both matmul blockings, and attention at
/// the smallest, an odd, the usual and the largest head size with the staged rows that fit.
#[test]
fn specialised_gpu_kernels_translate() {
    use imba::kernels::Tile;
    for t in [Tile::SMALL, Tile::LARGE] {
        let c = [
            ("TILE_M", t.m as f64),
            ("TILE_N", t.n as f64),
            ("TILE_K", t.k as f64),
            ("THREAD_M", t.thread_m as f64),
            ("THREAD_N", t.thread_n as f64),
        ];
        let out = shaders::translate_with("matmul_tiled", &c).unwrap_or_else(|e| panic!("{e}"));
        check(&format!("matmul_tiled {t:?}"), &out);
        let threads = format!(
            "[numthreads({}, {}, 1)]",
            t.n / t.thread_n,
            t.m / t.thread_m
        );
        assert!(
            out.hlsl.contains(&threads),
            "{t:?}: no {threads} in the HLSL"
        );
    }
    for (hd, rows) in [(1, 64), (3, 64), (64, 31), (128, 15)] {
        let c = [("HD", hd as f64), ("BKV", rows as f64)];
        let out = shaders::translate_with("attention_tiled", &c).unwrap_or_else(|e| panic!("{e}"));
        check(&format!("attention_tiled HD={hd}"), &out);
    }
}

/// Headers of all three, and `spirv-val` on the SPIR-V where it is installed.
fn check(family: &str, t: &shaders::Translations) {
    {
        let file: String = family
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        assert!(
            t.spirv.len() > 5 && t.spirv[0] == 0x0723_0203,
            "{family}: bad SPIR-V header"
        );
        assert!(t.msl.contains("kernel void"), "{family}: MSL has no kernel");
        assert!(
            t.hlsl.contains("[numthreads("),
            "{family}: HLSL has no compute entry"
        );
        if let Ok(out) = std::process::Command::new("spirv-val")
            .arg("--version")
            .output()
        {
            if out.status.success() {
                let path =
                    std::env::temp_dir().join(format!("imba-{file}-{}.spv", std::process::id()));
                std::fs::write(&path, bytemuck::cast_slice(&t.spirv)).unwrap();
                let v = std::process::Command::new("spirv-val")
                    .args(["--target-env", "vulkan1.1"])
                    .arg(&path)
                    .output()
                    .unwrap();
                let _ = std::fs::remove_file(&path);
                assert!(
                    v.status.success(),
                    "{family}: spirv-val failed: {}",
                    String::from_utf8_lossy(&v.stderr)
                );
            } else {
                crate::common::skip(&format!("spirv-val of {family}"), "spirv-val not usable");
            }
        } else {
            crate::common::skip(
                &format!("spirv-val of {family}"),
                "spirv-val not installed (scripts/setup.sh installs it)",
            );
        }
    }
}

/// The entry points of a family, by their WGSL names.
fn entry_points(family: &str) -> Vec<String> {
    let src = shaders::source(family).unwrap();
    let module = naga::front::wgsl::parse_str(&src).unwrap();
    module.entry_points.iter().map(|e| e.name.clone()).collect()
}

/// The specialisations the GPU paths compile besides the defaults.
fn specialisations() -> Vec<(&'static str, Vec<(&'static str, f64)>)> {
    use imba::kernels::Tile;
    let mut out = Vec::new();
    for t in [Tile::SMALL, Tile::LARGE] {
        let c = vec![
            ("TILE_M", t.m as f64),
            ("TILE_N", t.n as f64),
            ("TILE_K", t.k as f64),
            ("THREAD_M", t.thread_m as f64),
            ("THREAD_N", t.thread_n as f64),
        ];
        out.push(("matmul_tiled", c));
    }
    for (hd, rows) in [(1, 64), (3, 64), (64, 31), (128, 15)] {
        out.push((
            "attention_tiled",
            vec![("HD", hd as f64), ("BKV", rows as f64)],
        ));
    }
    out
}

/// The one construct of naga's HLSL that glslang's HLSL front end cannot parse ("array
/// constructor needs one argument per array element"): the zero value of an array written as
/// a cast of 0 to the array type, `(float4[64])0` — naga's zeroing of workgroup memory and of
/// function-local arrays (WGSL zero-initialises both); DXC and FXC accept it.
///
/// `hlsl` without its array zero casts: a statement `x = (T[N])0;` is dropped and a
/// declaration `T x[N] = (T[N])0;` loses its initialiser. Returns the text and how many.
fn strip_array_zero_casts(hlsl: &str) -> (String, usize) {
    let mut n = 0;
    let mut out = String::with_capacity(hlsl.len());
    for line in hlsl.lines() {
        let cast = line
            .find(" = (")
            .filter(|&i| line[i..].trim_end().ends_with("])0;"));
        match cast {
            Some(i) if line[..i].contains('[') => {
                out += &line[..i];
                out += ";";
                n += 1;
            }
            Some(_) => n += 1,
            None => out += line,
        }
        out.push('\n');
    }
    (out, n)
}

/// naga's HLSL of every family, at its default constants and at the specialisations the GPU
/// paths compile, through glslang's HLSL front end to SPIR-V and `spirv-val`: an independent
/// compiler reads what a DX12 driver would get. The array zero casts glslang cannot parse are
/// taken out and counted (a named skip per module), and everything else must compile.
#[test]
fn hlsl_compiles_with_glslang() {
    if std::process::Command::new("glslangValidator")
        .arg("--version")
        .output()
        .is_err()
    {
        crate::common::skip(
            "HLSL through glslang",
            "glslangValidator not installed (Debian: glslang-tools; scripts/setup.sh installs it)",
        );
        return;
    }
    let mut modules: Vec<(&str, Vec<(&str, f64)>)> = shaders::FAMILIES
        .iter()
        .map(|f| (f.0, Vec::new()))
        .collect();
    modules.extend(specialisations());
    let mut failures = Vec::new();
    let (mut compiled, mut casts_taken, mut modules_with_casts) = (0, 0, 0);
    for (family, constants) in modules {
        let label = format!("{family} {constants:?}");
        let hlsl = shaders::translate_with(family, &constants)
            .unwrap_or_else(|e| panic!("{e}"))
            .hlsl;
        let (hlsl, casts) = strip_array_zero_casts(&hlsl);
        casts_taken += casts;
        modules_with_casts += (casts > 0) as usize;
        for entry in entry_points(family) {
            match glslang_hlsl(family, &hlsl, &entry) {
                Ok(()) => compiled += 1,
                Err(e) => failures.push(format!("{label}.{entry}: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(compiled > 50, "only {compiled} entry points compiled");
    if casts_taken > 0 {
        crate::common::skip(
            &format!(
                "glslang on {casts_taken} array zero casts `(T[N])0` in {modules_with_casts} \
                 modules"
            ),
            "glslang's HLSL front end lacks casts to array types (DXC accepts them); the rest \
             of each module is compiled",
        );
    }
}

/// Compiles `entry` of `hlsl` with glslang to SPIR-V and validates it.
fn glslang_hlsl(family: &str, hlsl: &str, entry: &str) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("imba-hlsl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join(format!("{family}.hlsl"));
    let spv = dir.join(format!("{family}.{entry}.spv"));
    std::fs::write(&src, hlsl).unwrap();
    let out = std::process::Command::new("glslangValidator")
        .args([
            "-D",
            "-V",
            "-S",
            "comp",
            "--target-env",
            "vulkan1.1",
            "-e",
            entry,
            "-o",
        ])
        .arg(&spv)
        .arg(&src)
        .output()
        .unwrap();
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let first = text
            .lines()
            .find(|l| l.contains("ERROR"))
            .unwrap_or(&text)
            .to_string();
        return Err(first);
    }
    let v = std::process::Command::new("spirv-val")
        .args(["--target-env", "vulkan1.1"])
        .arg(&spv)
        .output()
        .map_err(|e| format!("spirv-val: {e}"))?;
    if !v.status.success() {
        return Err(format!("spirv-val: {}", String::from_utf8_lossy(&v.stderr)));
    }
    Ok(())
}

#[test]
fn includes_are_resolved_and_unknown_families_are_errors() {
    let src = shaders::source("loss").unwrap();
    assert!(!src.contains("//!include"));
    assert!(src.contains("fn philox4x32_10"));
    let err = shaders::source("nope").unwrap_err().to_string();
    assert!(err.contains("known: noise"), "{err}");
}

/// No module holds a NaN or infinite constant: WGSL makes a constant expression that
/// evaluates to one a shader-creation error (Tint, and so Chrome and Dawn, refuse the module),
/// though naga accepts it. Looked for: float literals that are not finite (naga folds most
/// constant expressions into literals) and `bitcast<f32>` of an integer literal whose bits
/// are a NaN or an infinity (which naga leaves unfolded).
#[test]
fn no_family_has_a_non_finite_constant() {
    use naga::{Expression as E, Literal as L};
    fn literal_bits(e: &E) -> Option<u32> {
        match e {
            E::Literal(L::U32(b)) => Some(*b),
            E::Literal(L::I32(b)) => Some(*b as u32),
            _ => None,
        }
    }
    fn non_finite(exprs: &naga::Arena<E>, e: &E) -> bool {
        match e {
            E::Literal(L::F32(v)) => !v.is_finite(),
            E::Literal(L::F64(v)) => !v.is_finite(),
            E::Literal(L::AbstractFloat(v)) => !v.is_finite(),
            E::As {
                expr,
                kind: naga::ScalarKind::Float,
                convert: None,
            } => literal_bits(&exprs[*expr]).is_some_and(|b| !f32::from_bits(b).is_finite()),
            _ => false,
        }
    }
    for (family, _) in shaders::FAMILIES {
        let src = shaders::source(family).unwrap();
        let module = naga::front::wgsl::parse_str(&src).unwrap();
        let functions = module
            .functions
            .iter()
            .map(|(_, f)| f)
            .chain(module.entry_points.iter().map(|e| &e.function));
        for f in functions {
            let bad = f
                .expressions
                .iter()
                .any(|(_, e)| non_finite(&f.expressions, e));
            assert!(
                !bad,
                "{family}: function {:?} has a NaN or infinite constant; read it at run time \
                 (e.g. bitcast<f32>() of a uniform field) instead",
                f.name
            );
        }
        assert!(
            !module
                .global_expressions
                .iter()
                .any(|(_, e)| non_finite(&module.global_expressions, e)),
            "{family}: a NaN or infinite module-scope constant"
        );
    }
}

/// Tint's WGSL is naga's with `enable subgroups;` first exactly where a family uses subgroup
/// operations (the texture matmul does; the portable families do not).
#[test]
fn tint_source_enables_subgroups_where_used() {
    for (family, _) in shaders::FAMILIES {
        let naga_src = shaders::source(family).unwrap();
        let tint = shaders::tint_source(family).unwrap();
        assert!(
            tint == naga_src || tint == format!("enable subgroups;\n{naga_src}"),
            "{family}: tint_source changed more than the directive"
        );
    }
    assert!(shaders::tint_source("matmul_texture")
        .unwrap()
        .starts_with("enable subgroups;"));
    assert_eq!(
        shaders::tint_source("loss").unwrap(),
        shaders::source("loss").unwrap()
    );
}
