//! Shared test helpers: one device per test binary, random inputs, tolerance checks.
#![allow(dead_code)]

pub mod matmul_check;

use imba::gpu::Gpu;
use std::sync::OnceLock;

/// The environment variable that makes the tests write replayable cases (see
/// `imba::capture`) under the folder it names.
pub const CASES_ENV: &str = "IMBA_CASES_DIR";

/// The test device (the default adapter: lavapipe on CI). Panics with the fix when there is
/// no adapter, because every GPU test needs one. With `IMBA_CASES_DIR` set, each test that
/// asks for the device records its launches as a case named after the test, and
/// [`assert_close`] writes the case with its expectations.
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    let g = GPU.get_or_init(|| {
        std::env::set_var(
            "XDG_RUNTIME_DIR",
            std::env::var("XDG_RUNTIME_DIR").unwrap_or("/tmp".into()),
        );
        if let Some(dir) = std::env::var_os(CASES_ENV) {
            imba::capture::enable(std::path::Path::new(&dir))
                .unwrap_or_else(|e| panic!("{CASES_ENV}: {e}"));
        }
        Gpu::new().unwrap_or_else(|e| panic!("{e}"))
    });
    if let Some(name) = std::thread::current().name() {
        imba::capture::begin(name, &g.device, &g.queue);
    }
    g
}

/// A small deterministic generator for test inputs (splitmix64), independent of the Philox
/// code under test.
pub struct Rand(u64);

impl Rand {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
    }
    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
    pub fn below(&mut self, n: u32) -> u32 {
        (self.next_u64() % n as u64) as u32
    }
}

/// Asserts |got − want| ≤ atol + rtol·|want| elementwise (NaN fails), naming the first failing index.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    imba::capture::expect(what, got, want, atol, rtol);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        let tol = atol + rtol * w.abs();
        assert!(
            err <= tol,
            "{what}[{i}]: got {g}, want {w} (|err| {err:.3e} > tol {tol:.3e})"
        );
    }
}

/// Relative error of a scalar.
pub fn assert_scalar(what: &str, got: f32, want: f64, rtol: f64) {
    imba::capture::expect(what, &[got], &[want], 1e-30 * rtol, rtol);
    let err = (got as f64 - want).abs() / want.abs().max(1e-30);
    assert!(
        err <= rtol,
        "{what}: got {got}, want {want} (rel err {err:.3e} > {rtol:.0e})"
    );
}

/// Asserts that a launch failed with an error whose message mentions `needle`.
pub fn assert_error_mentions<T>(result: imba::Result<T>, needle: &str) {
    match result {
        Ok(_) => panic!("expected an error mentioning '{needle}', got Ok"),
        Err(e) => {
            let e = e.to_string();
            assert!(e.contains(needle), "error '{e}' should mention '{needle}'");
        }
    }
}

/// Asserts that a launch (or a constructor) is refused with an error mentioning `needle` and
/// that it recorded no dispatch: a refused launch leaves nothing in the caller's encoder that
/// would write when it is submitted.
pub fn assert_refused<T>(launch: impl FnOnce() -> imba::Result<T>, needle: &str) {
    let before = imba::kernels::dispatches_recorded();
    assert_error_mentions(launch(), needle);
    assert_eq!(
        imba::kernels::dispatches_recorded(),
        before,
        "refused with '{needle}' after recording a dispatch"
    );
}

/// f32 → f64.
pub fn f64s(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// f64 → f32.
pub fn f32s(x: &[f64]) -> Vec<f32> {
    x.iter().map(|&v| v as f32).collect()
}

/// Checks `grad` (∂loss/∂x) against central differences of `loss` at a spread of indices
/// (all of them for short vectors), in f64: |grad − fd| ≤ tol·(1 + |fd|).
pub fn assert_fd(what: &str, x: &[f64], grad: &[f64], loss: impl Fn(&[f64]) -> f64, tol: f64) {
    assert_eq!(x.len(), grad.len(), "{what}: gradient length");
    let h = 1e-6;
    let step = (x.len() / 40).max(1);
    let mut xp = x.to_vec();
    for i in (0..x.len()).step_by(step) {
        xp[i] = x[i] + h;
        let up = loss(&xp);
        xp[i] = x[i] - h;
        let down = loss(&xp);
        xp[i] = x[i];
        let fd = (up - down) / (2.0 * h);
        assert!(
            (grad[i] - fd).abs() <= tol * (1.0 + fd.abs()),
            "{what}[{i}]: analytic {} vs finite difference {fd}",
            grad[i]
        );
    }
}

/// Σ w·y: a random linear functional, to test a backward with upstream gradient w.
pub fn dot(w: &[f64], y: &[f64]) -> f64 {
    w.iter().zip(y).map(|(a, b)| a * b).sum()
}

/// ‖got − want‖ / ‖want‖ ≤ tol (a whole tensor at once); a zero reference fails, because
/// the test would prove nothing.
pub fn assert_rel(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let num: f64 = got.iter().zip(want).map(|(a, b)| (a - b) * (a - b)).sum();
    let den: f64 = want.iter().map(|b| b * b).sum();
    assert!(
        den > 0.0,
        "{what}: the reference is all zero, so the test would prove nothing"
    );
    let rel = (num / den).sqrt();
    assert!(rel <= tol, "{what}: relative error {rel:.3e} > {tol:.0e}");
}

/// [`assert_fd`] for a whole model's flat parameters: three entries (first, middle, last) of
/// every tensor of `layout`, |grad − fd| ≤ tol·(1 + |fd|).
pub fn assert_fd_tensors(
    what: &str,
    layout: &imba::model::ParamLayout,
    flat: &[f64],
    grads: &[f64],
    loss: impl Fn(&[f64]) -> f64,
    tol: f64,
) {
    let h = 1e-6;
    let mut x = flat.to_vec();
    for t in &layout.tensors {
        for j in [0, t.len() / 2, t.len() - 1] {
            let i = t.offset + j;
            x[i] = flat[i] + h;
            let up = loss(&x);
            x[i] = flat[i] - h;
            let down = loss(&x);
            x[i] = flat[i];
            let fd = (up - down) / (2.0 * h);
            assert!(
                (grads[i] - fd).abs() <= tol * (1.0 + fd.abs()),
                "{what} {}[{j}]: analytic {} vs finite difference {fd}",
                t.name,
                grads[i]
            );
        }
    }
}

/// The repository's root: cargo's CARGO_MANIFEST_DIR when cargo runs the tests, else the
/// working directory (a test binary run by hand from the root, e.g. by
/// scripts/device_check.sh on a machine without the build tree).
pub fn repo_root() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(Into::into)
        .unwrap_or_else(|| std::env::current_dir().expect("working directory"))
}

/// Records a skipped check: prints it and appends it to `target/tmp/skipped.txt`, which
/// `scripts/test.sh` counts and reports after the run, so a skip is never a silent pass.
pub fn skip(test: &str, reason: &str) {
    use std::io::Write;
    eprintln!("SKIPPED {test}: {reason}");
    let dir = repo_root().join("target/tmp");
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("skipped.txt"))
    {
        let _ = writeln!(f, "{test}: {reason}");
    }
}
