//! `imba train` and `imba sample` as a user runs them: a TOML config with flag overrides,
//! checkpoints, resume, a crash during a checkpoint write, divergence, sampling.

use crate::{imba_env, tempdir};
use std::path::Path;

fn step_of(ckpt: &Path) -> u32 {
    imba::train::state::load(ckpt).unwrap().state.step
}

pub const TINY: &str = "dataset = 'shapes'\nimage_size = 8\nhead_count = 6\nimbalance = 3.0\n\
                    model = 'tiny'\nbatch = 4\nsteps = 100\nwarmup = 2\nsample_count = 4\n\
                    sample_steps = 3\ncheckpoint_every = 2\nprocess = 'ddpm'\n";

#[test]
fn train_resume_crash_and_sample() {
    let dir = tempdir("run");
    let cfg = dir.join("run.toml");
    std::fs::write(&cfg, TINY).unwrap();
    let run = dir.join("r");
    let (c, r) = (cfg.to_str().unwrap(), run.to_str().unwrap());
    // The flag overrides the file's 100 steps.
    let (ok, out) = imba_env(
        &[
            "train", "--config", c, "--steps", "4", "--out", r, "--quiet",
        ],
        &[],
    );
    assert!(ok, "{out}");
    for f in [
        "checkpoint.safetensors",
        "model.safetensors",
        "log.jsonl",
        "loss.png",
        "config.toml",
        "split.json",
        "samples/grid.png",
        "samples/samples.safetensors",
        "samples/score.json",
    ] {
        assert!(run.join(f).exists(), "{f} missing; {out}");
    }
    // The end-of-run samples are read by the oracle, by bucket.
    assert!(
        out.contains("end-of-run samples (guidance") && out.contains("success/tail"),
        "{out}"
    );
    let ckpt = run.join("checkpoint.safetensors");
    assert_eq!(step_of(&ckpt), 4);
    assert_eq!(
        std::fs::read_to_string(run.join("log.jsonl"))
            .unwrap()
            .lines()
            .count(),
        4
    );
    // The written model loads with the DiT checkpoint importer.
    let saved = imba::train::state::load(&ckpt).unwrap();
    imba::model::checkpoint::load(&run.join("model.safetensors"), &saved.model).unwrap();

    // A second run into the same folder is refused; a resume may not change the lr.
    let (ok, out) = imba_env(
        &[
            "train", "--config", c, "--steps", "4", "--out", r, "--quiet",
        ],
        &[],
    );
    assert!(!ok && out.contains("--resume"), "{out}");
    let (ok, out) = imba_env(
        &[
            "train", "--resume", r, "--steps", "6", "--lr", "0.5", "--quiet",
        ],
        &[],
    );
    assert!(!ok && out.contains("lr"), "{out}");

    // Killed while writing the step-6 checkpoint: the log already holds steps 5 and 6, the
    // temporary file is half written and the step-4 checkpoint is still in place. Made here
    // from a real step-6 run, then resumed.
    let step4 = std::fs::read(&ckpt).unwrap();
    let (ok, out) = imba_env(&["train", "--resume", r, "--steps", "6", "--quiet"], &[]);
    assert!(ok, "{out}");
    let step6 = std::fs::read(&ckpt).unwrap();
    std::fs::write(&ckpt, &step4).unwrap();
    std::fs::write(
        run.join("checkpoint.safetensors.tmp"),
        &step6[..step6.len() / 2],
    )
    .unwrap();
    assert_eq!(step_of(&ckpt), 4);
    let (ok, out) = imba_env(&["train", "--resume", r, "--steps", "6", "--quiet"], &[]);
    assert!(ok, "{out}");
    assert_eq!(step_of(&ckpt), 6);
    // The redone steps give the same parameters as the first step-6 run.
    let first = dir.join("first-step6.safetensors");
    std::fs::write(&first, &step6).unwrap();
    assert_eq!(
        imba::train::state::load(&ckpt).unwrap().state.params,
        imba::train::state::load(&first).unwrap().state.params,
        "the resumed run is not bit-exact"
    );
    let log = std::fs::read_to_string(run.join("log.jsonl")).unwrap();
    let steps: Vec<u32> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<imba::train::StepStats>(l)
                .unwrap()
                .step
        })
        .collect();
    assert_eq!(
        steps,
        vec![1, 2, 3, 4, 5, 6],
        "the log repeats or misses steps"
    );
    // The D monitor's log is cut back and continued the same way, and summarised at the end.
    let d_steps: Vec<u32> =
        imba::train::run::read_jsonl::<imba::train::monitor::DLine>(&run.join("d_monitor.jsonl"))
            .iter()
            .map(|l| l.step)
            .collect();
    assert_eq!(d_steps, vec![1, 2, 3, 4, 5, 6]);
    assert!(run.join("d_monitor.json").exists() && run.join("d_vs_frequency.png").exists());
    // So is the monitor by timestep: every sample of every step, with its unweighted error
    // and D; the step log carries the unweighted conditional MSE.
    let t_lines: Vec<imba::train::time_monitor::TLine> =
        imba::train::run::read_jsonl(&run.join("t_monitor.jsonl"));
    assert_eq!(
        t_lines.iter().map(|l| l.step).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );
    for l in &t_lines {
        assert_eq!(
            (l.t.len(), l.mse.len(), l.d.len(), l.cond.len()),
            (4, 4, 4, 4)
        );
        assert!(
            l.mse.iter().chain(&l.d).all(|v| v.is_finite() && *v > 0.0),
            "{l:?}"
        );
        assert!(l.t.iter().all(|t| (0.0..1.0).contains(t)));
    }
    assert!(log
        .lines()
        .all(|l| serde_json::from_str::<imba::train::StepStats>(l)
            .unwrap()
            .mse_c
            .is_some_and(|m| m > 0.0)));
    for f in ["t_summary.json", "mse_vs_t.png", "d_vs_t.png"] {
        assert!(run.join(f).exists(), "{f} missing");
    }

    // Sampling by label name and by number.
    let s = dir.join("s");
    let (ok, out) = imba_env(
        &[
            "sample",
            "--run",
            r,
            "--labels",
            "red-square,3",
            "--count",
            "2",
            "--steps",
            "3",
            "--out",
            s.to_str().unwrap(),
        ],
        &[],
    );
    assert!(ok, "{out}");
    assert!(
        s.join("grid.png").exists() && s.join("samples/0000-red-square.png").exists(),
        "{out}"
    );
    // Which weights were sampled is said and recorded beside the samples.
    assert!(out.contains("EMA weights of step 6 of 6"), "{out}");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.join("provenance.json")).unwrap()).unwrap();
    assert_eq!(
        (record["step"].as_u64(), record["of_steps"].as_u64()),
        (Some(6), Some(6))
    );
    // A second call into the same folder replaces the set: 4 PNGs before, 1 after.
    let pngs = || std::fs::read_dir(s.join("samples")).unwrap().count();
    assert_eq!(pngs(), 4);
    let (ok, out) = imba_env(
        &[
            "sample", "--run", r, "--labels", "3", "--count", "1", "--steps", "3",
        ]
        .iter()
        .copied()
        .chain(["--out", s.to_str().unwrap()])
        .collect::<Vec<_>>(),
        &[],
    );
    assert!(ok, "{out}");
    assert_eq!(
        pngs(),
        1,
        "the first call's PNGs stayed beside the second's"
    );
    let (ok, out) = imba_env(&["sample", "--run", r, "--labels", "purple-blob"], &[]);
    assert!(!ok && out.contains("unknown label"), "{out}");
    sample_the_exported_model(&run, &s);

    // SeedSelect on the same run: a report and both sets of samples; bad options named.
    let ss = dir.join("ss");
    let ss_args = |steps: &'static str, label: &'static str| {
        vec![
            "seedselect",
            "--run",
            r,
            "--label",
            label,
            "--samples",
            "3",
            "--batch",
            "2",
            "--steps",
            steps,
            "--iters",
            "2",
            "--out",
            ss.to_str().unwrap(),
        ]
    };
    let (ok, out) = imba_env(&ss_args("3", "red-square"), &[]);
    assert!(ok, "{out}");
    assert!(out.contains("success") && out.contains("per seed"), "{out}");
    for f in ["report.json", "plain/grid.png", "selected/grid.png"] {
        assert!(ss.join(f).exists(), "seedselect did not write {f}: {out}");
    }
    let report: imba::remedies::seedselect::Report =
        serde_json::from_str(&std::fs::read_to_string(ss.join("report.json")).unwrap()).unwrap();
    assert_eq!(report.losses.len(), 3);
    assert!((0.0..=1.0).contains(&report.plain_success));
    let (ok, out) = imba_env(&ss_args("2", "red-square"), &[]);
    assert!(!ok && out.contains("`steps` must be at least 3"), "{out}");
    let (ok, out) = imba_env(&ss_args("3", "purple-blob"), &[]);
    assert!(!ok && out.contains("unknown label"), "{out}");
    let mut zero = ss_args("3", "red-square");
    zero.extend(["--sem-weight", "0", "--app-weight", "0"]);
    let (ok, out) = imba_env(&zero, &[]);
    assert!(!ok && out.contains("are both 0"), "{out}");
    // InvDiff on the same run, then a bad option.
    let inv = dir.join("inv");
    let inv_args = |groups: &'static str| {
        vec![
            "invdiff",
            "--base",
            r,
            "--steps",
            "3",
            "--draws",
            "1",
            "--groups",
            groups,
            "--eval-per-label",
            "1",
            "--eval-steps",
            "3",
            "--out",
            inv.to_str().unwrap(),
        ]
    };
    let (ok, out) = imba_env(&inv_args("4"), &[]);
    assert!(ok, "{out}");
    assert!(out.contains("frozen") && out.contains("invdiff"), "{out}");
    for f in [
        "report.json",
        "groups.safetensors",
        "delta.safetensors",
        "log.jsonl",
    ] {
        assert!(inv.join(f).exists(), "invdiff did not write {f}: {out}");
    }
    let (ok, out) = imba_env(&inv_args("1"), &[]);
    assert!(!ok && out.contains("at least 2 groups"), "{out}");
}

#[test]
fn divergence_stops_with_the_step_named() {
    let dir = tempdir("nan");
    let cfg = dir.join("run.toml");
    std::fs::write(&cfg, TINY).unwrap();
    // An absurd step size is refused before training, naming its bound.
    let (ok, out) = imba_env(
        &[
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            dir.join("lr").to_str().unwrap(),
            "--lr",
            "1e30",
        ],
        &[],
    );
    assert!(!ok && out.contains("`lr` must be in (0, 1]"), "{out}");
    // A weight decay far above its scale, with a sane lr, diverges: training stops at the step
    // with the last good checkpoint kept, and the advice names the weight decay, not the lr.
    let run = dir.join("wd");
    let (ok, out) = imba_env(
        &[
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "--weight-decay",
            "1e12",
            "--clip",
            "0",
            "--checkpoint-every",
            "1",
            "--steps",
            "50",
            "--quiet",
        ],
        &[],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("training stopped: step") && out.contains("last good checkpoint"),
        "{out}"
    );
    // The checkpoint left behind loads.
    imba::train::state::load(&run.join("checkpoint.safetensors")).unwrap();
    assert!(out.contains("`weight_decay` = 1.0e12"), "{out}");
}

#[test]
fn unknown_config_keys_are_named() {
    let dir = tempdir("badcfg");
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "learning_rate = 0.1\n").unwrap();
    let out_dir = dir.join("r");
    let (ok, out) = imba_env(
        &[
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok && out.contains("learning_rate"), "{out}");
    assert!(!out_dir.exists(), "a refused run left a folder behind");
}

/// An option the data set and objective do not read is named and left out of the run's
/// config, so the folder records only what trained it.
#[test]
fn options_that_apply_to_nothing_are_named_and_not_recorded() {
    let dir = tempdir("unread");
    let out_dir = dir.join("r");
    let (ok, out) = imba_env(
        &[
            "train",
            "--steps",
            "1",
            "--model",
            "tiny",
            "--sample-count",
            "0",
            "--objective",
            "baseline",
            "--data-path",
            "elsewhere",
            "--gamma",
            "3",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        &[],
    );
    assert!(ok, "{out}");
    for name in ["data_path", "gamma"] {
        let note = format!("note: `{name}` does not apply to shapes data with objective baseline");
        assert!(out.contains(&note), "{name}: {out}");
    }
    let config = std::fs::read_to_string(out_dir.join("config.toml")).unwrap();
    assert!(
        !config.contains("elsewhere") && config.contains("gamma = 0.8"),
        "{config}"
    );
}

/// A run killed with SIGKILL at an arbitrary moment (here: soon after its first checkpoint)
/// resumes to the same parameters as a run that was never interrupted.
#[test]
fn killed_run_resumes_to_the_same_bits() {
    let dir = tempdir("kill");
    let cfg = dir.join("run.toml");
    std::fs::write(&cfg, TINY).unwrap();
    let c = cfg.to_str().unwrap();
    let whole = dir.join("whole");
    let (ok, out) = imba_env(
        &[
            "train",
            "--config",
            c,
            "--steps",
            "24",
            "--out",
            whole.to_str().unwrap(),
            "--quiet",
        ],
        &[],
    );
    assert!(ok, "{out}");

    let killed = dir.join("killed");
    let k = killed.to_str().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_imba"))
        .args([
            "train", "--config", c, "--steps", "24", "--out", k, "--quiet",
        ])
        .env("XDG_RUNTIME_DIR", "/tmp")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ckpt = killed.join("checkpoint.safetensors");
    let t = std::time::Instant::now();
    while !ckpt.exists() && t.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the run finished before it could be killed"
    );
    let at = step_of(&ckpt);
    assert!(at < 24, "killed at step {at}");
    let (ok, out) = imba_env(&["train", "--resume", k, "--steps", "24", "--quiet"], &[]);
    assert!(ok, "{out}");
    let load = |p: &Path| imba::train::state::load(&p.join("checkpoint.safetensors")).unwrap();
    let (a, b) = (load(&whole), load(&killed));
    assert_eq!(b.state.step, 24);
    assert!(
        a.state.params == b.state.params && a.state.ema == b.state.ema,
        "not bit-exact"
    );
    assert!(
        a.state.m == b.state.m && a.state.v == b.state.v,
        "moments differ"
    );
    let steps: Vec<u32> = imba::train::RunDir::new(&killed)
        .read_log()
        .iter()
        .map(|s| s.step)
        .collect();
    assert_eq!(
        steps,
        (1..=24).collect::<Vec<_>>(),
        "the log repeats or misses steps"
    );
}

/// Writes an IDX file of unsigned bytes: the magic for `dims.len()` dimensions, the
/// dimensions, the values.
fn write_idx(path: &std::path::Path, dims: &[u32], values: &[u8]) {
    let mut v = (0x0800u32 + dims.len() as u32).to_be_bytes().to_vec();
    for d in dims {
        v.extend(d.to_be_bytes());
    }
    v.extend(values);
    std::fs::write(path, v).unwrap();
}

/// `--dataset idx` on a folder of MNIST-format files: three classes of 8×8 images (a bright
/// square in a class's own corner), cut to a long tail, trained, and its end-of-run samples
/// read by the k-NN oracle over the test split.
#[test]
fn idx_data_trains_and_is_scored() {
    let dir = tempdir("idx");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for (split, per) in [("train", 24usize), ("t10k", 120)] {
        let (mut pixels, mut labels) = (Vec::new(), Vec::new());
        for i in 0..3 * per {
            let c = i % 3;
            for p in 0..64 {
                let (x, y) = (p % 8, p / 8);
                let (cx, cy) = [(1, 1), (5, 1), (3, 5)][c];
                let lit = x >= cx && x < cx + 3 && y >= cy && y < cy + 3;
                pixels.push(if lit { 230 } else { ((i * 7 + p) % 20) as u8 });
            }
            labels.push(c as u8);
        }
        write_idx(
            &data.join(format!("{split}-images-idx3-ubyte")),
            &[3 * per as u32, 8, 8],
            &pixels,
        );
        write_idx(
            &data.join(format!("{split}-labels-idx1-ubyte")),
            &[3 * per as u32],
            &labels,
        );
    }
    let (d, run) = (
        data.display().to_string(),
        dir.join("r").display().to_string(),
    );
    let (ok, out) = imba_env(
        &[
            "train",
            "--dataset",
            "idx",
            "--data-path",
            &d,
            "--imbalance",
            "4",
            "--model",
            "tiny",
            "--patch",
            "2",
            "--steps",
            "3",
            "--batch",
            "4",
            "--sample-count",
            "6",
            "--out",
            &run,
            "--quiet",
        ],
        &[],
    );
    assert!(ok, "{out}");
    assert!(out.contains("acc/tail"), "{out}");
    let split = std::fs::read_to_string(dir.join("r/split.json")).unwrap();
    assert!(split.contains("\"imbalance\": 4.0"), "{split}");
    let (ok, out) = imba_env(
        &[
            "eval",
            "--run",
            &run,
            "--eval-per-label",
            "2",
            "--eval-steps",
            "2",
        ],
        &[],
    );
    assert!(ok && out.contains("5-NN over"), "{out}");
    // The shorthand names the folder in the data set option.
    let short = dir.join("short");
    let dataset = format!("idx:{d}");
    let args = [
        "train",
        "--dataset",
        &dataset,
        "--model",
        "tiny",
        "--patch",
        "2",
    ];
    let rest = [
        "--imbalance",
        "4",
        "--steps",
        "1",
        "--batch",
        "4",
        "--sample-count",
        "0",
        "--quiet",
    ];
    let (ok, out) = imba_env(
        &[&args[..], &rest, &["--out", short.to_str().unwrap()]].concat(),
        &[],
    );
    assert!(ok, "{out}");
    let config = std::fs::read_to_string(short.join("config.toml")).unwrap();
    assert!(config.contains(&format!("data_path = \"{d}\"")), "{config}");
}

/// `imba sample --model` draws from the run's exported model alone what `--run` drew (the
/// last call sampled label 3 once with 3 steps into `from_run`), says which step it is of,
/// and refuses a training checkpoint and raw weights by name.
fn sample_the_exported_model(run: &std::path::Path, from_run: &std::path::Path) {
    let model = run.join("model.safetensors");
    let m = model.to_str().unwrap();
    let s = run.join("from-model");
    let args = [
        "sample", "--model", m, "--labels", "3", "--count", "1", "--steps", "3",
    ];
    let out_arg = ["--out", s.to_str().unwrap()];
    let (ok, out) = imba_env(&[&args[..], &out_arg].concat(), &[]);
    assert!(ok, "{out}");
    assert!(out.contains("EMA weights of step 6 of 6"), "{out}");
    let tensors = |d: &std::path::Path| std::fs::read(d.join("samples.safetensors")).unwrap();
    assert_eq!(
        tensors(&s),
        tensors(from_run),
        "the export samples as its run"
    );
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.join("provenance.json")).unwrap()).unwrap();
    assert_eq!(record["model"].as_str(), Some(m));
    let checkpoint = run.join("checkpoint.safetensors");
    let (ok, out) = imba_env(&["sample", "--model", checkpoint.to_str().unwrap()], &[]);
    assert!(
        !ok && out.contains("this is a training checkpoint"),
        "{out}"
    );
    let (ok, out) = imba_env(&["sample", "--model", m, "--no-ema"], &[]);
    assert!(!ok && out.contains("EMA weights only"), "{out}");
}
