//! Data-parallel training as a user runs it: `mpirun -n 2 imba train` on lavapipe against one
//! process, itself, a resume with another number of ranks, and a killed rank. Built without
//! the `mpi` feature, or without `mpirun`, each check is a counted skip.

use crate::common::skip;
use crate::train::TINY;
use crate::{imba_env, tempdir};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The largest difference allowed between a parameter trained by two ranks and by one
/// process (batch 8, 8 steps): the gradients' sums run in another order, so they agree to
/// f32 rounding (measured: 3e-8 after 12 steps of the default model).
const TOLERANCE: f32 = 1e-5;

/// The config of these runs: TINY at batch 8 (4 samples per rank).
fn config(dir: &Path) -> String {
    let cfg = dir.join("run.toml");
    std::fs::write(
        &cfg,
        format!("{TINY}batch = 8\n").replace("batch = 4\n", ""),
    )
    .unwrap();
    cfg.display().to_string()
}

/// Whether this build and machine can run the checks; else records the skip.
fn available(test: &str) -> bool {
    if !cfg!(feature = "mpi") {
        skip(
            test,
            "built without the `mpi` feature (cargo test --features mpi)",
        );
        return false;
    }
    if Command::new("mpirun").arg("--version").output().is_err() {
        skip(
            test,
            "no mpirun on this machine (apt-get install openmpi-bin)",
        );
        return false;
    }
    true
}

fn mpirun_command(ranks: usize, args: &[&str]) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["-n", &ranks.to_string(), "--oversubscribe"])
        .arg(env!("CARGO_BIN_EXE_imba"))
        .args(args)
        .env("XDG_RUNTIME_DIR", "/tmp")
        // One lavapipe thread per rank: the ranks share this machine's cores.
        .env("LP_NUM_THREADS", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn mpirun(ranks: usize, args: &[&str]) -> (bool, String) {
    let out = mpirun_command(ranks, args).output().expect("run mpirun");
    (out.status.success(), output_text(&out))
}

/// `imba train` of `cfg` for `steps` into `out`, on `ranks` ranks (1: a plain process).
fn train(ranks: usize, cfg: &str, steps: &str, out: &Path, resume: bool) -> String {
    let o = out.display().to_string();
    let mut args = vec!["train", "--config", cfg, "--steps", steps, "--quiet"];
    args.extend(if resume {
        ["--resume", &o]
    } else {
        ["--out", &o]
    });
    let (ok, text) = match ranks {
        1 => imba_env(&args, &[]),
        n => mpirun(n, &args),
    };
    assert!(ok, "{ranks} ranks: {text}");
    text
}

/// Every f32 tensor of a checkpoint, by name.
fn tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<f32>)> = st
        .tensors()
        .into_iter()
        .filter(|(_, t)| t.dtype() == safetensors::Dtype::F32)
        .map(|(n, t)| (n, bytemuck::pod_collect_to_vec(t.data())))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The largest difference between the two checkpoints' values.
fn max_difference(a: &Path, b: &Path) -> f32 {
    let (x, y) = (tensors(a), tensors(b));
    assert_eq!(x.len(), y.len());
    x.iter()
        .zip(&y)
        .flat_map(|((na, va), (nb, vb))| {
            assert_eq!(na, nb);
            va.iter().zip(vb).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

fn losses(run: &Path) -> Vec<f32> {
    imba::train::run::read_log(&run.join("log.jsonl"))
        .iter()
        .map(|s| s.loss)
        .collect()
}

/// A two-rank run of many steps in a fresh folder under `name`, once its second checkpoint
/// is written: the job, the config and the run folder.
fn long_run(name: &str) -> (std::process::Child, String, PathBuf) {
    let dir = tempdir(name);
    let cfg = config(&dir);
    let run = dir.join("run");
    let o = run.display().to_string();
    let args = [
        "train", "--config", &cfg, "--steps", "100000", "--out", &o, "--quiet",
    ];
    let job = mpirun_command(2, &args).spawn().unwrap();
    let started = Instant::now();
    while !run.join("checkpoint.prev.safetensors").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint came"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (job, cfg, run)
}

/// The step of the run's checkpoint, after resuming it (on `ranks` ranks) for two more steps.
fn resume_two_more(ranks: usize, cfg: &str, run: &Path) -> u32 {
    let step = imba::train::state::load(&run.join("checkpoint.safetensors"))
        .unwrap()
        .state
        .step;
    train(ranks, cfg, &(step + 2).to_string(), run, true);
    assert_eq!(losses(run).len() as u32, step + 2);
    step
}

fn output_text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn ctrl_c_stops_every_rank_after_the_same_step_with_a_checkpoint() {
    let test = "parallel::ctrl_c_stops_every_rank_after_the_same_step_with_a_checkpoint";
    if !available(test) {
        return;
    }
    let (job, cfg, run) = long_run("parallel-stop");
    let pid = job.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let text = output_text(&job.wait_with_output().unwrap());
    assert!(text.contains("stopped by"), "{text}");
    // The checkpoint is of the last logged step: every rank stopped after it.
    let logged = losses(&run).len() as u32;
    let step = resume_two_more(2, &cfg, &run);
    assert_eq!(logged, step, "{text}");
}

#[test]
fn two_ranks_match_one_process_and_themselves() {
    if !available("parallel::two_ranks_match_one_process_and_themselves") {
        return;
    }
    let dir = tempdir("parallel");
    let cfg = config(&dir);
    let (one, two, again) = (dir.join("one"), dir.join("two"), dir.join("again"));
    train(1, &cfg, "8", &one, false);
    train(2, &cfg, "8", &two, false);
    // The second two-rank run stops at step 4 and resumes: a resume is exact on ranks too.
    train(2, &cfg, "4", &again, false);
    train(2, &cfg, "8", &again, true);
    let ckpt = "checkpoint.safetensors";
    let d = max_difference(&one.join(ckpt), &two.join(ckpt));
    assert!(d <= TOLERANCE, "two ranks differ from one process by {d}");
    for (a, b) in losses(&one).iter().zip(losses(&two)) {
        assert!((a - b).abs() <= 1e-5 * a.abs(), "loss {a} vs {b}");
    }
    assert_eq!(losses(&one).len(), 8);
    for file in [ckpt, "model.safetensors"] {
        assert_eq!(
            tensors(&two.join(file)),
            tensors(&again.join(file)),
            "two runs on two ranks (one resumed at step 4) differ in {file}"
        );
    }
    // Rank 0 alone wrote the run folder: one log line per step.
    assert_eq!(losses(&two).len(), 8);
}

#[test]
fn a_run_resumes_with_another_number_of_ranks() {
    if !available("parallel::a_run_resumes_with_another_number_of_ranks") {
        return;
    }
    let dir = tempdir("parallel-resume");
    let cfg = config(&dir);
    let (straight, split) = (dir.join("straight"), dir.join("split"));
    train(1, &cfg, "8", &straight, false);
    train(2, &cfg, "4", &split, false);
    train(1, &cfg, "6", &split, true);
    train(2, &cfg, "8", &split, true);
    let ckpt = "checkpoint.safetensors";
    let d = max_difference(&straight.join(ckpt), &split.join(ckpt));
    assert!(
        d <= TOLERANCE,
        "2 → 1 → 2 ranks differ from one process by {d}"
    );
    assert_eq!(losses(&split).len(), 8);
}

#[test]
fn a_killed_rank_ends_the_job_naming_it_and_the_checkpoint_resumes() {
    let test = "parallel::a_killed_rank_ends_the_job_naming_it_and_the_checkpoint_resumes";
    if !available(test) {
        return;
    }
    let (mut job, cfg, run) = long_run("parallel-kill");
    let rank1 = rank_pid(1).expect("rank 1's process");
    unsafe_kill(rank1);
    let started = Instant::now();
    let status = loop {
        if let Some(s) = job.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the job did not end within a minute of rank 1's death"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = output_text(&job.wait_with_output().unwrap());
    assert!(!status.success());
    assert!(
        text.contains("rank 1"),
        "the message does not name rank 1: {text}"
    );
    // mpirun can return while rank 0 is still being torn down, holding the run's lock for a
    // moment (a resume then is refused as busy, naming it): wait for it to go.
    while rank_pid(0).is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "rank 0 still runs a minute after rank 1's death"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A process being torn down may no longer show as rank 0 yet still hold the folder:
    // wait until the folder can be locked.
    while imba::train::FolderLock::acquire(&run).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run's folder is still held a minute after rank 1's death"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The checkpoint is whole: the run resumes from it in one process.
    resume_two_more(1, &cfg, &run);
}

/// The PID of this machine's `imba` process of MPI rank `rank` (from its environment).
fn rank_pid(rank: u32) -> Option<u32> {
    let want = format!("OMPI_COMM_WORLD_RANK={rank}");
    let bin = env!("CARGO_BIN_EXE_imba");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let exe = std::fs::read_link(e.path().join("exe")).ok()?;
        let env = std::fs::read(e.path().join("environ")).ok()?;
        let has = env.split(|&b| b == 0).any(|v| v == want.as_bytes());
        (exe == Path::new(bin) && has).then_some(pid)
    })
}

fn unsafe_kill(pid: u32) {
    let ok = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn what_two_ranks_cannot_split_is_refused_on_every_rank_before_any_file() {
    if !available("parallel::what_two_ranks_cannot_split_is_refused_on_every_rank_before_any_file")
    {
        return;
    }
    let dir = tempdir("parallel-refused");
    let cfg = config(&dir);
    for (extra, says) in [
        (["--batch", "7"], "does not split evenly over 2 ranks"),
        (["--objective", "ccua"], "train it in one process"),
    ] {
        let run = dir.join("run");
        let o = run.display().to_string();
        let mut args = vec!["train", "--config", &cfg, "--out", &o, "--quiet"];
        args.extend(extra);
        let started = Instant::now();
        let (ok, text) = mpirun(2, &args);
        assert!(!ok && text.contains(says), "{extra:?}: {text}");
        assert!(
            !text.contains("MPI_ABORT"),
            "an agreed refusal needs no abort: {text}"
        );
        assert!(started.elapsed() < Duration::from_secs(60));
        assert!(!run.exists(), "a refused run left {}", run.display());
    }
}
