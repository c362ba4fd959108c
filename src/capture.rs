//! Replayable kernel cases: what a run of launches did — every WGSL module as the launchers
//! specialised it, every dispatch with its bindings and workgroup counts, the inputs as they
//! were before the first dispatch that read them — and what the outputs must be, written as
//! files that another WebGPU implementation replays with no Rust at all (the runner in
//! `portability/dawn/` does it on Dawn, Chrome's WebGPU, in Node and in a browser tab).
//!
//! Capturing is off unless a process turns it on with [`enable`]; then
//! - every pipeline made is registered, and its module (family, entry point, pipeline
//!   constants, binding slots) is appended once to `DIR/modules-PID.jsonl`, and the family's
//!   WGSL, as Tint takes it, written to `DIR/wgsl/FAMILY.wgsl`;
//! - a thread that calls [`begin`] records every dispatch it records into an encoder, reads
//!   each bound buffer the first time it is bound (before any captured work has run on it:
//!   the read is submitted ahead of the encoder that will hold the dispatch), and remembers
//!   what [`crate::gpu::Gpu::read`] returned;
//! - [`expect`] names values read back from one of those buffers and the values they must
//!   have (e.g. an f64 reference's, with its tolerance), and writes the case to
//!   `DIR/cases/NAME.json`.
//!
//! A case whose launches bound a texture (the llvmpipe texture paths, which also copy
//! between buffers and textures outside any dispatch) or a buffer without `COPY_SRC` (whose
//! contents cannot be read) cannot be replayed from its dispatches alone and is not written;
//! its modules still are. A case grows with every check; past 2 MiB of buffers
//! it stops being rewritten, so the file keeps a consistent prefix of the test.
//!
//! Capturing is a tool for tests and exports, not for production: once enabled, the process
//! keeps every pipeline and bind group it makes (and the buffers they bind) alive, and each
//! first binding of a buffer waits for a read-back.

use base64::Engine as _;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// Cases larger than this (all buffers together) are not written (an earlier, smaller
/// version of the file stays): replaying them shows nothing a smaller case does not, and
/// they would bloat the case folder.
const MAX_CASE_BYTES: u64 = 2 << 20;

/// What a pipeline runs: the module it came from and how it binds.
#[derive(Clone, Debug, serde::Serialize)]
struct PipelineInfo {
    family: String,
    entry: String,
    constants: Vec<(String, f64)>,
    /// (binding, kind): "uniform", "read", "read_write", "read_texture", "write_texture".
    slots: Vec<(u32, &'static str)>,
}

/// One binding of a bind group: a buffer range, or a texture (not replayable).
#[derive(Clone)]
enum Bound {
    Buffer(wgpu::Buffer, u64, u64),
    Uniform(Vec<u8>),
    Texture,
}

struct Registry {
    dir: PathBuf,
    pipelines: HashMap<wgpu::ComputePipeline, Arc<PipelineInfo>>,
    groups: HashMap<wgpu::BindGroup, Arc<Vec<(u32, Bound)>>>,
    modules_written: HashSet<String>,
}

static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();

impl Registry {
    /// Appends a pipeline's line to this process's module list, and writes the family's
    /// WGSL beside it the first time, as Tint takes it ([`crate::shaders::tint_source`]).
    fn write_module(&self, family: &str, line: &str) {
        use std::io::Write as _;
        let wgsl = self.dir.join("wgsl").join(format!("{family}.wgsl"));
        if !wgsl.exists() {
            if let Ok(src) = crate::shaders::tint_source(family) {
                let _ = crate::files::write_atomic(&wgsl, src.as_bytes());
            }
        }
        let path = self
            .dir
            .join(format!("modules-{}.jsonl", std::process::id()));
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Turns capturing on for this process, writing under `dir` (created if missing). Call it
/// before the kernels whose pipelines should be registered are made.
pub fn enable(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("cases"))?;
    std::fs::create_dir_all(dir.join("wgsl"))?;
    let _ = REGISTRY.set(Mutex::new(Registry {
        dir: dir.to_path_buf(),
        pipelines: HashMap::new(),
        groups: HashMap::new(),
        modules_written: HashSet::new(),
    }));
    Ok(())
}

/// Whether [`enable`] was called.
pub fn enabled() -> bool {
    REGISTRY.get().is_some()
}

fn registry() -> Option<std::sync::MutexGuard<'static, Registry>> {
    REGISTRY
        .get()
        .map(|r| r.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Registers pipelines made from `family` with `constants`: called where every pipeline is made.
pub(crate) fn pipelines_made(
    family: &str,
    entries: &[&str],
    constants: &[(&str, f64)],
    slots: &[(u32, &'static str)],
    made: &[wgpu::ComputePipeline],
) {
    let Some(mut reg) = registry() else { return };
    for (entry, pipeline) in entries.iter().zip(made) {
        let info = PipelineInfo {
            family: family.to_string(),
            entry: entry.to_string(),
            constants: constants.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
            slots: slots.to_vec(),
        };
        let line = serde_json::to_string(&info).expect("pipeline info serialises");
        if reg.modules_written.insert(line.clone()) {
            reg.write_module(family, &line);
        }
        reg.pipelines.insert(pipeline.clone(), Arc::new(info));
    }
}

/// Registers a bind group's bindings (`uniform` at binding 0): called where every bind group
/// of a launch is made.
pub(crate) fn group_made(
    group: &wgpu::BindGroup,
    uniform: &[u8],
    entries: &[(u32, wgpu::BindingResource<'_>)],
) {
    let Some(mut reg) = registry() else { return };
    let mut bound = vec![(0, Bound::Uniform(uniform.to_vec()))];
    for (binding, r) in entries {
        let b = match r {
            wgpu::BindingResource::Buffer(b) => {
                let size = b.size.map_or(b.buffer.size() - b.offset, |s| s.get());
                Bound::Buffer(b.buffer.clone(), b.offset, size)
            }
            _ => Bound::Texture,
        };
        bound.push((*binding, b));
    }
    reg.groups.insert(group.clone(), Arc::new(bound));
}

/// A recorded dispatch: what it ran, what it bound, its workgroups (x, y).
type Dispatch = (Arc<PipelineInfo>, Arc<Vec<(u32, Bound)>>, (u32, u32));

/// One thread's case in the making.
struct Session {
    name: String,
    device: wgpu::Device,
    queue: wgpu::Queue,
    /// Buffers in the order first bound, with their contents then.
    buffers: Vec<(wgpu::Buffer, Vec<u8>)>,
    dispatches: Vec<Dispatch>,
    /// What `Gpu::read` returned, newest last: (buffer, bytes, dispatches recorded before).
    reads: Vec<(wgpu::Buffer, Vec<u8>, usize)>,
    checks: Vec<serde_json::Value>,
    /// Why the case cannot be replayed, if it cannot.
    unreplayable: Option<String>,
}

/// Each recording thread's case. Kept outside thread-local storage: a case holds wgpu
/// objects, and dropping those in a thread-local destructor touches wgpu's own thread-local
/// state after it is gone (an abort). A thread's guard moves its case to [`ENDED`] when the
/// thread ends, and the next [`begin`] drops it on a live thread.
static SESSIONS: std::sync::LazyLock<Mutex<HashMap<std::thread::ThreadId, Session>>> =
    std::sync::LazyLock::new(Default::default);
static ENDED: Mutex<Vec<Session>> = Mutex::new(Vec::new());

struct EndGuard;

impl Drop for EndGuard {
    fn drop(&mut self) {
        let id = std::thread::current().id();
        if let Some(s) = lock(&SESSIONS).remove(&id) {
            lock(&ENDED).push(s);
        }
    }
}

thread_local! {
    static GUARD: RefCell<Option<EndGuard>> = const { RefCell::new(None) };
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` on this thread's case, if it records one. Without [`enable`] it returns at once,
/// taking no lock: it is called on every pass a launch records, the training step's included.
fn with_session<R>(f: impl FnOnce(&mut Session) -> R) -> Option<R> {
    if !enabled() {
        return None;
    }
    lock(&SESSIONS).get_mut(&std::thread::current().id()).map(f)
}

/// Starts recording a case named `name` on this thread (a no-op unless [`enable`] was
/// called, or while this thread already records a case of that name); a case of another
/// name being recorded on this thread is dropped.
pub fn begin(name: &str, device: &wgpu::Device, queue: &wgpu::Queue) {
    if !enabled() {
        return;
    }
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    drop(std::mem::take(&mut *lock(&ENDED)));
    let id = std::thread::current().id();
    let mut sessions = lock(&SESSIONS);
    if sessions.get(&id).is_some_and(|old| old.name == name) {
        return;
    }
    sessions.insert(
        id,
        Session {
            name,
            device: device.clone(),
            queue: queue.clone(),
            buffers: Vec::new(),
            dispatches: Vec::new(),
            reads: Vec::new(),
            checks: Vec::new(),
            unreplayable: None,
        },
    );
    drop(sessions);
    GUARD.with(|g| {
        g.borrow_mut().get_or_insert(EndGuard);
    });
}

/// Records the dispatches of one compute pass: called where every pass is recorded.
pub(crate) fn dispatches_recorded(
    dispatches: &[(&wgpu::ComputePipeline, &wgpu::BindGroup, (u32, u32))],
) {
    with_session(|session| {
        let Some(reg) = registry() else { return };
        for &(pipeline, group, grid) in dispatches {
            let (Some(p), Some(g)) = (reg.pipelines.get(pipeline), reg.groups.get(group)) else {
                session.unreplayable = Some("a launch made before capturing began".into());
                continue;
            };
            session.dispatches.push((p.clone(), g.clone(), grid));
        }
        let groups: Vec<_> = dispatches
            .iter()
            .filter_map(|d| reg.groups.get(d.1).cloned())
            .collect();
        drop(reg);
        for g in groups {
            for (_, b) in g.iter() {
                match b {
                    Bound::Buffer(buf, ..) => session.first_sight(buf),
                    Bound::Texture => {
                        session.unreplayable = Some("a texture path".into());
                    }
                    Bound::Uniform(_) => {}
                }
            }
        }
    });
}

impl Session {
    /// Keeps `buffer`'s contents the first time it is bound. The copy is submitted now, so it
    /// runs before the encoder being recorded and after every earlier submission.
    fn first_sight(&mut self, buffer: &wgpu::Buffer) {
        if self.buffers.iter().any(|(b, _)| b == buffer) {
            return;
        }
        let bytes = if buffer.usage().contains(wgpu::BufferUsages::COPY_SRC) {
            read_bytes(&self.device, &self.queue, buffer)
        } else {
            self.unreplayable =
                Some("an operand without COPY_SRC (its contents cannot be read)".into());
            Vec::new()
        };
        self.buffers.push((buffer.clone(), bytes));
    }
}

fn read_bytes(device: &wgpu::Device, queue: &wgpu::Queue, buffer: &wgpu::Buffer) -> Vec<u8> {
    let size = buffer.size();
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("capture"),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = device.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(buffer, 0, &staging, 0, size);
    queue.submit(Some(enc.finish()));
    staging.slice(..).map_async(wgpu::MapMode::Read, |_| {});
    let _ = device.poll(wgpu::PollType::wait_indefinitely());
    let out = staging
        .slice(..)
        .get_mapped_range()
        .map(|v| v.to_vec())
        .unwrap_or_else(|_| vec![0; size as usize]);
    staging.unmap();
    out
}

/// Notes what [`crate::gpu::Gpu::read`] returned from `buffer`: called by it.
pub(crate) fn read_back(buffer: &wgpu::Buffer, bytes: &[u8]) {
    with_session(|session| {
        let after = session.dispatches.len();
        session.reads.push((buffer.clone(), bytes.to_vec(), after))
    });
}

/// Declares that `got`, values read back with [`crate::gpu::Gpu::read`] during this case,
/// must be within `atol + rtol·|want|` of `want`, and (re)writes the case file. Values that
/// did not come from such a read (computed on the host) are ignored.
pub fn expect(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
    with_session(|session| {
        let got_bytes: &[u8] = bytemuck::cast_slice(got);
        // The newest read that holds `got` (whole, or a run of it: a scalar of a few).
        let Some((buffer, start, after)) = session.reads.iter().rev().find_map(|(b, bytes, n)| {
            (0..=bytes.len().checked_sub(got_bytes.len())?)
                .step_by(4)
                .find(|&i| &bytes[i..i + got_bytes.len()] == got_bytes)
                .map(|i| (b, i, *n))
        }) else {
            return;
        };
        let Some(index) = session.buffers.iter().position(|(b, _)| b == buffer) else {
            return;
        };
        let want32: Vec<f32> = want.iter().map(|&w| w as f32).collect();
        let b64 = base64::engine::general_purpose::STANDARD;
        session.checks.push(serde_json::json!({
            "what": what,
            "buffer": index,
            // Checked once the first `after` dispatches have run (a buffer a later launch
            // updates in place is checked as it was then).
            "after": after,
            "start": start / 4,
            "count": want.len(),
            // f64 would be exact; f32 is what the comparison can resolve within tolerances
            // of at least 1e-7 relative, and halves the file.
            "want": b64.encode(bytemuck::cast_slice::<f32, u8>(&want32)),
            "atol": atol,
            "rtol": rtol,
        }));
        if let Some(reg) = REGISTRY.get() {
            let dir = reg.lock().unwrap_or_else(|e| e.into_inner()).dir.clone();
            session.write(&dir);
        }
    });
}

impl Session {
    fn write(&self, dir: &Path) {
        if self.unreplayable.is_some() || self.dispatches.is_empty() {
            return;
        }
        let total: u64 = self.buffers.iter().map(|(b, _)| b.size()).sum();
        if total > MAX_CASE_BYTES {
            return;
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let index = |buf: &wgpu::Buffer| self.buffers.iter().position(|(b, _)| b == buf);
        let dispatches: Vec<_> = self
            .dispatches
            .iter()
            .map(|(p, g, (x, y))| {
                let bindings: Vec<_> = g
                    .iter()
                    .map(|(binding, b)| match b {
                        Bound::Buffer(buf, offset, size) => serde_json::json!({
                            "binding": binding, "buffer": index(buf), "offset": offset, "size": size,
                        }),
                        Bound::Uniform(bytes) => serde_json::json!({
                            "binding": binding, "uniform": b64.encode(bytes),
                        }),
                        Bound::Texture => serde_json::Value::Null,
                    })
                    .collect();
                serde_json::json!({
                    "pipeline": **p,
                    "bindings": bindings,
                    "workgroups": [x, y, 1],
                })
            })
            .collect();
        let buffers: Vec<_> = self
            .buffers
            .iter()
            .map(|(b, bytes)| serde_json::json!({ "size": b.size(), "data": b64.encode(bytes) }))
            .collect();
        let case = serde_json::json!({
            "name": self.name,
            "buffers": buffers,
            "dispatches": dispatches,
            "checks": self.checks,
        });
        let path = dir.join("cases").join(format!("{}.json", self.name));
        let _ = crate::files::write_atomic(&path, case.to_string().as_bytes());
    }
}
