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

#[test]
fn includes_are_resolved_and_unknown_families_are_errors() {
    let src = shaders::source("loss").unwrap();
    assert!(!src.contains("//!include"));
    assert!(src.contains("fn philox4x32_10"));
    let err = shaders::source("nope").unwrap_err().to_string();
    assert!(err.contains("known: noise"), "{err}");
}
