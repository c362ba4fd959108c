//! Stopping on SIGINT, SIGTERM or SIGHUP without losing work.
//!
//! While a training loop runs (it holds a [`Stoppable`]), the first signal only asks it to
//! stop: it finishes the step, writes a checkpoint and returns [`crate::Error::Interrupted`],
//! and the command exits with 128 + the signal's number (130, 143, 129). SIGHUP — a closed
//! terminal or ssh session — is treated as SIGTERM, not as the default's instant death.
//! Anywhere else, or on a
//! second signal, the process exits at once with that status: every file is written
//! atomically, so nothing is left half-written, and a resume continues from the last
//! checkpoint.
//!
//! Only [`install`] (called by the `imba` command) changes the process's signal handling; a
//! program embedding the trainer keeps its own.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[cfg(not(target_arch = "wasm32"))]
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM as TERM};
// A browser tab has no signals: the POSIX numbers only name them in messages.
#[cfg(target_arch = "wasm32")]
mod numbers {
    pub const SIGHUP: i32 = 1;
    pub const SIGINT: i32 = 2;
    pub const TERM: i32 = 15;
}
#[cfg(target_arch = "wasm32")]
use numbers::{SIGHUP, SIGINT, TERM};

/// The signal that asked for a stop (0: none).
static SIGNAL: AtomicUsize = AtomicUsize::new(0);
/// Whether a signal ends the process at once (outside a training loop, or a second signal).
static EXIT_NOW: AtomicBool = AtomicBool::new(true);

const SIGNALS: [(i32, &str); 3] = [(SIGINT, "SIGINT"), SIGTERM, (SIGHUP, "SIGHUP")];

/// SIGTERM with its name: what a rank reports when another rank's signal stopped the job.
pub const SIGTERM: (i32, &str) = (TERM, "SIGTERM");

/// Routes SIGINT, SIGTERM and SIGHUP as the module docs say.
#[cfg(not(target_arch = "wasm32"))]
pub fn install() -> std::io::Result<()> {
    for (signal, _) in SIGNALS {
        // Order matters: the exit check runs first, so the signal that arms it does not
        // also trigger it.
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, &EXIT_NOW)?;
        signal_hook::flag::register_usize(signal, &SIGNAL, signal as usize)?;
        signal_hook::flag::register(signal, &EXIT_NOW)?;
    }
    Ok(())
}

/// A browser tab has no signals to route.
#[cfg(target_arch = "wasm32")]
pub fn install() -> std::io::Result<()> {
    Ok(())
}

/// The signal that asked for a stop, if one did: its number and name.
pub fn requested() -> Option<(i32, &'static str)> {
    let s = SIGNAL.load(Ordering::SeqCst) as i32;
    SIGNALS.iter().find(|(n, _)| *n == s).copied()
}

/// Held by a training loop: while it lives, the first signal asks for a stop instead of
/// ending the process.
pub struct Stoppable(());

impl Stoppable {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        if requested().is_none() {
            EXIT_NOW.store(false, Ordering::SeqCst);
        }
        Stoppable(())
    }
}

impl Drop for Stoppable {
    fn drop(&mut self) {
        EXIT_NOW.store(true, Ordering::SeqCst);
    }
}
