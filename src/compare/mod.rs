//! `imba compare`: several objectives × seeds trained at equal compute (same data, model,
//! batch and steps; the forward rows per step differ and are stated), each run evaluated on
//! its data set's oracle, then a Markdown table of mean ± std over seeds and PNG plots.
//!
//! Layout of the output folder: `<variant>/seed<k>/` is an ordinary `imba train` run folder
//! plus `result.json` (its evaluation and timings) and `eval_samples.png`; the folder's own
//! `compare.md`, `compare.json` and plots summarise them. A comparison that is run again into
//! the same folder reuses finished runs and resumes unfinished ones, so a long comparison can
//! be stopped and continued.

mod checks;
use checks::check;
pub use checks::unread;
mod extra;
mod figures;
pub mod raw;
mod report;

pub use extra::{CurvePoint, SweepPoint};
pub use report::{decisions, markdown, paired_table, Decision, HEAD_TOLERANCE};

use crate::eval::{evaluate_run, EvalOptions, Evaluation};
use crate::gpu::Gpu;
use crate::train::{monitor, DatasetKind, FolderLock, RunDir, TrainOptions};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The objectives `imba compare` knows, with the options each sets.
pub const VARIANTS: [(&str, &str); 16] = [
    ("baseline", "objective = 'baseline'"),
    // The baseline at the dual objectives' compute: one pass of 2B rows per step (the batch
    // doubled), against their two passes of B rows.
    ("baseline-matched", "objective = 'baseline'"),
    ("dual-baseline", "objective = 'dual-baseline'"),
    // Every setting that makes a variant what it is is pinned, so a change of the trainer's
    // defaults cannot change what a variant means.
    (
        "imba",
        "objective = 'imba'\ngranularity = 'token'\nnormalize = 'none'",
    ),
    (
        "imba-sample",
        "objective = 'imba'\ngranularity = 'sample'\nnormalize = 'none'",
    ),
    // imba's extension: D divided by its running mean within the sample's timestep bucket.
    (
        "imba-tnorm",
        "objective = 'imba'\ngranularity = 'token'\nnormalize = 't-bucket'",
    ),
    // The t-normalised D averaged over each sample's tokens: the concept signal stays, the
    // per-token tilt toward ε_c − ε_u shrinks.
    (
        "imba-tnorm-sample",
        "objective = 'imba'\ngranularity = 'sample'\nnormalize = 't-bucket'",
    ),
    // Host weight rules on the same dual forward (docs/design.md#reweighted-arms).
    (
        "class-mean-d",
        "objective = 'reweighted'\nweight_rule = 'class-mean-d'",
    ),
    (
        "inverse-frequency",
        "objective = 'reweighted'\nweight_rule = 'inverse-frequency'",
    ),
    (
        "shuffled-d",
        "objective = 'reweighted'\nweight_rule = 'shuffled-d'",
    ),
    (
        "time-mean-d",
        "objective = 'reweighted'\nweight_rule = 'time-mean-d'",
    ),
    ("mean-d", "objective = 'reweighted'\nweight_rule = 'mean-d'"),
    ("cbdm", "objective = 'cbdm'\ncbdm_prior = 'frequency'"),
    ("cbdm-uniform", "objective = 'cbdm'\ncbdm_prior = 'uniform'"),
    ("ccua", "objective = 'ccua'"),
    // InvDiff trains no model of its own from scratch: it freezes the baseline run of the
    // same seed and trains a δ-DiT for the same number of steps beside it (see [`invdiff`]).
    ("invdiff", "objective = 'baseline'"),
];

/// The options of a named variant.
pub fn variant(name: &str) -> Result<TrainOptions> {
    let (_, toml) = VARIANTS.iter().find(|v| v.0 == name).ok_or_else(|| {
        Error::Config(format!(
            "unknown objective `{name}` for compare; known: {}",
            VARIANTS.map(|v| v.0).join(", ")
        ))
    })?;
    TrainOptions::from_toml(toml)
}

/// What to compare.
pub struct CompareSpec {
    /// The shared training options (data, model, steps, batch, …); `out` is the comparison's
    /// folder.
    pub base: TrainOptions,
    pub variants: Vec<String>,
    pub seeds: Vec<u32>,
    pub eval: EvalOptions,
    /// Further guidance scales at which each run's final model is also scored.
    pub sweep: Vec<f32>,
    /// The variant every other is compared with, seed by seed (None: dual-baseline where
    /// compared, else the first).
    pub control: Option<String>,
    /// Report the finished runs only: train and score nothing, list what is missing.
    pub report_only: bool,
    /// Each seed trains on its own data draw (`data_seed` = the seed): which label is rare
    /// changes with the seed where frequencies are permuted. The objectives of one seed
    /// share it, so the pairs stay paired.
    pub data_per_seed: bool,
}

/// One finished run of a comparison.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunResult {
    pub variant: String,
    pub seed: u32,
    pub steps: u32,
    /// DiT rows per forward pass in a step (B or 2B).
    pub rows_per_step: u32,
    /// Wall time of the training steps (summed from the step log, so whole across resumes)
    /// and of the main evaluation.
    pub train_seconds: f64,
    pub eval_seconds: f64,
    pub evaluation: Evaluation,
    /// How the evaluation sampled (absent in results of earlier versions, which are then
    /// re-scored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_options: Option<EvalOptions>,
    /// The D monitor's summary (IMBA variants).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d_monitor: Option<monitor::DSummary>,
    /// The learning curve: the snapshots' scores (`snapshots = true`), by rising step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub curve: Vec<CurvePoint>,
    /// The final model's scores at the sweep's guidance scales.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sweep: Vec<SweepPoint>,
}

/// A whole comparison.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Comparison {
    pub dataset: String,
    pub adapter: String,
    pub config: String,
    pub runs: Vec<RunResult>,
    /// The variant the others are compared with, seed by seed.
    #[serde(default)]
    pub control: String,
    /// (variant, seed) pairs asked for but not finished (a report-only comparison).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<(String, u32)>,
    /// Training and evaluation time summed over the runs (reused runs count with the time
    /// they took when they ran).
    pub seconds: f64,
    /// The diffusion process (ddpm or flow).
    #[serde(default)]
    pub process: String,
    /// The data seed of every run, unless each seed drew its own data (`data_per_seed`).
    #[serde(default)]
    pub data_seed: u32,
    #[serde(default)]
    pub data_per_seed: bool,
}

/// Runs (or reuses) every variant × seed, evaluates, and writes the summary.
pub fn compare(gpu: &Gpu, spec: &CompareSpec, progress: bool) -> Result<Comparison> {
    let base = check(spec)?;
    let root = PathBuf::from(match &spec.base.out {
        Some(o) => o.clone(),
        None => format!("runs/compare-{}", base.dataset.name()),
    });
    crate::train::output_folder::check(&root, crate::train::OutputKind::Comparison)?;
    // Each run folder has one writer at a time (its own lock); several comparisons of other
    // seeds or objectives may train into one folder side by side and take turns at its tables.
    let study = Study {
        gpu,
        spec,
        base: &base,
        root: &root,
        progress,
    };
    let mut runs = Vec::new();
    let mut missing = Vec::new();
    for v in &spec.variants {
        for &seed in &spec.seeds {
            if spec.report_only {
                match study.finished(v, seed)? {
                    Some(r) => runs.push(r),
                    None => missing.push((v.clone(), seed)),
                }
                continue;
            }
            let r = study.one_run(v, seed)?;
            if progress && !r.1 {
                eprintln!(
                    "{v} seed {seed}: {:.0} s training, {:.0} s evaluation; {}",
                    r.0.train_seconds,
                    r.0.eval_seconds,
                    headline(&r.0.evaluation)
                );
            }
            runs.push(r.0);
        }
    }
    if runs.is_empty() {
        return Err(Error::Config(format!(
            "no finished run in {} for these objectives and seeds; run the comparison \
             without --report-only first",
            root.display()
        )));
    }
    // Objectives without a finished run are left out of the tables (and listed as missing).
    let variants: Vec<String> = spec
        .variants
        .iter()
        .filter(|v| runs.iter().any(|r| &r.variant == *v))
        .cloned()
        .collect();
    let seconds = runs.iter().map(|x| x.train_seconds + x.eval_seconds).sum();
    let control = spec.control.clone().unwrap_or_else(|| {
        let dual = variants.iter().any(|v| v == "dual-baseline");
        if dual {
            "dual-baseline".into()
        } else {
            variants[0].clone()
        }
    });
    let c = Comparison {
        dataset: runs[0].evaluation.dataset.clone(),
        adapter: gpu.info.name.clone(),
        config: summary_line(&base, spec.data_per_seed)?,
        runs,
        control,
        missing,
        seconds,
        process: base.process.name().into(),
        data_seed: base.data_seed,
        data_per_seed: spec.data_per_seed,
    };
    let _lock = FolderLock::acquire_waiting(&root)?;
    write(&root, &c, &variants)?;
    Ok(c)
}

/// What every run of a comparison shares.
struct Study<'a> {
    gpu: &'a Gpu,
    spec: &'a CompareSpec,
    base: &'a crate::train::TrainConfig,
    root: &'a Path,
    progress: bool,
}

impl Study<'_> {
    fn run_dir(&self, v: &str, seed: u32) -> RunDir {
        RunDir::new(self.root.join(v).join(format!("seed{seed}")))
    }

    /// The training options of one variant and seed.
    fn options(&self, v: &str, seed: u32) -> Result<TrainOptions> {
        let matched = (v == "baseline-matched").then_some(2 * self.base.batch);
        Ok(TrainOptions {
            seed: Some(seed),
            data_seed: self.spec.data_per_seed.then_some(seed),
            out: Some(self.run_dir(v, seed).root().display().to_string()),
            sample_count: Some(0),
            batch: matched,
            ..variant(v)?
        }
        .or(self.spec.base.clone()))
    }

    /// Refuses a run folder trained with other options than this comparison gives it: every
    /// option that shapes the run must match, only the step budget (a resume extends it) and
    /// the end-of-run sampling may differ.
    fn check_config(&self, v: &str, seed: u32) -> Result<()> {
        let run = self.run_dir(v, seed);
        let Ok(text) = std::fs::read_to_string(run.config()) else {
            return Ok(());
        };
        let have = crate::train::TrainConfig::from_toml(&text)
            .map_err(|e| Error::Config(format!("{}: {e}", run.config().display())))?;
        let want = self.options(v, seed)?.resolve()?;
        let differ: Vec<String> = have
            .run_differences(&want)
            .into_iter()
            .map(|k| format!("{k} (run: {}, now: {})", have.field(k), want.field(k)))
            .collect();
        if differ.is_empty() {
            return Ok(());
        }
        Err(Error::Config(format!(
            "{} was trained with other options than this comparison gives it: {}. Pass the \
             same options, or choose another --out (or remove that run folder) to train anew",
            run.root().display(),
            differ.join(", ")
        )))
    }

    /// The result of a finished run of these steps and options (whatever its evaluation
    /// options), if any.
    fn finished(&self, v: &str, seed: u32) -> Result<Option<RunResult>> {
        let run = self.run_dir(v, seed);
        let Some(r) = std::fs::read_to_string(run.result())
            .ok()
            .and_then(|t| serde_json::from_str::<RunResult>(&t).ok())
            .filter(|r| r.steps == self.base.steps)
        else {
            return Ok(None);
        };
        self.check_config(v, seed)?;
        Ok(Some(r))
    }

    /// One variant and seed: its earlier result when that was made with these steps and
    /// evaluation options (then `true`), else the run trained (or resumed, or only
    /// re-scored) and evaluated.
    fn one_run(&self, v: &str, seed: u32) -> Result<(RunResult, bool)> {
        let run = self.run_dir(v, seed);
        let _lock = FolderLock::acquire(run.root())?;
        self.check_config(v, seed)?;
        let previous = self.finished(v, seed)?;
        if let Some(r) = previous
            .as_ref()
            .filter(|r| r.eval_options.as_ref() == Some(&self.spec.eval))
        {
            if self.progress {
                eprintln!("{v} seed {seed}: reusing {}", run.result().display());
            }
            let mut r = r.clone();
            if self.complete(&mut r, &run)? {
                crate::files::write_json(&run.result(), &r)?;
            }
            return Ok((r, true));
        }
        let r = if v == "invdiff" {
            invdiff(
                self.gpu,
                self.root,
                seed,
                self.base.steps,
                &self.spec.eval,
                run.root(),
            )?
        } else {
            if self.progress {
                eprintln!(
                    "{v} seed {seed}: training {} steps into {}",
                    self.base.steps,
                    run.root().display()
                );
            }
            self.train_and_score(v, seed, &run, previous.as_ref())?
        };
        let mut r = r;
        self.complete(&mut r, &run)?;
        crate::files::write_json(&run.result(), &r)?;
        // The run's trainer, samplers and their buffers are gone: release the bind groups
        // that still hold those buffers (twice: those used in this run's last epoch too).
        crate::kernels::release_unused_bindings();
        crate::kernels::release_unused_bindings();
        Ok((r, false))
    }

    /// Trains (or resumes) one run and evaluates it. A finished run whose evaluation was
    /// sampled otherwise is only re-scored; its training time is the one recorded.
    fn train_and_score(
        &self,
        v: &str,
        seed: u32,
        run: &RunDir,
        previous: Option<&RunResult>,
    ) -> Result<RunResult> {
        let opts = self.options(v, seed)?;
        let resume = run.has_run().then_some(run.root());
        let outcome = crate::train::run::train(self.gpu, opts, resume, false)?;
        // The steps' own wall times from the log, which a resume cuts back and continues:
        // the whole training's time however often the run was stopped and resumed.
        let logged: f64 = run.read_log().iter().map(|s| s.ms).sum::<f64>() / 1e3;
        let train_seconds = match (previous, outcome.steps_run) {
            (Some(p), 0) if logged == 0.0 => p.train_seconds,
            _ => logged,
        };
        let t = Instant::now();
        let e = evaluate_run(self.gpu, run.root(), &self.spec.eval)?;
        let eval_seconds = t.elapsed().as_secs_f64();
        save_eval_samples(run, &e, &outcome.config)?;
        let d_monitor = std::fs::read_to_string(run.d_summary())
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let c = &outcome.config;
        Ok(RunResult {
            variant: v.to_string(),
            seed,
            steps: c.steps,
            rows_per_step: c.batch * c.objective.repeats(),
            train_seconds,
            eval_seconds,
            evaluation: e.evaluation,
            eval_options: Some(self.spec.eval.clone()),
            d_monitor,
            curve: Vec::new(),
            sweep: Vec::new(),
        })
    }
}

/// The invdiff variant of one seed: InvDiff on `<root>/baseline/seed<k>` with δ training for
/// `steps` steps. Its rows per step are the frozen model's B plus the δ-model's B.
fn invdiff(
    gpu: &Gpu,
    root: &Path,
    seed: u32,
    steps: u32,
    eval: &EvalOptions,
    dir: &Path,
) -> Result<RunResult> {
    let base = root.join("baseline").join(format!("seed{seed}"));
    let saved = RunDir::new(&base).load()?;
    let mut o = crate::remedies::invdiff::Options::for_base(&saved.config);
    o.steps = steps;
    o.warmup = steps / 10;
    let r = crate::remedies::invdiff::run(gpu, &base, &o, eval, dir)?;
    Ok(RunResult {
        variant: "invdiff".into(),
        seed,
        steps,
        rows_per_step: 2 * o.batch,
        train_seconds: r.seconds[0] + r.seconds[1] + r.seconds[2],
        eval_seconds: r.seconds[3],
        evaluation: r.evaluation,
        eval_options: Some(eval.clone()),
        d_monitor: None,
        curve: Vec::new(),
        sweep: Vec::new(),
    })
}

/// `eval_samples.png`: a grid of the evaluation's samples (a row per label or 16 prompts),
/// or for toy2d a scatter with the class means marked.
fn save_eval_samples(
    run: &RunDir,
    e: &crate::eval::Evaluated,
    c: &crate::train::TrainConfig,
) -> Result<()> {
    let path = run.eval_samples();
    let m = &e.data;
    if m.image_len() == 2 {
        let points: Vec<[f32; 2]> = e.images.chunks(2).map(|p| [p[0], p[1]]).collect();
        let means = crate::data::toy2d_means(c.classes, crate::data::Toy2dSpec::default().radius);
        crate::report::plot::scatter(&path, "evaluation samples", &points, &e.labels, &means)
    } else {
        crate::report::images::save_grid(
            &path,
            &e.images,
            m.channels,
            m.height,
            m.width,
            grid_cols(&e.evaluation),
        )
    }
}

fn grid_cols(e: &Evaluation) -> u32 {
    let labels = e.per_label.len().max(1);
    if e.dataset == "shapes-concepts" {
        16
    } else {
        // A row per label (up to 32 samples wide).
        (e.samples / labels).clamp(1, 32) as u32
    }
}

fn headline(e: &Evaluation) -> String {
    e.metrics
        .iter()
        .map(|(k, v)| format!("{k} {v:.3}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn summary_line(c: &crate::train::TrainConfig, data_per_seed: bool) -> Result<String> {
    let (data, _) = crate::train::setup::load_data(c)?;
    let data_seed = if data_per_seed {
        "the run's seed (each seed its own data draw)".to_string()
    } else {
        c.data_seed.to_string()
    };
    let m = crate::train::setup::model_config(c, &data)?;
    Ok(format!(
        "Data: {}{}, {} images, head_count {}, imbalance {}, {:?} profile, data_seed {}. Model: \
         DiT depth {}, dim {}, {} heads, patch {} ({} tokens). Training: {} steps, batch {}, lr \
         {}, warm-up {}, EMA {}, {:?}; the training seed is the run's seed.",
        c.dataset.name(),
        if c.concepts { " (concepts)" } else { "" },
        data.len(),
        c.head_count,
        c.imbalance,
        c.profile,
        data_seed,
        m.depth,
        m.dim,
        m.heads,
        m.patch,
        m.tokens(),
        c.steps,
        c.batch,
        c.lr,
        c.warmup,
        c.ema,
        c.process
    ))
}

/// Writes compare.md, compare.json and the plots.
fn write(root: &Path, c: &Comparison, variants: &[String]) -> Result<()> {
    std::fs::create_dir_all(root).map_err(|e| Error::io(root, "cannot create the folder", e))?;
    let md = root.join("compare.md");
    crate::files::write_file(&md, markdown(c, variants))?;
    crate::files::write_json(&root.join("compare.json"), c)?;
    raw::write(&root.join("raw.jsonl"), c)?;
    figures::metric_bars(root, c, variants)?;
    figures::tail_curve(root, c, variants)?;
    figures::loss_curves(root, c, variants)?;
    figures::d_vs_frequency(root, c, variants)
}
