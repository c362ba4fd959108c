//! Which command's output a folder holds, told by the files only that command writes, so that
//! no command writes into a folder another one owns: a training run, a comparison's root,
//! a set of samples, InvDiff's or SeedSelect's outputs. Each command checks its `--out`
//! before it writes anything.

use crate::{Error, Result};
use std::path::Path;

/// The kinds of output folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// `imba train` (and each run of a comparison).
    TrainRun,
    /// The root of `imba compare`.
    Comparison,
    /// `imba sample`, or a training run's `samples/`.
    Samples,
    /// `imba invdiff`.
    InvDiff,
    /// `imba seedselect`.
    SeedSelect,
}

impl OutputKind {
    const ALL: [OutputKind; 5] = [
        OutputKind::TrainRun,
        OutputKind::Comparison,
        OutputKind::Samples,
        OutputKind::InvDiff,
        OutputKind::SeedSelect,
    ];

    /// Files (or folders) only this kind writes at the top of its folder.
    fn markers(self) -> &'static [&'static str] {
        match self {
            OutputKind::TrainRun => &[
                "checkpoint.safetensors",
                "checkpoint.prev.safetensors",
                "config.toml",
                "model.safetensors",
                "split.json",
            ],
            OutputKind::Comparison => &["compare.json", "compare.md", "raw.jsonl"],
            OutputKind::Samples => &["provenance.json", "samples.safetensors"],
            OutputKind::InvDiff => &["delta.safetensors", "groups.safetensors"],
            OutputKind::SeedSelect => &["selected", "plain"],
        }
    }

    /// What the kind is called in messages.
    pub fn describe(self) -> &'static str {
        match self {
            OutputKind::TrainRun => "a training run",
            OutputKind::Comparison => "a comparison (imba compare)",
            OutputKind::Samples => "samples (imba sample)",
            OutputKind::InvDiff => "InvDiff's outputs (imba invdiff)",
            OutputKind::SeedSelect => "SeedSelect's outputs (imba seedselect)",
        }
    }
}

/// The kind of output `dir` holds and the file that tells it, if any.
pub fn kind_of(dir: &Path) -> Option<(OutputKind, &'static str)> {
    OutputKind::ALL.into_iter().find_map(|k| {
        k.markers()
            .iter()
            .find(|m| dir.join(m).exists())
            .map(|&m| (k, m))
    })
}

/// Refuses to write `mine` into a folder that holds another command's output.
pub fn check(dir: &Path, mine: OutputKind) -> Result<()> {
    match kind_of(dir) {
        Some((other, marker)) if other != mine => Err(Error::Config(format!(
            "{} holds {} ({marker}); writing {} there would mix the two. Choose another --out",
            dir.display(),
            other.describe(),
            mine.describe()
        ))),
        _ => Ok(()),
    }
}

/// Refuses an output folder inside a data set's folder: its files would become data (an image
/// folder's label folders are read recursively by the next run).
pub fn check_outside_data(out: &Path, data: &Path) -> Result<()> {
    let (Ok(data), Ok(out)) = (data.canonicalize(), absolute(out)) else {
        return Ok(());
    };
    if out.starts_with(&data) {
        return Err(Error::Config(format!(
            "--out {} lies inside the data set {}: what the run writes would be read as data by \
             the next run. Choose a folder outside it",
            out.display(),
            data.display()
        )));
    }
    Ok(())
}

/// `p` made absolute, through its nearest existing ancestor (resolving links there), with the
/// rest appended: a folder that does not exist yet compares like one that does.
fn absolute(p: &Path) -> std::io::Result<std::path::PathBuf> {
    let p = std::path::absolute(p)?;
    let mut existing = p.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => break,
        }
    }
    let mut out = existing.canonicalize()?;
    for name in rest.into_iter().rev() {
        out.push(name);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_told_by_their_files() {
        let dir = std::env::temp_dir().join(format!("imba-kinds-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(kind_of(&dir), None);
        check(&dir, OutputKind::InvDiff).unwrap();
        std::fs::write(dir.join("model.safetensors"), b"x").unwrap();
        assert_eq!(kind_of(&dir).map(|k| k.0), Some(OutputKind::TrainRun));
        check(&dir, OutputKind::TrainRun).unwrap();
        let e = check(&dir, OutputKind::InvDiff).unwrap_err().to_string();
        assert!(
            e.contains("a training run") && e.contains("model.safetensors"),
            "{e}"
        );
        // Inside a data set, also when the output folder does not exist yet.
        let data = dir.join("data");
        std::fs::create_dir_all(data.join("cat")).unwrap();
        let inside = data.join("cat").join("new").join("deeper");
        assert!(check_outside_data(&inside, &data).is_err());
        assert!(check_outside_data(&dir.join("elsewhere"), &data).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
