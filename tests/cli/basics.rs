//! The command line as a user runs it.

use crate::imba;

#[test]
fn info_names_adapter_and_limits() {
    let (ok, out) = imba(&["info"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("adapter")
            && out.contains("max storage binding")
            && out.contains("timestamps"),
        "{out}"
    );
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
