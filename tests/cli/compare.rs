//! `imba eval` and `imba compare` end to end on a tiny toy2d configuration: the table, the
//! plots, the per-run results, the D monitor's log, reuse of finished runs, bad input.

use crate::{imba_split, tempdir};
use std::path::Path;

fn is_png(p: &Path) -> bool {
    std::fs::read(p).is_ok_and(|b| b.starts_with(b"\x89PNG"))
}

const TINY: [&str; 16] = [
    "--dataset",
    "toy2d",
    "--classes",
    "4",
    "--head-count",
    "40",
    "--imbalance",
    "10",
    "--model",
    "tiny",
    "--patch",
    "1",
    "--steps",
    "12",
    "--batch",
    "8",
];

#[test]
fn compare_runs_end_to_end_and_reuses_finished_runs() {
    let dir = tempdir("toy");
    let out = dir.join("cmp");
    let out_s = out.display().to_string();
    let mut args = vec!["compare"];
    args.extend(TINY);
    args.extend([
        "--objectives",
        "baseline,imba",
        "--seeds",
        "0,1",
        "--eval-per-label",
        "4",
        "--eval-steps",
        "4",
        "--out",
        &out_s,
    ]);
    let (ok, stdout, stderr) = imba_split(&args);
    assert!(ok, "{stdout}\n{stderr}");
    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    assert_eq!(md, stdout.trim_end().to_string() + "\n");
    for want in [
        "| baseline | 8 |",
        "| imba | 16 |",
        "hit/tail",
        "pull/tail",
        "Spearman",
    ] {
        assert!(md.contains(want), "compare.md lacks {want}:\n{md}");
    }
    for png in ["hit.png", "pull.png", "loss.png", "d_vs_frequency.png"] {
        assert!(is_png(&out.join(png)), "{png}");
    }
    for v in ["baseline", "imba"] {
        for s in ["seed0", "seed1"] {
            let run = out.join(v).join(s);
            let r: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(run.join("result.json")).unwrap())
                    .unwrap();
            assert_eq!(r["steps"], 12);
            assert_eq!(r["evaluation"]["samples"], 16);
            assert!(is_png(&run.join("eval_samples.png")));
            let d_lines = std::fs::read_to_string(run.join("d_monitor.jsonl"))
                .map(|t| t.lines().count())
                .unwrap_or(0);
            assert_eq!(d_lines, if v == "imba" { 12 } else { 0 }, "{v} {s}");
        }
    }
    // Seeds give different runs.
    let r0 = std::fs::read_to_string(out.join("imba/seed0/log.jsonl")).unwrap();
    let r1 = std::fs::read_to_string(out.join("imba/seed1/log.jsonl")).unwrap();
    assert_ne!(r0, r1);
    // A second call reuses all four runs and reports the same table.
    let (ok, stdout2, stderr2) = imba_split(&args);
    assert!(ok, "{stderr2}");
    assert_eq!(stderr2.matches("reusing").count(), 4, "{stderr2}");
    let table = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.starts_with('|'))
            .map(|l| {
                // The train-seconds column is the same too (it is read back), so whole rows
                // compare.
                l.to_string()
            })
            .collect()
    };
    assert_eq!(table(&stdout), table(&stdout2));
    // Other evaluation options re-score the same checkpoints without training again.
    let result = |run: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join(run).join("result.json")).unwrap())
            .unwrap()
    };
    let before = result("imba/seed0");
    let mut rescore = args.clone();
    rescore.extend(["--eval-seed", "7"]);
    let (ok, _, stderr3) = imba_split(&rescore);
    assert!(ok, "{stderr3}");
    assert_eq!(stderr3.matches("reusing").count(), 0, "{stderr3}");
    let after = result("imba/seed0");
    assert_eq!(after["eval_options"]["seed"], 7);
    assert_eq!(after["train_seconds"], before["train_seconds"]);
    assert_eq!(
        std::fs::read_to_string(out.join("imba/seed0/log.jsonl")).unwrap(),
        r0,
        "re-scoring trained again"
    );

    // `imba eval` on one of the runs.
    let run = out.join("imba/seed0");
    let (ok, stdout, stderr) = imba_split(&[
        "eval",
        "--run",
        &run.display().to_string(),
        "--eval-per-label",
        "3",
        "--eval-steps",
        "3",
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("hit/tail"), "{stdout}");
    assert!(run.join("eval.json").exists());

    // Other training options never reuse these runs: refused, with the option named.
    let mut other = args.clone();
    other.extend(["--lr", "0.01"]);
    let (ok, _, stderr) = imba_split(&other);
    assert!(!ok, "a run of other options was reused");
    assert!(
        stderr.contains("other options") && stderr.contains("lr (run:"),
        "{stderr}"
    );
    let mut report = other.clone();
    report.push("--report-only");
    let (ok, _, stderr) = imba_split(&report);
    assert!(!ok && stderr.contains("lr (run:"), "{stderr}");
}

#[test]
fn compare_refuses_unknown_objectives_and_folder_data() {
    let dir = tempdir("bad");
    let out = dir.join("cmp").display().to_string();
    let mut args = vec!["compare"];
    args.extend(TINY);
    args.extend(["--objectives", "baseline,magic", "--out", &out]);
    let (ok, _, stderr) = imba_split(&args);
    assert!(!ok);
    assert!(stderr.contains("unknown objective `magic`"), "{stderr}");
    let mut nan = vec!["compare"];
    nan.extend(TINY);
    nan.extend(["--guidance-sweep", "1,nan", "--out", &out]);
    let (ok, _, stderr) = imba_split(&nan);
    assert!(
        !ok && stderr.contains("`guidance-sweep` is NaN"),
        "{stderr}"
    );
    for (flag, value, named) in [
        (
            "--eval-guidance",
            "1e30",
            "`eval-guidance` is 1000000000000000000000000000000",
        ),
        (
            "--eval-per-label",
            "4000000000",
            "`eval-per-label` is 4000000000",
        ),
        ("--sample-steps", "100000", "`sample_steps` is 100000"),
    ] {
        let mut absurd = vec!["compare"];
        absurd.extend(TINY);
        absurd.extend([flag, value, "--out", &out]);
        let (ok, _, stderr) = imba_split(&absurd);
        assert!(!ok && stderr.contains(named), "{flag} {value}: {stderr}");
    }
    assert!(
        !dir.join("cmp").exists(),
        "a refused comparison wrote files"
    );
    let (ok, _, stderr) = imba_split(&[
        "compare",
        "--dataset",
        "folder",
        "--data-path",
        &dir.display().to_string(),
        "--out",
        &out,
    ]);
    assert!(!ok);
    assert!(stderr.contains("compare needs an oracle"), "{stderr}");
    assert!(
        !dir.join("cmp").exists(),
        "a refused comparison wrote files"
    );
    // Options no compared run reads are named: IMBA's γ among baselines, a single seed
    // beside --seeds, CBDM's τ on data that does not need it is read by cbdm only.
    let (_, _, stderr) = imba_split(&[
        "compare",
        "--objectives",
        "baseline,cbdm",
        "--gamma",
        "2",
        "--seed",
        "3",
        "--cbdm-tau",
        "2",
        "--report-only",
        "--out",
        &out,
    ]);
    for name in ["gamma", "seed"] {
        let note = format!("note: `{name}` changes none of the compared runs");
        assert!(stderr.contains(&note), "{name}: {stderr}");
    }
    assert!(!stderr.contains("`cbdm_tau` changes none"), "{stderr}");
}

/// CBDM and CCUA run through `imba compare` like the other objectives: two forward rows per
/// sample, and a regulariser that is logged (L_u) and non-zero.
#[test]
fn compare_runs_cbdm_and_ccua() {
    let dir = tempdir("pair");
    let out = dir.join("cmp");
    let out_s = out.display().to_string();
    let mut args = vec!["compare"];
    args.extend(TINY);
    args.extend([
        "--objectives",
        "cbdm,ccua",
        "--seeds",
        "0",
        "--eval-per-label",
        "4",
        "--eval-steps",
        "4",
        "--out",
        &out_s,
    ]);
    let (ok, stdout, stderr) = imba_split(&args);
    assert!(ok, "{stdout}\n{stderr}");
    for want in ["| cbdm | 16 |", "| ccua | 16 |", "hit/tail"] {
        assert!(stdout.contains(want), "compare.md lacks {want}:\n{stdout}");
    }
    for v in ["cbdm", "ccua"] {
        let log = std::fs::read_to_string(out.join(v).join("seed0").join("log.jsonl")).unwrap();
        let regularised = log
            .lines()
            .filter(|l| !l.contains("\"loss_u\":0.0,"))
            .count();
        assert!(
            regularised > 0,
            "{v}: the regulariser is 0 at every step:\n{log}"
        );
        assert!(out.join(v).join("seed0").join("result.json").exists());
    }
}

/// InvDiff as a compare variant: it freezes the baseline run of each seed (which must come
/// first), and its row counts the frozen and the δ forwards.
#[test]
fn compare_runs_invdiff_beside_its_baseline() {
    let dir = tempdir("invdiff");
    let out = dir.join("cmp");
    let out_s = out.display().to_string();
    let run = |objectives: &'static str| {
        let mut args = vec!["compare"];
        args.extend(TINY);
        args.extend([
            "--objectives",
            objectives,
            "--seeds",
            "0",
            "--eval-per-label",
            "4",
            "--eval-steps",
            "4",
            "--out",
            &out_s,
        ]);
        imba_split(&args)
    };
    let (ok, _, stderr) = run("invdiff,baseline");
    assert!(
        !ok && stderr.contains("list baseline before invdiff"),
        "{stderr}"
    );
    let (ok, stdout, stderr) = run("baseline,invdiff");
    assert!(ok, "{stdout}\n{stderr}");
    for want in ["| baseline | 8 |", "| invdiff | 16 |", "hit/tail"] {
        assert!(stdout.contains(want), "compare.md lacks {want}:\n{stdout}");
    }
    let seed = out.join("invdiff").join("seed0");
    for f in [
        "result.json",
        "report.json",
        "delta.safetensors",
        "groups.safetensors",
    ] {
        assert!(seed.join(f).exists(), "no {f}");
    }
}

/// The decisive experiment's machinery on a tiny run: the compute-matched baseline (2B rows
/// in one pass), IMBA with timestep-normalised D, snapshots scored as learning curves, a
/// guidance sweep, paired differences from the control with the decision column; a control
/// that is not compared and a missing snapshot are refused.
#[test]
fn compare_curves_sweep_and_paired_differences() {
    let dir = tempdir("paired");
    let out = dir.join("cmp");
    let out_s = out.display().to_string();
    let mut args = vec!["compare"];
    args.extend(TINY);
    args.extend([
        "--objectives",
        "dual-baseline,imba-tnorm,baseline-matched",
        "--seeds",
        "0,1",
        "--eval-per-label",
        "4",
        "--eval-steps",
        "3",
        "--snapshots",
        "--checkpoint-every",
        "6",
        "--guidance-sweep",
        "1",
        "--out",
        &out_s,
    ]);
    let (ok, md, stderr) = imba_split(&args);
    assert!(ok, "{md}\n{stderr}");
    for want in [
        "| baseline-matched | 16 |",
        "| imba-tnorm | 16 |",
        "| Δ vs dual-baseline | pairs |",
        "helps the tail?",
        "Learning curves",
        "| 6 |",
        "| 12 |",
        "Guidance sweep",
        "| 1 |",
        "| 1.5 |",
        "hit/slope",
    ] {
        assert!(md.contains(want), "compare.md lacks {want}:\n{md}");
    }
    let r: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("imba-tnorm/seed1/result.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(r["curve"][0]["step"], 6);
    assert_eq!(r["sweep"][0]["guidance"], 1.0);
    assert!(out.join("curve.png").exists(), "no learning-curve plot");
    let cfg = std::fs::read_to_string(out.join("baseline-matched/seed0/config.toml")).unwrap();
    assert!(cfg.contains("batch = 16"), "{cfg}");
    let cfg = std::fs::read_to_string(out.join("imba-tnorm/seed0/config.toml")).unwrap();
    assert!(cfg.contains("normalize = \"t-bucket\""), "{cfg}");
    // A rerun with another sweep scale scores only that scale, reusing everything else.
    let mut again = args.clone();
    let at = again.iter().position(|a| *a == "--guidance-sweep").unwrap();
    again[at + 1] = "1,2.6";
    let (ok, md2, stderr2) = imba_split(&again);
    assert!(ok, "{stderr2}");
    assert_eq!(
        stderr2.matches("scoring at guidance 2.6").count(),
        6,
        "{stderr2}"
    );
    assert_eq!(
        stderr2.matches("scoring the snapshot").count(),
        0,
        "{stderr2}"
    );
    assert!(md2.contains("| 2.6 |"), "{md2}");
    // A report over the finished runs only: seed 2 is listed as missing, not trained.
    let mut report = args.clone();
    let at = report.iter().position(|a| *a == "0,1").unwrap();
    report[at] = "0,1,2";
    report.push("--report-only");
    let (ok, md3, stderr) = imba_split(&report);
    assert!(ok, "{stderr}");
    assert!(
        md3.contains("Not finished yet") && md3.contains("imba-tnorm seed 2"),
        "{md3}"
    );
    assert!(
        !out.join("imba-tnorm/seed2").exists(),
        "a report-only comparison trained"
    );
    // A control that is not compared.
    let mut bad = args.clone();
    bad.extend(["--control", "baseline"]);
    let (ok, _, stderr) = imba_split(&bad);
    assert!(!ok && stderr.contains("control `baseline`"), "{stderr}");
    // `imba eval --step` of a snapshot that was not kept.
    let run = out.join("imba-tnorm/seed0").display().to_string();
    let (ok, _, stderr) = imba_split(&["eval", "--run", &run, "--step", "5"]);
    assert!(!ok && stderr.contains("no snapshot of step 5"), "{stderr}");
    let (ok, stdout, stderr) = imba_split(&[
        "eval",
        "--run",
        &run,
        "--step",
        "6",
        "--eval-per-label",
        "2",
        "--eval-steps",
        "2",
    ]);
    assert!(ok && stdout.contains("hit/tail"), "{stdout}{stderr}");
}

/// The concept-balancing arms through `imba compare`: the host weight rules and the
/// sample-wise timestep-normalised D train beside the control, each seed on its own data draw
/// (`--data-per-seed`, shared by the objectives of a seed), and `raw.jsonl` holds every scored
/// point, from which the tables script recomputes its tables. Repeated objectives or seeds,
/// and a data seed beside `--data-per-seed`, are refused before anything runs.
#[test]
fn compare_concept_balancing_arms_per_seed_data_and_raw_results() {
    let dir = tempdir("arms");
    let out = dir.join("cmp");
    let out_s = out.display().to_string();
    let mut args = vec!["compare"];
    args.extend(TINY);
    args.extend([
        "--objectives",
        "dual-baseline,class-mean-d,inverse-frequency,shuffled-d,imba-tnorm-sample,time-mean-d",
        "--seeds",
        "0,1",
        "--data-per-seed",
        "--eval-per-label",
        "4",
        "--eval-steps",
        "3",
        "--guidance-sweep",
        "1,2",
        "--out",
        &out_s,
    ]);
    let (ok, md, stderr) = imba_split(&args);
    assert!(ok, "{md}\n{stderr}");
    for v in [
        "class-mean-d",
        "inverse-frequency",
        "shuffled-d",
        "imba-tnorm-sample",
        "time-mean-d",
    ] {
        assert!(
            md.contains(&format!("| {v} |")),
            "compare.md lacks {v}:\n{md}"
        );
    }
    assert!(
        md.contains("the run's seed (each seed its own data draw)"),
        "{md}"
    );
    let split = |v: &str, s: u32| {
        std::fs::read_to_string(out.join(format!("{v}/seed{s}/split.json"))).unwrap()
    };
    assert_eq!(
        split("dual-baseline", 1),
        split("class-mean-d", 1),
        "one seed, one data set"
    );
    assert_ne!(
        split("dual-baseline", 0),
        split("dual-baseline", 1),
        "the data follow the seed"
    );
    let cfg = std::fs::read_to_string(out.join("shuffled-d/seed1/config.toml")).unwrap();
    assert!(
        cfg.contains("weight_rule = \"shuffled-d\"") && cfg.contains("data_seed = 1"),
        "{cfg}"
    );
    // Six objectives × two seeds × three guidance scales.
    let raw = std::fs::read_to_string(out.join("raw.jsonl")).unwrap();
    assert_eq!(raw.lines().count(), 36, "{raw}");
    let first: serde_json::Value = serde_json::from_str(raw.lines().next().unwrap()).unwrap();
    assert_eq!(first["process"], "flow", "the default process");
    assert!(
        first["per_label"].as_array().is_some_and(|l| l.len() == 4),
        "{first}"
    );
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        crate::common::skip("raw tables", "python3 is not installed");
    } else {
        let raw_dir = dir.join("raw");
        std::fs::create_dir_all(&raw_dir).unwrap();
        std::fs::copy(out.join("raw.jsonl"), raw_dir.join("tiny.jsonl")).unwrap();
        let script = crate::common::repo_root().join("scripts/results_tables.py");
        let tables = std::process::Command::new("python3")
            .arg(&script)
            .arg(&raw_dir)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&tables.stdout);
        assert!(
            tables.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&tables.stderr)
        );
        for want in [
            "<!-- table tiny paired -->",
            "| shuffled-d | 2 |",
            "w = 2",
            "<!-- table tiny rarity -->",
            "<!-- table tiny speed -->",
            "| dual-baseline at w = 2 | 2 |",
        ] {
            assert!(text.contains(want), "the tables lack {want}:\n{text}");
        }
        // The readings apply the decision rule to every arm; two pairs are interim.
        let readings = text
            .split("<!-- table all readings -->")
            .nth(1)
            .unwrap_or("");
        assert!(
            readings.contains("| tiny |  | shuffled-d | 2 |") && readings.contains(" of 10)"),
            "the readings lack the tiny comparison's arms:\n{text}"
        );
    }
    for (flag, value, named) in [
        ("--seeds", "0,0", "seed 0 is listed twice"),
        (
            "--objectives",
            "imba,imba",
            "objective imba is listed twice",
        ),
        ("--data-seed", "3", "leave out --data-seed"),
    ] {
        let mut bad = args.clone();
        let fresh = dir.join("refused").display().to_string();
        let at = bad.iter().position(|a| *a == out_s).unwrap();
        bad[at] = &fresh;
        match bad.iter().position(|a| *a == flag) {
            Some(i) => bad[i + 1] = value,
            None => bad.extend([flag, value]),
        }
        let (ok, _, stderr) = imba_split(&bad);
        assert!(!ok && stderr.contains(named), "{flag} {value}: {stderr}");
        assert!(
            !dir.join("refused").exists(),
            "a refused comparison wrote files"
        );
    }
}

/// Every table of RESULTS.md equals what the tables script recomputes from the committed raw
/// results (docs/results/concepts), and the script's statistics match known answers.
#[test]
fn results_tables_match_the_committed_raw_results() {
    let root = crate::common::repo_root();
    let script = root.join("scripts/results_tables.py");
    for args in [&["--check", "RESULTS.md"][..], &["--self-test"][..]] {
        let Ok(out) = std::process::Command::new("python3")
            .arg(&script)
            .args(args)
            .current_dir(&root)
            .output()
        else {
            crate::common::skip(
                "results_tables_match_the_committed_raw_results",
                "no python3",
            );
            return;
        };
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Each row of the Markdown table whose header contains `column`: (first cell, that cell's
/// first three numbers: mean, low, high), the minus signs of either writer read alike.
fn column_numbers(table: &str, column: &str) -> Vec<(String, Vec<f64>)> {
    let mut lines = table
        .lines()
        .skip_while(|l| !(l.starts_with('|') && l.contains(column)));
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let at = header.split('|').position(|c| c.contains(column)).unwrap();
    lines
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').collect();
            let numbers = cells[at]
                .replace('−', "-")
                .split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
                .filter_map(|x| x.parse::<f64>().ok())
                .take(3)
                .collect();
            (cells[1].trim().to_string(), numbers)
        })
        .collect()
}

/// Two implementations of the primary endpoint agree on the committed records of a real
/// comparison: the report's "Δtail at matched diversity" (Rust, from the runs' result.json)
/// and the tables script's (Python, from the raw results that same report writes).
#[test]
fn the_report_and_the_tables_script_agree_on_the_matched_endpoint() {
    let root = crate::common::repo_root();
    let lane = "shapes-flow-mech";
    let dir = tempdir("matched");
    let out = report_from_kept_records(&dir).join(lane);
    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    let rust = column_numbers(&md, "Δtail at matched diversity");

    let raw = dir.join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    std::fs::copy(out.join("raw.jsonl"), raw.join(format!("{lane}.jsonl"))).unwrap();
    let Ok(tables) = std::process::Command::new("python3")
        .arg(root.join("scripts/results_tables.py"))
        .arg(&raw)
        .output()
    else {
        crate::common::skip("the_report_and_the_tables_script_agree", "no python3");
        return;
    };
    let text = String::from_utf8_lossy(&tables.stdout);
    let paired = text
        .split(&format!("<!-- table {lane} paired -->"))
        .nth(1)
        .unwrap_or("");
    let python = column_numbers(paired, "at matched diversity");
    assert!(
        rust.len() >= 5 && rust.len() == python.len(),
        "{md}\n{paired}"
    );
    for ((arm, r), (arm_py, p)) in rust.iter().zip(&python) {
        assert_eq!(arm, arm_py);
        assert_eq!(r.len(), 3, "{arm}: {md}");
        for (a, b) in r.iter().zip(p) {
            // Both print three decimals of nearly the same double.
            assert!((a - b).abs() <= 0.0011, "{arm}: report {r:?}, script {p:?}");
        }
    }
}

/// The committed raw results follow from the committed run records: the experiment script's
/// `report`, run on a fresh folder, restores every kept record and writes each lane's raw
/// results, which hold every line of the committed ones (a lane may have gained records
/// since its raw results were copied, never lost or changed one). Lanes committed without
/// records (run before records were kept) are skipped.
#[test]
fn the_committed_raw_results_follow_from_the_kept_run_records() {
    let root = crate::common::repo_root();
    let out = report_from_kept_records(&tempdir("kept"));
    let kept = root.join("docs/results/concepts/runs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&kept).unwrap() {
        let lane = entry.unwrap().file_name().to_string_lossy().to_string();
        let committed = root.join(format!("docs/results/concepts/{lane}.jsonl"));
        let Ok(committed) = std::fs::read_to_string(&committed) else {
            continue; // records kept, raw results not copied yet
        };
        let made = std::fs::read_to_string(out.join(&lane).join("raw.jsonl")).unwrap();
        let made: std::collections::HashSet<&str> = made.lines().collect();
        for (i, line) in committed.lines().enumerate() {
            assert!(
                made.contains(line),
                "{lane}.jsonl line {} is not what its kept records give:\n{line}",
                i + 1
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 2,
        "only {checked} lanes had raw results and records"
    );
}

/// The experiment script's `report` into a fresh folder under `dir`: every kept run record
/// restored, and each lane's compare.md and raw.jsonl written from them. Its folder.
fn report_from_kept_records(dir: &std::path::Path) -> std::path::PathBuf {
    let out = dir.join("concepts");
    let done = std::process::Command::new("bash")
        .arg(crate::common::repo_root().join("scripts/concept_balancing.sh"))
        .arg("report")
        .arg(&out)
        .env("IMBA_BIN", env!("CARGO_BIN_EXE_imba"))
        .env("XDG_RUNTIME_DIR", "/tmp")
        .current_dir(crate::common::repo_root())
        .output()
        .unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    out
}
