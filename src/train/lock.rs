//! One writer per folder: an OS file lock on `<folder>/.lock`, held for as long as a command
//! writes there. The file names the holder (PID and command line) so that a refused writer
//! can say who it is waiting for. The operating system drops the lock when its process ends,
//! however it ends, so a lock left by a killed process never blocks.
//!
//! Within one process a folder's lock is shared: `imba compare` holds its root and each run
//! folder while the trainer, called from it, takes the run folder's lock again.

use crate::{Error, Result};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, Weak};

/// The name of the lock file inside a folder.
pub const LOCK_FILE: &str = ".lock";

/// Holds a folder's lock until dropped.
#[derive(Clone)]
pub struct FolderLock {
    _held: Arc<Held>,
    created: bool,
}

struct Held {
    file: File,
    /// The folder itself, locked too (Unix): deleting `.lock`, which looks like litter, must
    /// not let a second writer in.
    _dir: Option<File>,
    key: PathBuf,
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.file.unlock();
        let mut table = held_table();
        // Another acquire may already have replaced this entry with a live lock.
        if table.get(&self.key).is_some_and(|w| w.strong_count() == 0) {
            table.remove(&self.key);
        }
    }
}

/// The locks this process holds, by canonical folder.
static HELD: LazyLock<Mutex<HashMap<PathBuf, Weak<Held>>>> = LazyLock::new(Default::default);

/// The table, even after a thread panicked while holding it: every change to it is a single
/// insert or remove, so it is never left half-written, and a panic elsewhere must not make
/// every later run folder unlockable (or a lock's drop panic during the unwinding).
fn held_table() -> std::sync::MutexGuard<'static, HashMap<PathBuf, Weak<Held>>> {
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

impl FolderLock {
    /// Locks `dir` (created if missing) for writing, or says which process holds it.
    pub fn acquire(dir: &Path) -> Result<FolderLock> {
        Self::acquire_with(dir, false)
    }

    /// Locks `dir` (created if missing), waiting while another process holds it: for short
    /// writes that several processes may take turns at (a comparison's shared tables).
    pub fn acquire_waiting(dir: &Path) -> Result<FolderLock> {
        Self::acquire_with(dir, true)
    }

    fn acquire_with(dir: &Path, wait: bool) -> Result<FolderLock> {
        let created = !dir.exists();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "cannot create the folder", e))?;
        let key = dir
            .canonicalize()
            .map_err(|e| Error::io(dir, "cannot resolve the folder", e))?;
        let mut table = held_table();
        if let Some(held) = table.get(&key).and_then(Weak::upgrade) {
            return Ok(FolderLock {
                _held: held,
                created: false,
            });
        }
        let path = key.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, "cannot open the lock file", e))?;
        if wait {
            // The table's mutex is not held while waiting for another process.
            drop(table);
            file.lock()
                .map_err(|e| Error::io(&path, "cannot lock the folder", e))?;
            table = held_table();
        }
        match if wait { Ok(()) } else { file.try_lock() } {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(busy(dir, holder.trim()));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io(&path, "cannot lock the folder", e));
            }
        }
        let dir_lock = lock_folder(&key, wait)?;
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = writeln!(
            file,
            "pid {}\ncommand {}",
            std::process::id(),
            command_line()
        );
        let held = Arc::new(Held {
            file,
            _dir: dir_lock,
            key: key.clone(),
        });
        table.insert(key, Arc::downgrade(&held));
        Ok(FolderLock {
            _held: held,
            created,
        })
    }
}

impl FolderLock {
    /// Whether this acquire created the folder (it did not exist before).
    pub fn created(&self) -> bool {
        self.created
    }
}

/// Locks the folder itself where the system allows it (Unix: a lock on the directory's own
/// handle), so that the lock holds while the folder exists whatever happens to `.lock`.
#[cfg(unix)]
fn lock_folder(dir: &Path, wait: bool) -> Result<Option<File>> {
    let handle = File::open(dir).map_err(|e| Error::io(dir, "cannot open the folder", e))?;
    let locked = if wait {
        handle.lock().map_err(std::fs::TryLockError::Error)
    } else {
        handle.try_lock()
    };
    match locked {
        Ok(()) => Ok(Some(handle)),
        Err(std::fs::TryLockError::WouldBlock) => Err(busy(
            dir,
            "another process (its .lock file, which names it, was removed)",
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(dir, "cannot lock the folder", e)),
    }
}

#[cfg(not(unix))]
fn lock_folder(_dir: &Path, _wait: bool) -> Result<Option<File>> {
    Ok(None)
}

fn busy(dir: &Path, holder: &str) -> Error {
    let who = match holder.lines().collect::<Vec<_>>().as_slice() {
        [pid, command, ..] => format!(
            "process {} ({})",
            pid.trim_start_matches("pid "),
            command.trim_start_matches("command ")
        ),
        [one] if !one.is_empty() && !one.starts_with("pid") => one.to_string(),
        _ => "another process".into(),
    };
    Error::Busy(format!(
        "{} is being written by {who}; wait for it to finish or stop it (a stopped or killed \
         process releases the folder at once), or choose another folder",
        dir.display()
    ))
}

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_shares_its_own_lock_and_releases_it() {
        let dir = std::env::temp_dir().join(format!("imba-lock-{}", std::process::id()));
        let a = FolderLock::acquire(&dir).unwrap();
        let b = FolderLock::acquire(&dir).unwrap();
        let text = std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap();
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop((a, b));
        // Released: another open file description can take it.
        let f = File::options()
            .write(true)
            .open(dir.join(LOCK_FILE))
            .unwrap();
        f.try_lock().unwrap();
        // Now held by `f`: this process's table has none, so it is refused with the holder.
        let e = FolderLock::acquire(&dir).err().unwrap().to_string();
        assert!(e.contains("is being written by process"), "{e}");
        drop(f);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A thread that panicked while holding the process's lock table leaves the table
    /// usable: folders still lock, share and release.
    #[test]
    fn a_panic_while_the_table_is_held_leaves_it_usable() {
        let _ = std::thread::spawn(|| {
            let _table = HELD.lock();
            panic!("a panic with the lock table held");
        })
        .join();
        assert!(HELD.is_poisoned());
        let dir = std::env::temp_dir().join(format!("imba-lock-poison-{}", std::process::id()));
        let a = FolderLock::acquire(&dir).unwrap();
        let b = FolderLock::acquire(&dir).unwrap();
        drop((a, b));
        drop(FolderLock::acquire(&dir).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
