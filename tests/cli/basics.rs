//! The command line as a user runs it.

use crate::{imba, imba_env, tempdir};

#[test]
fn info_names_adapter_and_limits() {
    let (ok, out) = imba(&["info"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("adapter")
            && out.contains("max storage binding")
            && out.contains("timestamps")
            && out.contains("kernel paths"),
        "{out}"
    );
    let (ok, out) = imba_env(&["info"], &[("IMBA_PATHS", "portable")]);
    assert!(
        ok && out.contains("Portable (forced by IMBA_PATHS)"),
        "{out}"
    );
    // The option reaches the device's workflow without the environment.
    let (ok, out) = imba_env(&["--paths", "tiled", "info"], &[]);
    assert!(ok && out.contains("Tiled (forced by --paths)"), "{out}");
}

/// `info --adapters` lists the test adapter with its limits and paths; `--limits webgpu`
/// opens a device with WebGPU's default limits; `--backend` takes only API names.
#[test]
fn info_lists_adapters_and_takes_backend_and_limits() {
    let (ok, out) = imba(&["info", "--adapters"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("[0] ")
            && out.contains("storage buffers/stage")
            && out.contains("paths")
            && out.contains("matmul"),
        "{out}"
    );
    let (ok, out) = imba(&["--limits", "webgpu", "info"]);
    assert!(ok && out.contains("storage buffers per stage  8"), "{out}");
    let (ok, out) = imba(&["--backend", "vulkan", "info"]);
    assert!(ok && out.contains("backend        Vulkan"), "{out}");
    let (ok, out) = imba(&["--backend", "glide", "info"]);
    assert!(
        !ok && out.contains("use vulkan, metal, dx12 or gl"),
        "{out}"
    );
    let (ok, out) = imba(&["--limits", "huge", "info"]);
    assert!(!ok && out.contains("use adapter or webgpu"), "{out}");
}

/// With no Vulkan driver to find, the default adapter is OpenGL over llvmpipe (where Mesa's
/// GL driver is installed): the run goes on and says how to get the ~11× faster path; a
/// backend the user names gets no such note.
#[test]
fn opengl_over_a_cpu_says_how_to_get_vulkan() {
    let hide_vulkan = [("VK_ICD_FILENAMES", "/nonexistent/icd.json")];
    let (ok, out) = imba_env(&["info"], &hide_vulkan);
    if !(ok && out.contains("backend        Gl")) {
        crate::common::skip(
            "opengl_over_a_cpu_says_how_to_get_vulkan",
            "no OpenGL adapter without Vulkan here (scripts/setup.sh --portability installs one)",
        );
        return;
    }
    assert!(
        out.contains("note: ") && out.contains("mesa-vulkan-drivers"),
        "{out}"
    );
    let (ok, out) = imba_env(&["--backend", "gl", "info"], &hide_vulkan);
    assert!(ok && !out.contains("note: "), "{out}");
    let named = [hide_vulkan[0], ("WGPU_BACKEND", "gl")];
    let (ok, out) = imba_env(&["info"], &named);
    assert!(ok && !out.contains("note: "), "{out}");
    let (ok, out) = imba(&["info"]);
    assert!(ok && !out.contains("mesa-vulkan-drivers"), "{out}");
}

/// The memory report: DiT-S/2 has the paper's 33M parameters; the dual forward saves twice
/// the activations of a single one; the arena's bytes follow the plan the allocation uses.
#[test]
fn info_reports_model_memory() {
    let (ok, out) = imba(&["info", "--model", "S/2", "--batch", "8"]);
    assert!(ok, "{out}");
    assert!(out.contains("parameters       32858896 values"), "{out}");
    assert!(
        out.contains("2 label sets (dual forward) = 16 rows"),
        "{out}"
    );
    let single = imba::model::MemoryReport::new(
        &imba::model::DitConfig::preset("S/2", 32, 4, 1000).unwrap(),
        8,
        1,
    );
    let dual = imba::model::MemoryReport::new(
        &imba::model::DitConfig::preset("S/2", 32, 4, 1000).unwrap(),
        8,
        2,
    );
    // Blocks' activations double; only the shared patch/timestep embeddings do not.
    assert_eq!(dual.per_block_bytes, 2 * single.per_block_bytes);
    assert!(dual.activation_bytes < 2 * single.activation_bytes);
    let (ok, out) = imba(&["info", "--model", "S/3"]);
    assert!(!ok && out.contains("unknown model 'S/3'"), "{out}");
}

#[test]
fn bad_arguments_are_clear_errors() {
    let (ok, out) = imba(&["--adapter", "no-such-gpu", "info"]);
    assert!(!ok && out.contains("no adapter name contains"), "{out}");
    let (ok, out) = imba(&["bench", "kernels", "--size", "1,2,3"]);
    assert!(!ok && out.contains("B,C,H,W,p"), "{out}");
}

/// The pipeline cache file is written at exit; a damaged one is ignored and replaced, and
/// `IMBA_PIPELINE_CACHE=off` writes nothing.
#[test]
fn pipeline_cache_survives_damage_and_can_be_turned_off() {
    let dir = tempdir("pipeline-cache");
    let cache = dir.to_str().unwrap();
    let args = [
        "bench", "dit", "--model", "tiny", "--batch", "1", "--reps", "1", "--warmup", "0",
    ];
    let files = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "bin"))
            .collect()
    };
    let (ok, out) = imba_env(&args, &[("IMBA_PIPELINE_CACHE", cache)]);
    assert!(ok, "{out}");
    let written = files();
    if written.is_empty() {
        crate::common::skip(
            "pipeline_cache_survives_damage_and_can_be_turned_off",
            "the adapter has no pipeline cache (wgpu offers one on Vulkan only)",
        );
        return;
    }
    let good = std::fs::read(&written[0]).unwrap();
    std::fs::write(&written[0], b"imbapc01 not what was written").unwrap();
    let (ok, out) = imba_env(&args, &[("IMBA_PIPELINE_CACHE", cache)]);
    assert!(ok, "a damaged cache must be ignored: {out}");
    assert_eq!(std::fs::read(&written[0]).unwrap().len(), good.len());
    let off = tempdir("pipeline-cache-off");
    let (ok, out) = imba_env(
        &args,
        &[
            ("IMBA_PIPELINE_CACHE", "off"),
            ("HOME", off.to_str().unwrap()),
            ("XDG_CACHE_HOME", off.to_str().unwrap()),
        ],
    );
    assert!(ok, "{out}");
    assert!(
        !off.join("imba").exists(),
        "the cache is off, yet imba wrote one"
    );
}

/// `bench torch` refuses unknown work before looking for PyTorch, and names a Python that
/// cannot be run.
#[test]
fn bench_torch_refuses_bad_work_and_a_missing_python() {
    let (ok, out) = imba(&[
        "bench",
        "torch",
        "--python",
        "/nonexistent/python",
        "--work",
        "gemm",
    ]);
    assert!(
        !ok && out.contains("unknown work 'gemm'") && out.contains("step-s2"),
        "{out}"
    );
    let (ok, out) = imba(&[
        "bench",
        "torch",
        "--python",
        "/nonexistent/python",
        "--work",
        "loss",
    ]);
    assert!(!ok && out.contains("/nonexistent/python"), "{out}");
}

/// A forcing value that is not a path is refused by name.
#[test]
fn bad_kernel_path_choice_is_refused() {
    let (ok, out) = imba_env(&["bench", "dit", "--reps", "1"], &[("IMBA_PATHS", "gpu")]);
    assert!(
        !ok && out.contains("IMBA_PATHS") && out.contains("portable, texture or tiled"),
        "{out}"
    );
}

/// The roofline prints per-family rows and refuses a batch of zero or non-positive peaks.
#[test]
fn roofline_prints_and_refuses_bad_numbers() {
    let (ok, out) = imba(&["info", "--model", "S/2", "--batch", "2", "--roofline"]);
    assert!(
        ok && out.contains("| matmul |") && out.contains("| step |"),
        "{out}"
    );
    let (ok, out) = imba(&["info", "--model", "S/2", "--batch", "0", "--roofline"]);
    assert!(!ok && out.contains("--batch must be at least 1"), "{out}");
    let (ok, out) = imba(&["info", "--model", "S/2", "--roofline", "--peak-tbs", "0"]);
    assert!(!ok && out.contains("must both be positive"), "{out}");
}
