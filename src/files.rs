//! Writing files so that a crash, a signal or a full disk never leaves a half-written one.
//!
//! Every output goes to `<name>.tmp` in the same folder, is flushed to disk, and is then
//! renamed over the old file: at any moment the file is either the old one or the new one,
//! whole. A write that fails removes its temporary file, and a full disk is reported with the
//! file and the space it needed.

use crate::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The temporary name a file is written under before it is renamed into place.
pub fn temporary(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `bytes` to `path` atomically (see the module docs).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temporary(path);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(write_error(path, bytes.len(), e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, "cannot rename the new file into place", e));
    }
    sync_folder(path);
    Ok(())
}

/// Writes a file atomically, naming it in the error.
pub fn write_file(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    write_atomic(path, bytes.as_ref())
}

/// Writes a value as pretty JSON, atomically, naming the file in the error.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    write_file(
        path,
        serde_json::to_string_pretty(value).expect("serialisable"),
    )
}

/// The error of a failed write: a full disk names the space needed and what is kept.
pub fn write_error(path: &Path, len: usize, e: std::io::Error) -> Error {
    if is_disk_full(&e) {
        let what = format!(
            "no space left on the device: writing it needs {} ({len} bytes); the previous \
             version of the file, if any, is kept. Free space and run the command again (a \
             training run continues from its last checkpoint with --resume)",
            human_bytes(len as u64)
        );
        return Error::io(path, what, e);
    }
    Error::io(path, "cannot write", e)
}

/// Whether an I/O error means the disk (or a quota) is full.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// Makes a rename durable where the platform allows opening a folder.
fn sync_folder(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// `1.5 MiB`, `320.0 KiB`, `12 B`, `20.63 GiB` (two decimals from GiB up).
pub fn human_bytes(n: u64) -> String {
    let b = n as f64;
    const KIB: f64 = 1024.0;
    if b >= KIB * KIB * KIB {
        format!("{:.2} GiB", b / (KIB * KIB * KIB))
    } else if b >= KIB * KIB {
        format!("{:.1} MiB", b / (KIB * KIB))
    } else if b >= KIB {
        format!("{:.1} KiB", b / KIB)
    } else {
        format!("{n} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_files_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("imba-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert!(!temporary(&p).exists());
        // A folder that does not exist: the error names the file, nothing is left behind.
        let missing = dir.join("no/such/b.json");
        let e = write_atomic(&missing, b"x").unwrap_err().to_string();
        assert!(e.contains("b.json"), "{e}");
        assert!(!temporary(&missing).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
        assert_eq!(human_bytes(22_150 << 20), "21.63 GiB");
    }
}
