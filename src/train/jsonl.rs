//! The run's JSONL logs read back: every line that parses, and a resume's cut back to its step.

use crate::Result;
use std::path::Path;

/// Keeps the lines of a JSONL log whose `step` is ≤ `step` (a resume redoes the later ones).
pub(crate) fn truncate_log(path: &Path, step: u32) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("step")?.as_u64())
                .is_some_and(|s| s <= step as u64)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    crate::files::write_atomic(path, kept.as_bytes())
}

/// Reads the lines of a JSONL file that parse as `T` (none if the file is missing).
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
