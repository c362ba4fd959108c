//! Compiled pipelines kept across runs, where the adapter allows it (wgpu's pipeline cache;
//! Vulkan today). Kernels made inside [`with_pipeline_cache`] compile their pipelines with
//! the given cache; [`Gpu::with_pipeline_cache`](super::Gpu::with_pipeline_cache) runs a
//! closure with the cache `Gpu` keeps in a file. The cache is passed by scope, not looked up
//! by device: wgpu's device handles compare equal across instances, so a registry keyed by
//! device could hand one device another's cache.
//!
//! The file is `pipelines-<adapter key>.bin` in `IMBA_PIPELINE_CACHE` (a directory; `off`
//! turns the cache off), else `$XDG_CACHE_HOME/imba`, else `~/.cache/imba`. It holds the
//! driver's data behind a header with its length and a checksum: a truncated or altered file
//! is ignored (and replaced at exit), never handed to the driver. It is written to a
//! temporary name and renamed, so a killed process or two runs at once leave a whole file.

use std::cell::RefCell;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;

thread_local! {
    /// The cache of the innermost [`with_pipeline_cache`] on this thread.
    static CURRENT: RefCell<Option<wgpu::PipelineCache>> = const { RefCell::new(None) };
}

/// Runs `f` with `cache` as the pipeline cache of every kernel family made (and every pipeline
/// compiled) on this thread meanwhile. `cache` must belong to the device those kernels are
/// made for.
pub fn with_pipeline_cache<R>(cache: &wgpu::PipelineCache, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<wgpu::PipelineCache>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| *c.borrow_mut() = self.0.take());
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.borrow_mut().replace(cache.clone())));
    f()
}

/// The cache pipelines compiled now use, if any.
pub(crate) fn pipeline_cache() -> Option<wgpu::PipelineCache> {
    CURRENT.with(|c| c.borrow().clone())
}

const MAGIC: &[u8; 8] = b"imbapc01";

/// A pipeline cache loaded from, and saved back to, one file.
pub(crate) struct DiskCache {
    pub(crate) cache: wgpu::PipelineCache,
    path: PathBuf,
}

impl DiskCache {
    /// The cache of `device`'s adapter; `None` where the device lacks the feature, the
    /// adapter has no cache key, the cache is off or has no home.
    pub(crate) fn open(device: &wgpu::Device, info: &wgpu::AdapterInfo) -> Option<Self> {
        if !device.features().contains(wgpu::Features::PIPELINE_CACHE) {
            return None;
        }
        let key = wgpu::util::pipeline_cache_key(info)?;
        let path = dir()?.join(format!("pipelines-{key}.bin"));
        let data = std::fs::read(&path).ok().and_then(|f| unwrap(&f));
        // SAFETY: `data` is what `PipelineCache::get_data` returned for an adapter with this
        // key, as the header's length and checksum confirm (an altered file is dropped
        // above); wgpu checks the adapter, driver and version again and ignores data that
        // does not match (`fallback`).
        let cache = unsafe {
            device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
                label: Some("imba pipelines"),
                data: data.as_deref(),
                fallback: true,
            })
        };
        Some(Self { cache, path })
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Writes the cache's current data to its file (whole, or not at all).
    pub(crate) fn save(&self) -> std::io::Result<()> {
        let Some(data) = self.cache.get_data() else {
            return Ok(());
        };
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, wrap(&data))?;
        std::fs::rename(&tmp, &self.path)
    }
}

impl Drop for DiskCache {
    fn drop(&mut self) {
        // A cache that cannot be written only costs the next run its compile time.
        let _ = self.save();
    }
}

/// Where cache files live, or `None` when the cache is off or there is no home for it.
fn dir() -> Option<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    match env("IMBA_PIPELINE_CACHE") {
        Some(v) if v == "off" => None,
        Some(v) => Some(v.into()),
        None => env("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("imba")),
    }
}

fn checksum(data: &[u8]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    data.hash(&mut h);
    h.finish()
}

/// MAGIC, length (u64 LE), checksum (u64 LE), data.
fn wrap(data: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend((data.len() as u64).to_le_bytes());
    out.extend(checksum(data).to_le_bytes());
    out.extend(data);
    out
}

/// The data of a file [`wrap`] wrote, or `None` for anything else.
fn unwrap(file: &[u8]) -> Option<Vec<u8>> {
    let (magic, rest) = file.split_at_checked(8)?;
    let (len, rest) = rest.split_at_checked(8)?;
    let (sum, data) = rest.split_at_checked(8)?;
    let ok = magic == MAGIC
        && u64::from_le_bytes(len.try_into().ok()?) == data.len() as u64
        && u64::from_le_bytes(sum.try_into().ok()?) == checksum(data);
    ok.then(|| data.to_vec())
}

#[cfg(test)]
mod tests {
    use super::{unwrap, wrap};

    #[test]
    fn wrapped_data_round_trips_and_damage_is_refused() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let file = wrap(&data);
        assert_eq!(unwrap(&file).as_deref(), Some(&data[..]));
        assert_eq!(unwrap(&file[..file.len() - 1]), None, "truncated");
        let mut flipped = file.clone();
        flipped[30] ^= 1;
        assert_eq!(unwrap(&flipped), None, "one bit changed");
        assert_eq!(unwrap(b"imbapc01"), None, "header only");
        assert_eq!(unwrap(b""), None, "empty");
    }
}
