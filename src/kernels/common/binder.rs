//! The bind-group cache every family launches through, and the aliasing checks a launch
//! passes before it binds: one buffer bound both ways, or two written ranges that overlap.

use super::{bind_group, Layout, Region, LAUNCH_OBJECTS};
use crate::{Error, Result};
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use wgpu::util::DeviceExt;

/// A resource bound in a bind group, by identity.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Bound {
    Buffer(wgpu::Buffer, u64, Option<NonZeroU64>),
    View(wgpu::TextureView),
}

/// What makes two bind groups the same: the layout, the bytes of the uniforms made for the
/// launch (its parameters at binding 0, and any other made from values) and the resources at
/// each binding.
#[derive(Clone, PartialEq, Eq, Hash)]
struct BindKey {
    layout: wgpu::BindGroupLayout,
    uniforms: Vec<(u32, Vec<u8>)>,
    entries: Vec<(u32, Bound)>,
}

/// A cached bind group and the release epoch in which a launch last used it.
type Cached = HashMap<BindKey, (wgpu::BindGroup, u64)>;

/// The epoch of [`release_unused_bindings`]: every cached group remembers the epoch of its
/// last use.
static EPOCH: AtomicU64 = AtomicU64::new(0);

/// Every live family's cache, so that one call releases what all of them hold.
static CACHES: Mutex<Vec<Weak<Mutex<Cached>>>> = Mutex::new(Vec::new());

/// Drops every cached bind group (in every kernel family of the process) that no launch used
/// since the previous call, and returns how many were dropped. A cached group holds its
/// buffers: a buffer the caller dropped is freed once no cached group binds it. Call it once
/// per step or frame; launches that repeat keep their groups (and create nothing new).
pub fn release_unused_bindings() -> usize {
    let epoch = EPOCH.fetch_add(1, Ordering::Relaxed);
    let mut caches = CACHES.lock().unwrap_or_else(|e| e.into_inner());
    caches.retain(|w| w.strong_count() > 0);
    let mut dropped = 0;
    for cache in caches.iter().filter_map(Weak::upgrade) {
        let mut groups = cache.lock().unwrap_or_else(|e| e.into_inner());
        let before = groups.len();
        groups.retain(|_, (_, used)| *used >= epoch);
        dropped += before - groups.len();
    }
    dropped
}

/// A family's cache of bind groups with their uniform buffers, keyed by [`BindKey`]. A launch
/// with parameters and buffers it has seen reuses the bind group (the uniform is immutable:
/// its bytes are part of the key), so a training step that repeats the last one creates no
/// GPU objects for them. Cached groups keep their buffers alive until
/// [`release_unused_bindings`] drops those no launch used since its previous call; without
/// it the cache is emptied when it reaches [`Binder::CAPACITY`] entries, which bounds what it
/// holds.
pub(crate) struct Binder {
    groups: Arc<Mutex<Cached>>,
}

impl Default for Binder {
    fn default() -> Self {
        let groups = Arc::new(Mutex::new(Cached::new()));
        let mut caches = CACHES.lock().unwrap_or_else(|e| e.into_inner());
        caches.retain(|w| w.strong_count() > 0);
        caches.push(Arc::downgrade(&groups));
        Self { groups }
    }
}

impl Binder {
    const CAPACITY: usize = 4096;

    /// The bind group of `layout` with a uniform made from each of `uniforms` (binding,
    /// bytes; the parameters at binding 0 first) and `entries`. `check` (the operands against
    /// the device and against each other) runs only when the group is new: a cached group's
    /// buffers, offsets and sizes, all in its key, passed it when it was made.
    pub(crate) fn bind_uniforms(
        &self,
        device: &wgpu::Device,
        layout: &Layout,
        uniforms: Vec<(u32, Vec<u8>)>,
        entries: Vec<(u32, wgpu::BindingResource<'_>)>,
        check: impl FnOnce() -> Result<()>,
    ) -> Result<wgpu::BindGroup> {
        let bound = entries
            .iter()
            .map(|(binding, resource)| {
                let b = match resource {
                    wgpu::BindingResource::Buffer(b) => {
                        Bound::Buffer(b.buffer.clone(), b.offset, b.size)
                    }
                    wgpu::BindingResource::TextureView(v) => Bound::View((*v).clone()),
                    _ => unreachable!("our kernels bind buffers and storage textures only"),
                };
                (*binding, b)
            })
            .collect();
        let key = BindKey {
            layout: layout.0.raw.clone(),
            uniforms,
            entries: bound,
        };
        if let Some((g, used)) = self.cached().get_mut(&key) {
            *used = EPOCH.load(Ordering::Relaxed);
            return Ok(g.clone());
        }
        check()?;
        // Made without holding the cache's lock, inside an error scope: what wgpu refuses
        // here (e.g. an operand made on another device) comes back as an error with wgpu's
        // message instead of reaching its default handler (a panic), and the cache and the
        // family stay as they were.
        let scope = super::validation_scope(device);
        // COPY_SRC: a captured case reads the uniforms other than the parameters.
        let made: Vec<(u32, wgpu::Buffer)> = key
            .uniforms
            .iter()
            .map(|(binding, bytes)| {
                let b = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("params"),
                    contents: bytes,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_SRC,
                });
                (*binding, b)
            })
            .collect();
        let mut all: Vec<_> = made
            .iter()
            .map(|(n, b)| (*n, b.as_entire_binding()))
            .collect();
        all.extend(entries);
        all.sort_by_key(|e| e.0);
        let g = bind_group(device, layout, all.clone());
        if let Some(e) = super::caught(scope) {
            return Err(Error::Launch(format!(
                "{}; every operand must be a buffer of the device the kernels were made on",
                e.to_string().trim_end()
            )));
        }
        crate::capture::group_made(&g, &key.uniforms[0].1, &all[1..]);
        LAUNCH_OBJECTS.with(|n| n.set(n.get() + 1 + made.len() as u64));
        let mut groups = self.cached();
        if groups.len() >= Self::CAPACITY {
            groups.clear();
        }
        groups.insert(key, (g.clone(), EPOCH.load(Ordering::Relaxed)));
        Ok(g)
    }

    /// The cache, also after a panic on another thread while it was held: every change to
    /// it is a single insert or clear, so it is never left half-made.
    fn cached(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Refuses operands of one launch (name, region, bytes, written) that share a buffer where
/// one of them is written: a buffer bound both read-only and read-write in one dispatch is a
/// wgpu validation error (a panic under wgpu's default handler), and two read-write bindings
/// whose ranges overlap race (garbage). Two read-write bindings of disjoint ranges of one
/// buffer (tensors of one arena) are fine.
pub(crate) fn check_operands(operands: &[(&str, Region, u64, bool)]) -> Result<()> {
    let list: Vec<_> = operands
        .iter()
        .map(|(n, r, bytes, w)| (*n, r.buffer, r.offset..r.offset.saturating_add(*bytes), *w))
        .collect();
    match first_alias(&list) {
        None => Ok(()),
        Some((i, j, problem)) => {
            let (a, b) = (&list[i], &list[j]);
            Err(alias_error(a.0, &a.2, b.0, &b.2, problem))
        }
    }
}

/// Checks every operand (name, region, bytes, written) against the device
/// ([`super::check_storage`]) and the operands against each other ([`check_operands`]):
/// what a launch of several passes checks before it records any.
pub(crate) fn check_launch(
    device: &wgpu::Device,
    operands: &[(&'static str, Region, u64, bool)],
) -> Result<()> {
    for &(name, region, bytes, _) in operands {
        super::check_storage(device, name, region, bytes)?;
    }
    check_operands(operands)
}

/// Refuses operands of a launch of several passes (name, region, bytes, written) whose bytes
/// overlap where one of them is written: what [`check_operands`] checks within one dispatch,
/// for operands bound in different passes (where sharing a buffer in disjoint ranges is
/// fine, and overlapping ones would corrupt each other).
pub(crate) fn check_overlaps(operands: &[(&str, Region, u64, bool)]) -> Result<()> {
    for (i, (n1, r1, b1, w1)) in operands.iter().enumerate() {
        for (n2, r2, b2, w2) in &operands[i + 1..] {
            let (a, b) = (
                r1.offset..r1.offset.saturating_add(*b1),
                r2.offset..r2.offset.saturating_add(*b2),
            );
            if r1.buffer == r2.buffer && (*w1 || *w2) && a.start < b.end && b.start < a.end {
                let problem = "their bytes overlap and one of them is written (one pass would \
                               overwrite what another reads or writes)";
                return Err(alias_error(n1, &a, n2, &b, problem));
            }
        }
    }
    Ok(())
}

/// The first pair of operands (id, buffer, byte range, written) that share a buffer where one
/// is written: read and written (wgpu forbids binding a buffer both ways in one dispatch), or
/// both written over overlapping ranges (a race).
fn first_alias<T>(
    ops: &[(T, &wgpu::Buffer, std::ops::Range<u64>, bool)],
) -> Option<(usize, usize, &'static str)> {
    for (i, (_, buf1, r1, w1)) in ops.iter().enumerate() {
        for (j, (_, buf2, r2, w2)) in ops.iter().enumerate().skip(i + 1) {
            if buf1 != buf2 || (!w1 && !w2) {
                continue;
            }
            if w1 != w2 {
                return Some((
                    i,
                    j,
                    "one is read and the other written in the same launch (wgpu forbids \
                     binding a buffer both ways)",
                ));
            }
            if r1.start < r2.end && r2.start < r1.end {
                return Some((
                    i,
                    j,
                    "both are written and their ranges overlap (the results would race)",
                ));
            }
        }
    }
    None
}

fn alias_error(
    a: &str,
    ra: &std::ops::Range<u64>,
    b: &str,
    rb: &std::ops::Range<u64>,
    problem: &str,
) -> Error {
    Error::Alias(format!(
        "`{a}` (bytes {}..{}) and `{b}` (bytes {}..{}) are the same buffer: {problem}; give the \
         output a buffer (or a region of one) of its own",
        ra.start, ra.end, rb.start, rb.end
    ))
}
