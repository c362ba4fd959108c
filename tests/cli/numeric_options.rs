//! Every numeric option of every command fed 0, −1, NaN, 10⁹ and 2³²−1: each is refused with
//! an error that names the option, or runs; none panics, aborts, or takes more than a few
//! hundred MB. The options are read from each command's `--help`, so a new option is covered
//! without a change here; an option is numeric when clap refuses `abc` for it as a number.

use super::{tempdir, text};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const VALUES: [&str; 5] = ["0", "-1", "NaN", "1000000000", "4294967295"];
/// Peak resident memory allowed to one case: a tiny run takes ~150–300 MB (the Vulkan driver
/// included); an allocation sized by an absurd count would take gigabytes.
const MAX_RSS_MB: u64 = 768;
/// A case still running after this is stopped and counted (its memory stayed bounded).
const TIME_LIMIT: Duration = Duration::from_secs(120);

/// The commands and the arguments that keep each one's work tiny (a case's own option
/// replaces the base's).
fn commands(run: &str, out: &str) -> Vec<(Vec<&'static str>, Vec<String>)> {
    let s = |v: &[&str]| {
        v.iter()
            .map(|x| x.replace("{run}", run).replace("{out}", out))
            .collect()
    };
    let tiny = ["--steps", "2", "--model", "tiny", "--sample-count", "0"];
    let eval = ["--eval-per-label", "2", "--eval-steps", "2"];
    vec![
        (
            vec!["train"],
            s(&[&tiny[..], &["--out", "{out}", "--quiet"]].concat()),
        ),
        (
            vec!["sample"],
            s(&[
                "--run", "{run}", "--count", "2", "--steps", "2", "--out", "{out}",
            ]),
        ),
        (vec!["eval"], s(&[&["--run", "{run}"][..], &eval].concat())),
        (
            vec!["compare"],
            s(&[
                &[
                    "--objectives",
                    "baseline",
                    "--seeds",
                    "0",
                    "--out",
                    "{out}",
                    "--quiet",
                ][..],
                &tiny,
                &eval,
            ]
            .concat()),
        ),
        (
            vec!["seedselect"],
            s(&[
                "--run",
                "{run}",
                "--label",
                "0",
                "--out",
                "{out}",
                "--refs",
                "2",
                "--samples",
                "2",
                "--steps",
                "3",
                "--iters",
                "1",
            ]),
        ),
        (
            vec!["invdiff"],
            s(&[
                &["--base", "{run}", "--out", "{out}", "--steps", "2"][..],
                &eval,
            ]
            .concat()),
        ),
        (vec!["info"], s(&["--model", "S/8", "--batch", "2"])),
        (
            vec!["bench", "train"],
            s(&[
                "--objectives",
                "baseline",
                "--reps",
                "1",
                "--untimed",
                "0",
                "--steps",
                "1",
                "--model",
                "tiny",
            ]),
        ),
        (
            vec!["bench", "kernels"],
            s(&["--reps", "1", "--warmup", "0", "--size", "2,1,4,4,2"]),
        ),
        (
            vec!["bench", "matmul"],
            s(&[
                "--reps",
                "1",
                "--warmup",
                "0",
                "--portable-reps",
                "0",
                "--shape",
                "8,8,8",
            ]),
        ),
        (
            vec!["bench", "dit"],
            s(&[
                "--reps",
                "1",
                "--warmup",
                "0",
                "--image-size",
                "8",
                "--depth",
                "1",
                "--batch",
                "2",
            ]),
        ),
    ]
}

/// The long options that take a value, from `--help`.
fn options_with_values(command: &[&str]) -> Vec<String> {
    let (ok, help) = super::imba(&[command, &["--help"]].concat());
    assert!(ok, "{command:?} --help: {help}");
    help.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l
                .strip_prefix("-")
                .and_then(|r| r.split_once(", "))
                .map_or(l, |x| x.1);
            let (name, rest) = l.split_once(' ')?;
            (name.starts_with("--") && rest.starts_with('<')).then(|| name.to_string())
        })
        .collect()
}

/// `base` without `option` and its value.
fn without(base: &[String], option: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < base.len() {
        if base[i] == option {
            i += 2;
            continue;
        }
        out.push(base[i].clone());
        i += 1;
    }
    out
}

/// A child's peak resident memory so far, in MB (0 once it has exited).
fn peak_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = status.lines().find_map(|l| l.strip_prefix("VmHWM:"));
    kb.and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

struct Outcome {
    code: Option<i32>,
    stopped: bool,
    peak_mb: u64,
    stderr: String,
}

/// Runs one case in `dir`, watching its memory, stopping it at [`TIME_LIMIT`].
fn run_case(args: &[String], dir: &Path) -> Outcome {
    let mut child = Command::new(env!("CARGO_BIN_EXE_imba"))
        .args(args)
        .current_dir(dir)
        .env("XDG_RUNTIME_DIR", "/tmp")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run imba");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut v).ok();
        v
    });
    let (start, mut peak, mut stopped) = (Instant::now(), 0, false);
    let status = loop {
        peak = peak.max(peak_mb(child.id()));
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > TIME_LIMIT {
            child.kill().ok();
            stopped = true;
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Outcome {
        code: status.code(),
        stopped,
        peak_mb: peak,
        stderr: text(&reader.join().unwrap()),
    }
}

/// Whether clap refuses `abc` for `option` as a number.
fn is_numeric(command: &[&str], base: &[String], option: &str, dir: &Path) -> bool {
    let mut args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
    args.extend(without(base, option));
    args.extend([option.to_string(), "abc".into()]);
    let o = run_case(&args, dir);
    o.stderr.contains("invalid digit") || o.stderr.contains("invalid float")
}

/// The problem with one case's outcome, if any.
fn problem(option: &str, o: &Outcome) -> Option<String> {
    let bare = option.trim_start_matches('-');
    let named = [
        bare.to_string(),
        bare.replace('-', "_"),
        bare.replace('-', " "),
    ]
    .iter()
    .any(|n| o.stderr.contains(n.as_str()));
    if o.stderr.contains("panicked") {
        return Some("panicked".into());
    }
    if o.peak_mb > MAX_RSS_MB {
        return Some(format!("took {} MB", o.peak_mb));
    }
    match o.code {
        _ if o.stopped => None,
        None => Some("ended by a signal".into()),
        Some(0) => None,
        Some(1 | 2) if named => None,
        Some(1 | 2) => Some("an error that does not name the option".into()),
        Some(c) => Some(format!("exit status {c}")),
    }
}

#[test]
fn every_numeric_option_of_every_command_is_refused_or_runs_within_bounds() {
    let dir = tempdir("numeric-options");
    let run = dir.join("run").display().to_string();
    let (ok, out) = super::imba(&[
        "train",
        "--steps",
        "2",
        "--model",
        "tiny",
        "--sample-count",
        "0",
        "--quiet",
        "--out",
        &run,
    ]);
    assert!(ok, "{out}");
    let (mut problems, mut counts) = (Vec::new(), [0usize; 4]);
    let mut case = 0;
    for (command, base) in commands(&run, "out") {
        for option in options_with_values(&command) {
            if !is_numeric(&command, &base, &option, &dir) {
                continue;
            }
            for value in VALUES {
                case += 1;
                let out = dir.join(format!("out{case}"));
                let base = without(&base, &option);
                let mut args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
                args.extend(base.iter().map(|a| match a.as_str() {
                    "out" => out.display().to_string(),
                    _ => a.clone(),
                }));
                args.push(format!("{option}={value}"));
                let o = run_case(&args, &dir);
                let kind = match o.code {
                    _ if o.stopped => 3,
                    Some(0) => 2,
                    Some(2) => 0,
                    _ => 1,
                };
                counts[kind] += 1;
                if let Some(p) = problem(&option, &o) {
                    let last = o.stderr.trim().lines().last().unwrap_or("").to_string();
                    problems.push(format!(
                        "{} {option} {value}: {p}: {last}",
                        command.join(" ")
                    ));
                }
                std::fs::remove_dir_all(&out).ok();
            }
        }
    }
    eprintln!(
        "{case} cases: {} refused by the parser, {} refused with the option named, {} ran, {} \
         stopped at the time limit",
        counts[0], counts[1], counts[2], counts[3]
    );
    assert!(
        case > 500,
        "only {case} cases: the options were not found in --help"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    std::fs::remove_dir_all(&dir).ok();
}
