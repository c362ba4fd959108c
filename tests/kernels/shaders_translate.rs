//! Every kernel family must translate with naga to SPIR-V, MSL and HLSL (the portable core),
//! and the SPIR-V must pass `spirv-val` when that tool is installed.

use imba::shaders;

#[test]
fn every_family_translates_to_spirv_msl_hlsl() {
    for (family, _) in shaders::FAMILIES {
        let t = shaders::translate(family).unwrap_or_else(|e| panic!("{e}"));
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
                    std::env::temp_dir().join(format!("imba-{family}-{}.spv", std::process::id()));
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
