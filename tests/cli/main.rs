//! The command line as a user runs it: the `imba` binary in a child process, its exit status
//! and its output.

#[path = "../common/mod.rs"]
mod common;

mod basics;
mod compare;
mod failures;
mod import;
mod numeric_options;
mod parallel;
mod train;

use std::path::PathBuf;
use std::process::{Command, Output};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imba"))
        .args(args)
        .env("XDG_RUNTIME_DIR", "/tmp")
        .envs(env.iter().copied())
        .output()
        .expect("run imba")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

/// Success and stdout followed by stderr.
pub fn imba(args: &[&str]) -> (bool, String) {
    imba_env(args, &[])
}

/// [`imba`] with extra environment variables.
pub fn imba_env(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = run(args, env);
    (out.status.success(), text(&out.stdout) + &text(&out.stderr))
}

/// Success, stdout and stderr apart.
pub fn imba_split(args: &[&str]) -> (bool, String, String) {
    let out = run(args, &[]);
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// A fresh empty folder under the system's temporary folder, unique to this process.
pub fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("imba-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
