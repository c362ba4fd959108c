//! What a crash, a signal, a second writer, a damaged or foreign checkpoint and a full disk
//! cost a run, as a user meets them: the `imba` binary in child processes.

use crate::common::skip;
use crate::train::TINY;
use crate::{imba_env, tempdir};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A tiny run's config file in `dir`, and its path as text.
fn config(dir: &Path) -> String {
    let cfg = dir.join("run.toml");
    std::fs::write(&cfg, TINY).unwrap();
    cfg.display().to_string()
}

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_imba"))
        .args(args)
        .env("XDG_RUNTIME_DIR", "/tmp")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (up to two minutes) until `ready` holds.
fn wait_for(what: &str, ready: impl Fn() -> bool) {
    let t = Instant::now();
    while !ready() {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn log_lines(run: &Path) -> usize {
    std::fs::read_to_string(run.join("log.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

fn step_of(run: &Path, file: &str) -> u32 {
    imba::train::state::load(&run.join(file))
        .unwrap()
        .state
        .step
}

fn train(c: &str, steps: &str, out: &Path, extra: &[&str]) -> (bool, String) {
    let o = out.display().to_string();
    let mut args = vec![
        "train", "--config", c, "--steps", steps, "--out", &o, "--quiet",
    ];
    args.extend(extra);
    imba_env(&args, &[])
}

#[test]
fn a_second_writer_is_refused_with_the_holder_and_a_killed_one_never_blocks() {
    let dir = tempdir("lock");
    let c = config(&dir);
    let run = dir.join("r");
    let r = run.display().to_string();
    let mut first = spawn(&[
        "train",
        "--config",
        c.as_str(),
        "--steps",
        "100000",
        "--out",
        &r,
        "--quiet",
    ]);
    wait_for("the first writer's lock", || {
        std::fs::read_to_string(run.join(".lock")).is_ok_and(|t| t.contains("command"))
    });
    let pid = first.id().to_string();
    for args in [
        vec!["train", "--resume", r.as_str(), "--steps", "100000"],
        vec!["train", "--config", c.as_str(), "--out", r.as_str()],
        vec!["eval", "--run", r.as_str()],
    ] {
        let (ok, out) = imba_env(&args, &[]);
        assert!(!ok, "{args:?} ran beside the first writer");
        assert!(
            out.contains("is being written by process") && out.contains(&pid),
            "{args:?}: {out}"
        );
    }
    // `.lock` looks like litter: deleting it must not let a second writer in (Unix: the
    // folder itself is locked too).
    if cfg!(unix) {
        std::fs::remove_file(run.join(".lock")).unwrap();
        let (ok, out) = imba_env(&["train", "--config", c.as_str(), "--out", r.as_str()], &[]);
        assert!(!ok && out.contains("was removed"), "{out}");
    }
    first.kill().unwrap();
    first.wait().unwrap();
    // The lock died with its process.
    imba::train::FolderLock::acquire(&run).expect("a killed writer's lock blocks");
}

/// No command writes into a folder another command owns: a finished run whose checkpoints
/// were deleted is still a run; a comparison, InvDiff and samples refuse a training run's
/// folder; a run's `--out` inside its image-folder data set is refused. Nothing is written.
#[test]
fn outputs_never_mix_with_another_commands_folder() {
    let dir = tempdir("kinds");
    let c = config(&dir);
    let run = dir.join("r");
    let r = run.display().to_string();
    let (ok, out) = train(&c, "2", &run, &[]);
    assert!(ok, "{out}");
    let model = std::fs::read(run.join("model.safetensors")).unwrap();
    let log = std::fs::read(run.join("log.jsonl")).unwrap();
    for args in [
        vec![
            "compare",
            "--dataset",
            "toy2d",
            "--steps",
            "2",
            "--out",
            r.as_str(),
        ],
        vec!["invdiff", "--base", r.as_str(), "--out", r.as_str()],
        vec!["sample", "--run", r.as_str(), "--out", r.as_str()],
    ] {
        let (ok, out) = imba_env(&args, &[]);
        assert!(
            !ok && out.contains("holds a training run"),
            "{args:?}: {out}"
        );
    }
    // The documented bound of 100,000 samples counts every label's samples together.
    let (ok, out) = imba_env(&["sample", "--run", r.as_str(), "--count", "6251"], &[]);
    assert!(!ok && out.contains("over its bound of 100000"), "{out}");
    for f in ["checkpoint.safetensors", "checkpoint.prev.safetensors"] {
        let _ = std::fs::remove_file(run.join(f));
    }
    let (ok, out) = train(&c, "2", &run, &[]);
    assert!(!ok && out.contains("finished run"), "{out}");
    assert_eq!(std::fs::read(run.join("model.safetensors")).unwrap(), model);
    assert_eq!(std::fs::read(run.join("log.jsonl")).unwrap(), log);
    // An image-folder data set: two labels of PNGs; --out inside it.
    let data = dir.join("images");
    for label in ["a", "b"] {
        std::fs::create_dir_all(data.join(label)).unwrap();
        for k in 0..2 {
            let img = image::RgbImage::from_pixel(8, 8, image::Rgb([k * 90, 40, 200]));
            img.save(data.join(label).join(format!("{k}.png"))).unwrap();
        }
    }
    let inside = data.join("a").join("run").display().to_string();
    let d = data.display().to_string();
    let (ok, out) = imba_env(
        &[
            "train",
            "--dataset",
            "folder",
            "--data-path",
            &d,
            "--out",
            &inside,
            "--steps",
            "1",
        ],
        &[],
    );
    assert!(!ok && out.contains("inside the data set"), "{out}");
    assert!(
        !data.join("a").join("run").exists(),
        "a refused run wrote into the data set"
    );
}

/// A run whose training images changed after it was trained is refused by every command
/// that reads them again (scoring, SeedSelect, InvDiff), with the way out named; nothing is
/// written for the refused command.
#[test]
fn a_run_whose_data_changed_is_refused() {
    use std::io::Read;
    let dir = tempdir("changed");
    let c = config(&dir);
    let mut csv = String::new();
    flate2::read::GzDecoder::new(imba::data::DIGITS_CSV)
        .read_to_string(&mut csv)
        .unwrap();
    let data = dir.join("digits.csv");
    std::fs::write(&data, &csv).unwrap();
    let (run, d) = (dir.join("r"), data.display().to_string());
    let r = run.display().to_string();
    let (ok, out) = train(&c, "2", &run, &["--dataset", "digits", "--data-path", &d]);
    assert!(ok, "{out}");
    let eval = ["eval", "--run", r.as_str(), "--eval-per-label", "1"];
    let (ok, out) = imba_env(&eval, &[]);
    assert!(ok, "the unchanged data: {out}");
    // The corner pixel (blank in every digit) is lit in every digit.
    let lit: String = csv
        .lines()
        .map(|row| format!("7{}\n", &row[row.find(',').unwrap()..]))
        .collect();
    assert_ne!(lit, csv);
    std::fs::write(&data, lit).unwrap();
    let (ss, inv) = (dir.join("ss"), dir.join("inv"));
    let (s, i) = (ss.display().to_string(), inv.display().to_string());
    for args in [
        eval.to_vec(),
        vec!["seedselect", "--run", &r, "--label", "3", "--out", &s],
        vec!["invdiff", "--base", &r, "--out", &i],
    ] {
        let (ok, out) = imba_env(&args, &[]);
        assert!(
            !ok && out.contains("no longer match its checkpoint") && out.contains("train again"),
            "{args:?}: {out}"
        );
    }
    assert!(
        !ss.exists() && !inv.exists(),
        "a refused command wrote files"
    );
}

#[cfg(unix)]
#[test]
fn sigterm_stops_after_a_step_with_a_checkpoint_and_resumes_to_the_same_bytes() {
    let dir = tempdir("sigterm");
    let c = config(&dir);
    let whole = dir.join("whole");
    let (ok, out) = train(&c, "24", &whole, &["--checkpoint-every", "1000"]);
    assert!(ok, "{out}");

    let stopped = dir.join("stopped");
    let s = stopped.display().to_string();
    let child = spawn(&[
        "train",
        "--config",
        c.as_str(),
        "--steps",
        "24",
        "--checkpoint-every",
        "1000",
        "--out",
        &s,
        "--quiet",
    ]);
    wait_for("three steps", || log_lines(&stopped) >= 3);
    let output = signal_and_wait(child, "-TERM");
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(143), "{err}");
    let at = step_of(&stopped, "checkpoint.safetensors");
    assert!(at < 24, "the run finished before the signal");
    assert!(
        err.contains(&format!("stopped by SIGTERM after step {at}")) && err.contains("--resume"),
        "{err}"
    );
    assert_eq!(
        log_lines(&stopped),
        at as usize,
        "log and checkpoint disagree"
    );

    let (ok, out) = imba_env(&["train", "--resume", &s, "--quiet"], &[]);
    assert!(ok, "{out}");
    // Identical training gives identical files, byte for byte.
    let bytes = |run: &Path| std::fs::read(run.join("model.safetensors")).unwrap();
    assert!(
        bytes(&whole) == bytes(&stopped),
        "the resumed run's model differs"
    );
    let (a, b) = (
        imba::train::state::load(&whole.join("checkpoint.safetensors")).unwrap(),
        imba::train::state::load(&stopped.join("checkpoint.safetensors")).unwrap(),
    );
    assert!(a.state.params == b.state.params && a.state.m == b.state.m);
}

/// Sends `signal` (e.g. "-TERM") to a child and waits for its output.
#[cfg(unix)]
fn signal_and_wait(child: Child, signal: &str) -> std::process::Output {
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap()
        .success());
    child.wait_with_output().unwrap()
}

/// A closed terminal or ssh session (SIGHUP) stops training like SIGTERM: the step finishes,
/// a checkpoint is written, the resume command printed, exit 129; the run resumes.
#[cfg(unix)]
#[test]
fn sighup_stops_after_a_step_with_a_checkpoint() {
    let dir = tempdir("sighup");
    let c = config(&dir);
    let run = dir.join("run");
    let r = run.display().to_string();
    let args = ["train", "--config", c.as_str(), "--steps", "24"];
    let child = spawn(
        &[
            &args[..],
            &["--checkpoint-every", "1000", "--out", &r, "--quiet"],
        ]
        .concat(),
    );
    wait_for("two steps", || log_lines(&run) >= 2);
    let output = signal_and_wait(child, "-HUP");
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(129), "{err}");
    let at = step_of(&run, "checkpoint.safetensors");
    assert!(
        at < 24 && err.contains(&format!("stopped by SIGHUP after step {at}")),
        "{err}"
    );
    let (ok, out) = imba_env(&["train", "--resume", &r, "--quiet"], &[]);
    assert!(ok, "{out}");
    assert_eq!(log_lines(&run), 24);
}

/// Flips one byte `from_end` bytes before the end of a file (inside its last tensor).
fn flip(path: &Path, from_end: usize) {
    let mut b = std::fs::read(path).unwrap();
    let n = b.len();
    b[n - from_end] ^= 0x40;
    std::fs::write(path, b).unwrap();
}

#[test]
fn a_damaged_checkpoint_is_named_and_the_previous_one_used() {
    let dir = tempdir("damage");
    let c = config(&dir);
    let run = dir.join("r");
    let r = run.display().to_string();
    let (ok, out) = train(&c, "8", &run, &["--checkpoint-every", "4"]);
    assert!(ok, "{out}");
    assert_eq!(step_of(&run, "checkpoint.prev.safetensors"), 4);
    let latest = run.join("checkpoint.safetensors");
    flip(&latest, 3);
    let e = imba::train::state::load(&latest).err().unwrap().to_string();
    assert!(
        e.contains("is corrupt (CRC32 mismatch)") && e.contains("tensor `"),
        "{e}"
    );
    // A byte of the header's config text.
    let mut header = std::fs::read(run.join("checkpoint.prev.safetensors")).unwrap();
    let at = header.windows(9).position(|w| w == b"imbalance").unwrap();
    header[at] = b'J';
    let copy = dir.join("header.safetensors");
    std::fs::write(&copy, header).unwrap();
    let e = imba::train::state::load(&copy).err().unwrap().to_string();
    assert!(e.contains("header"), "{e}");

    // The resume warns, continues from step 4 and logs every step once.
    let (ok, out) = imba_env(&["train", "--resume", &r, "--steps", "12", "--quiet"], &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains("CRC32 mismatch") && out.contains("using the previous checkpoint"),
        "{out}"
    );
    let steps: Vec<u32> = imba::train::RunDir::new(&run)
        .read_log()
        .iter()
        .map(|s| s.step)
        .collect();
    assert_eq!(steps, (1..=12).collect::<Vec<_>>());
    // Both damaged: refused, the latest's problem named.
    flip(&latest, 3);
    flip(&run.join("checkpoint.prev.safetensors"), 3);
    let (ok, out) = imba_env(&["train", "--resume", &r, "--steps", "16"], &[]);
    assert!(!ok && out.contains("CRC32 mismatch"), "{out}");
}

#[test]
fn a_foreign_checkpoint_and_a_resume_elsewhere_are_refused() {
    let dir = tempdir("foreign");
    let c = config(&dir);
    let (a, b) = (dir.join("a"), dir.join("b"));
    for (run, seed) in [(&a, "0"), (&b, "1")] {
        let (ok, out) = train(&c, "2", run, &["--seed", seed, "--sample-count", "0"]);
        assert!(ok, "{out}");
    }
    let a_s = a.display().to_string();
    let (ok, out) = imba_env(
        &[
            "train",
            "--resume",
            &a_s,
            "--steps",
            "4",
            "--out",
            "elsewhere",
        ],
        &[],
    );
    assert!(
        !ok && out.contains("--out elsewhere would be ignored"),
        "{out}"
    );
    assert!(!PathBuf::from("elsewhere").exists());
    for f in ["checkpoint.safetensors", "checkpoint.prev.safetensors"] {
        let _ = std::fs::copy(b.join(f), a.join(f));
    }
    let (ok, out) = imba_env(&["train", "--resume", &a_s, "--steps", "4"], &[]);
    assert!(!ok, "a checkpoint of another run was resumed");
    assert!(
        out.contains("does not belong") && out.contains("seed"),
        "{out}"
    );
    // The other run's config copied along with its checkpoint, or no config at all: the
    // folder's step log still tells the runs apart.
    let log = std::fs::read(a.join("log.jsonl")).unwrap();
    for copy_config in [true, false] {
        if copy_config {
            std::fs::copy(b.join("config.toml"), a.join("config.toml")).unwrap();
        } else {
            std::fs::remove_file(a.join("config.toml")).unwrap();
        }
        let (ok, out) = imba_env(&["train", "--resume", &a_s, "--steps", "4"], &[]);
        assert!(
            !ok && out.contains("whose log is in"),
            "config copied {copy_config}: {out}"
        );
        assert_eq!(
            std::fs::read(a.join("log.jsonl")).unwrap(),
            log,
            "the log was touched"
        );
    }
}

/// A full disk: a 160 KiB tmpfs where the test may mount one (root), else a counted skip.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_names_the_file_and_leaves_no_partial_file() {
    let dir = tempdir("full");
    let c = config(&dir);
    let mnt = dir.join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let m = mnt.display().to_string();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=160k", "tmpfs", &m])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        skip(
            "a_full_disk_names_the_file_and_leaves_no_partial_file",
            "cannot mount a small tmpfs here (needs root and mount rights)",
        );
        return;
    }
    let run = mnt.join("r");
    let (ok, out) = train(&c, "4", &run, &["--checkpoint-every", "2"]);
    let files: Vec<String> = std::fs::read_dir(&run)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    let _ = Command::new("umount").arg(&m).status();
    assert!(!ok, "the run fitted in 160 KiB: {out}");
    assert!(out.contains("no space left on the device"), "{out}");
    assert!(out.contains("needs") && out.contains("KiB"), "{out}");
    assert!(
        files.iter().all(|f| !f.ends_with(".tmp")),
        "a partial file was left: {files:?}"
    );
}

/// Absurd sizes and scales are refused before anything is drawn or allocated, the value named.
#[test]
fn absurd_sizes_and_scales_are_refused_before_allocation() {
    let dir = tempdir("absurd");
    let out = dir.join("r").display().to_string();
    let csv = dir.join("digits.csv");
    let row = |v: &str| format!("{}{v},3\n", "0,".repeat(63));
    std::fs::write(&csv, row("4") + &row("17")).unwrap();
    let csv = csv.display().to_string();
    let cases: [(&[&str], &str); 8] = [
        (&["--steps", "4000000000"], "`steps` is 4000000000"),
        (&["--image-size", "4096"], "`image_size` is 4096"),
        (
            &["--head-count", "4000000000"],
            "`head_count` is 4000000000",
        ),
        (
            &["--sample-count", "100000000"],
            "`sample_count` is 100000000",
        ),
        (
            &["--guidance", "1e30"],
            "`guidance` is 1000000000000000000000000000000",
        ),
        (&["--guidance", "nan"], "`guidance` is NaN"),
        (
            &["--head-count", "1000000", "--image-size", "512"],
            "the data set (1000000 images for the largest of 16 labels) would need about",
        ),
        (
            &["--dataset", "digits", "--data-path", &csv],
            "pixel `17` is outside 0..16",
        ),
    ];
    for (args, named) in cases {
        let mut a = vec!["train", "--out", out.as_str(), "--quiet"];
        a.extend(args);
        let t = Instant::now();
        let (ok, text) = imba_env(&a, &[]);
        assert!(!ok && text.contains(named), "{args:?}: {text}");
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{args:?} was not refused at once"
        );
    }
}

/// Every count of every command is bounded before anything is allocated or run: absurd
/// values (and zeros that would mean nothing) are refused with the option named.
#[test]
fn absurd_counts_are_refused_with_the_option_named() {
    let dir = tempdir("counts");
    let c = config(&dir);
    let run = dir.join("r");
    let r = run.display().to_string();
    let (ok, out) = train(&c, "2", &run, &[]);
    assert!(ok, "{out}");
    let huge = "1000000000";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["train", "--config", &c, "--depth", "10000000", "--out", "x"],
            "`depth` is 10000000",
        ),
        (
            vec!["bench", "dit", "--model", "tiny", "--depth", huge],
            "`depth` is 1000000000",
        ),
        (
            vec!["bench", "dit", "--model", "tiny", "--channels", huge],
            "`channels`",
        ),
        (
            vec!["bench", "dit", "--model", "S/2", "--labels", huge],
            "`labels`",
        ),
        (
            vec!["bench", "dit", "--model", "S/2", "--image-size", huge],
            "`height`",
        ),
        (
            vec!["bench", "dit", "--model", "tiny", "--reps", "0"],
            "`reps` is 0",
        ),
        (
            vec!["bench", "matmul", "--shape", "100000,100000,100000"],
            "storage binding",
        ),
        (
            vec!["bench", "matmul", "--reps", huge, "--shape", "4,4,4"],
            "`reps`",
        ),
        (
            vec!["bench", "matmul", "--stream", huge, "--shape", "4,4,4"],
            "`stream`",
        ),
        (vec!["bench", "kernels", "--reps", "0"], "`reps` is 0"),
        (vec!["invdiff", "--base", &r, "--groups", huge], "`groups`"),
        (
            vec!["invdiff", "--base", &r, "--groups", "100000"],
            "at most one group per image",
        ),
        (
            vec!["invdiff", "--base", &r, "--steps", "0"],
            "`steps` must be at least 1",
        ),
        (
            vec!["invdiff", "--base", &r, "--delta-depth", huge],
            "`delta_depth`",
        ),
        (
            vec!["seedselect", "--run", &r, "--label", "0", "--iters", huge],
            "`iters`",
        ),
        (
            vec!["seedselect", "--run", &r, "--label", "0", "--guidance=-1"],
            "`guidance`",
        ),
        (
            vec!["seedselect", "--run", &r, "--label", "0", "--samples", huge],
            "`samples`",
        ),
    ];
    for (args, named) in cases {
        let (ok, out) = imba_env(&args, &[]);
        assert!(!ok && out.contains(named), "{args:?}: {out}");
        assert!(!out.contains("panicked"), "{args:?}: {out}");
    }
    assert!(
        !dir.join("x").exists() && !run.join("invdiff").exists(),
        "a refused command wrote"
    );
}

/// Rewrites a safetensors file with one metadata entry removed (the header re-serialised,
/// the tensor bytes kept).
fn drop_metadata(path: &Path, key: &str) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header["__metadata__"].as_object_mut().unwrap().remove(key);
    let mut text = serde_json::to_vec(&header).unwrap();
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    out.extend(&bytes[8 + n..]);
    std::fs::write(path, out).unwrap();
}

/// A checkpoint whose seal was removed is not resumed unverified: refused, naming the fix;
/// with --trust-unsealed it resumes.
#[test]
fn an_unsealed_imba_checkpoint_needs_trust() {
    let dir = tempdir("unsealed");
    let c = config(&dir);
    let run = dir.join("r");
    let r = run.display().to_string();
    let (ok, out) = train(&c, "2", &run, &["--checkpoint-every", "2"]);
    assert!(ok, "{out}");
    for f in ["checkpoint.safetensors", "checkpoint.prev.safetensors"] {
        if run.join(f).exists() {
            drop_metadata(&run.join(f), "imba.checksum");
        }
    }
    let (ok, out) = imba_env(&["train", "--resume", &r, "--steps", "3", "--quiet"], &[]);
    assert!(!ok && out.contains("--trust-unsealed"), "{out}");
    let (ok, out) = imba_env(
        &[
            "train",
            "--resume",
            &r,
            "--steps",
            "3",
            "--quiet",
            "--trust-unsealed",
        ],
        &[],
    );
    assert!(ok, "{out}");
}

/// A command that uses an unfinished run (here SeedSelect on a run whose latest checkpoint
/// is that of step 2 of 4) says so, and its report records the step.
#[test]
fn an_unfinished_run_is_named_by_the_remedies() {
    let dir = tempdir("unfinished");
    let c = config(&dir);
    let run = dir.join("r");
    let r = run.display().to_string();
    let (ok, out) = train(&c, "4", &run, &["--checkpoint-every", "2"]);
    assert!(ok, "{out}");
    std::fs::remove_file(run.join("checkpoint.safetensors")).unwrap();
    let args = [
        "seedselect",
        "--run",
        &r,
        "--label",
        "0",
        "--samples",
        "1",
        "--batch",
        "1",
        "--steps",
        "3",
        "--iters",
        "1",
        "--refs",
        "1",
    ];
    let (ok, out) = imba_env(&args, &[]);
    assert!(ok, "{out}");
    assert!(out.contains("is unfinished (step 2 of 4"), "{out}");
    let report = std::fs::read_to_string(run.join("seedselect-0/report.json")).unwrap();
    assert!(report.contains("\"of_steps\": 4"), "{report}");
}

/// Output into a pipe whose reader has gone (`imba info | head -1`) ends the command as
/// SIGPIPE ends other Unix tools: no panic, no backtrace.
#[cfg(unix)]
#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let mut child = spawn(&["info"]);
    drop(child.stdout.take()); // the reader is gone before the first line is written
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(13), "{status:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
