//! The Markdown report of a comparison: the scores over seeds, each variant's paired
//! difference from the control with 95% intervals and the decision rule, the learning
//! curves, the guidance sweep, the per-label scores and the D monitor.

use super::{Comparison, RunResult};
use crate::eval::metric_of;
use crate::stats::{differences, mean_std, paired_difference, Paired};
use serde::{Deserialize, Serialize};

/// The rule written down before the runs: a remedy helps the tail when the paired 95%
/// interval of its tail difference from the control lies above 0 and its mean head
/// difference is at least −[`HEAD_TOLERANCE`].
pub const HEAD_TOLERANCE: f64 = 0.05;

/// One variant's verdict under the rule.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Decision {
    pub variant: String,
    pub tail: Paired,
    pub head: Paired,
    pub helps_tail: bool,
    /// The tail's difference at matched diversity ([`tail_at_matched_diversity`]), over the
    /// seeds where it is defined; None where no run has a guidance sweep and diversity.
    #[serde(default)]
    pub tail_matched: Option<Paired>,
    /// The rule applied to `tail_matched`: the gain that raising the guidance does not buy.
    #[serde(default)]
    pub helps_beyond_guidance: Option<bool>,
}

/// One run's tail frontier: (tail diversity, tail score) at every guidance scale it was
/// scored at (the main one and the sweep's), sorted by diversity, unscored points left out.
fn tail_frontier(r: &RunResult, fam: &str) -> Vec<(f64, f64)> {
    let main = r.eval_options.as_ref().map(|o| o.guidance);
    let tail = format!("{fam}/tail");
    let sweep = r.sweep.iter().filter(|p| Some(p.guidance) != main);
    let mut pts: Vec<(f64, f64)> = std::iter::once(&r.evaluation.metrics)
        .chain(sweep.map(|p| &p.metrics))
        .filter_map(|m| Some((metric_of(m, "diversity/tail")?, metric_of(m, &tail)?)))
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    pts
}

/// y at `x` along `pts` (sorted by x), linearly; None outside their range: no extrapolation.
fn interpolate(pts: &[(f64, f64)], x: f64) -> Option<f64> {
    pts.windows(2).find_map(|w| {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        (x0 <= x && x <= x1).then(|| {
            if x1 == x0 {
                y0
            } else {
                y0 + (y1 - y0) * (x - x0) / (x1 - x0)
            }
        })
    })
}

/// The variant's tail score at its main guidance minus the control's tail score at the
/// variant's tail diversity, interpolated along the control's guidance frontier: sharpening
/// that raising the guidance also buys does not count. None where the variant's diversity
/// lies outside the control's range, or a run lacks a sweep or the diversity metric.
pub fn tail_at_matched_diversity(arm: &RunResult, control: &RunResult, fam: &str) -> Option<f64> {
    let div = arm.evaluation.metric("diversity/tail")?;
    let at = interpolate(&tail_frontier(control, fam), div)?;
    Some(arm.evaluation.metric(&format!("{fam}/tail"))? - at)
}

/// [`tail_at_matched_diversity`] over the seeds both have; None where no seed has it.
fn matched_paired(c: &Comparison, variant: &str, control: &str) -> Option<Paired> {
    let fam = family(c);
    let d: Vec<f64> = runs_of(c, variant)
        .iter()
        .filter_map(|r| tail_at_matched_diversity(r, control_of(c, r, control)?, &fam))
        .collect();
    (!d.is_empty()).then(|| differences(&d))
}

/// The control's run of the same seed as `r`.
fn control_of<'a>(c: &'a Comparison, r: &RunResult, control: &str) -> Option<&'a RunResult> {
    c.runs
        .iter()
        .find(|x| x.variant == control && x.seed == r.seed)
}

/// The runs of one variant.
fn runs_of<'a>(c: &'a Comparison, v: &str) -> Vec<&'a RunResult> {
    c.runs.iter().filter(|r| r.variant == v).collect()
}

/// mean ± std of one metric of one variant over its seeds.
pub(super) fn stat(runs: &[&RunResult], f: impl Fn(&RunResult) -> Option<f64>) -> (f64, f64) {
    mean_std(&runs.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
}

/// Every metric any run reports, in the order they first appear (runs scored by an older
/// binary may lack metrics added since).
pub(super) fn metric_names(c: &Comparison) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for r in &c.runs {
        for (m, _) in &r.evaluation.metrics {
            if !names.contains(m) {
                names.push(m.clone());
            }
        }
    }
    names
}

pub(super) fn fmt(m: (f64, f64)) -> String {
    if m.0.is_nan() {
        "–".into()
    } else {
        format!("{:.3} ± {:.3}", m.0, m.1)
    }
}

fn fmt_paired(p: &Paired) -> String {
    if p.mean.is_nan() {
        "–".into()
    } else if p.half_width.is_nan() {
        format!("{:+.3} (n={})", p.mean, p.n)
    } else {
        format!("{:+.3} [{:+.3}, {:+.3}]", p.mean, p.low(), p.high())
    }
}

/// The headline metric family of a comparison ("success", "hit", "acc", "concept").
pub(super) fn family(c: &Comparison) -> String {
    let first = &c.runs[0].evaluation.metrics[0].0;
    first.split('/').next().unwrap_or(first).to_string()
}

/// The paired difference of `variant` from `control` in one metric, seed by seed.
fn paired(
    c: &Comparison,
    variant: &str,
    control: &str,
    f: impl Fn(&RunResult) -> Option<f64>,
) -> Paired {
    let (mut t, mut k) = (Vec::new(), Vec::new());
    for r in c.runs.iter().filter(|r| r.variant == variant) {
        if let Some(ctrl) = control_of(c, r, control) {
            t.push(f(r).unwrap_or(f64::NAN));
            k.push(f(ctrl).unwrap_or(f64::NAN));
        }
    }
    paired_difference(&t, &k)
}

/// Every variant's paired differences from the control and its verdict.
pub fn decisions(c: &Comparison, variants: &[String], control: &str) -> Vec<Decision> {
    let fam = family(c);
    variants
        .iter()
        .filter(|v| v.as_str() != control)
        .map(|v| {
            let m = |b: &str| {
                let name = format!("{fam}/{b}");
                paired(c, v, control, move |r| r.evaluation.metric(&name))
            };
            let (tail, head) = (m("tail"), m("head"));
            let rule = |t: &Paired| t.low() > 0.0 && head.mean >= -HEAD_TOLERANCE;
            let tail_matched = matched_paired(c, v, control);
            Decision {
                variant: v.clone(),
                helps_tail: rule(&tail),
                helps_beyond_guidance: tail_matched.as_ref().map(rule),
                tail_matched,
                tail,
                head,
            }
        })
        .collect()
}

/// The table of paired differences from the control (Δ mean [95% CI]) per headline metric.
pub fn paired_table(c: &Comparison, variants: &[String], control: &str) -> String {
    let fam = family(c);
    let names: Vec<String> = ["head", "mid", "tail", "all", "slope"]
        .iter()
        .map(|b| format!("{fam}/{b}"))
        .filter(|m| c.runs[0].evaluation.metric(m).is_some())
        .collect();
    let ds = decisions(c, variants, control);
    let matched = ds.iter().any(|d| d.tail_matched.is_some());
    let extra = if matched {
        " Δtail at matched diversity | beyond guidance? |"
    } else {
        ""
    };
    let mut s = format!(
        "| Δ vs {control} | pairs | {} | helps the tail? |{extra}\n|---|---|{}---|{}\n",
        names.join(" | "),
        "---|".repeat(names.len()),
        if matched { "---|---|" } else { "" }
    );
    let yes_no = |b: bool| if b { "**yes**" } else { "no" };
    for d in ds {
        let cells: Vec<String> = names
            .iter()
            .map(|m| fmt_paired(&paired(c, &d.variant, control, |r| r.evaluation.metric(m))))
            .collect();
        s += &format!(
            "| {} | {} | {} | {} |",
            d.variant,
            d.tail.n,
            cells.join(" | "),
            yes_no(d.helps_tail)
        );
        if matched {
            s += &match &d.tail_matched {
                Some(t) if t.n < d.tail.n => {
                    format!(" {} ({} of {}) |", fmt_paired(t), t.n, d.tail.n)
                }
                Some(t) => format!(" {} |", fmt_paired(t)),
                None => " – |".into(),
            };
            s += &format!(" {} |", d.helps_beyond_guidance.map_or("–", yes_no));
        }
        s += "\n";
    }
    s
}

/// Every step at which some run was scored: its snapshots and its final model.
pub(super) fn curve_steps(c: &Comparison) -> Vec<u32> {
    let mut steps: Vec<u32> = c
        .runs
        .iter()
        .flat_map(|r| r.curve.iter().map(|p| p.step).chain([r.steps]))
        .collect();
    steps.sort_unstable();
    steps.dedup();
    steps
}

/// One metric of a run at a step: its snapshot's score, or the final model's at its last step.
pub(super) fn score_at(r: &RunResult, step: u32, name: &str) -> Option<f64> {
    if step == r.steps {
        r.evaluation.metric(name)
    } else {
        let p = r.curve.iter().find(|p| p.step == step)?;
        metric_of(&p.metrics, name)
    }
}

/// The learning curves: the tail and overall score at each snapshot, mean ± std over seeds.
fn curve_table(c: &Comparison, variants: &[String]) -> String {
    let fam = family(c);
    let steps = curve_steps(c);
    if steps.len() < 2 {
        return String::new();
    }
    let mut s = format!(
        "\nLearning curves ({fam}/tail · {fam}/all, mean ± std over seeds; the last step is the \
         final model):\n\n| step | {} |\n|---|{}\n",
        variants.join(" | "),
        "---|".repeat(variants.len())
    );
    for step in steps {
        let cells: Vec<String> = variants
            .iter()
            .map(|v| {
                let at = |b: &str| {
                    let name = format!("{fam}/{b}");
                    stat(&runs_of(c, v), |r| score_at(r, step, &name))
                };
                format!("{} · {}", fmt(at("tail")), fmt(at("all")))
            })
            .collect();
        s += &format!("| {step} | {} |\n", cells.join(" | "));
    }
    s
}

/// The guidance sweep: tail and overall score per scale, and Δtail from the control.
fn sweep_table(c: &Comparison, variants: &[String], control: &str) -> String {
    let fam = family(c);
    let main = c.runs[0].eval_options.as_ref().map_or(1.5, |o| o.guidance);
    let mut scales: Vec<f32> = c
        .runs
        .iter()
        .flat_map(|r| r.sweep.iter().map(|p| p.guidance))
        .chain([main])
        .collect();
    scales.sort_by(f32::total_cmp);
    scales.dedup();
    if scales.len() < 2 {
        return String::new();
    }
    let at = |r: &RunResult, g: f32, name: &str| -> Option<f64> {
        if g == main {
            r.evaluation.metric(name)
        } else {
            metric_of(&r.sweep.iter().find(|p| p.guidance == g)?.metrics, name)
        }
    };
    let mut s = format!(
        "\nGuidance sweep ({fam}/tail · {fam}/all, mean ± std; Δtail vs {control} with its \
         paired 95% interval):\n\n| w | {} |\n|---|{}\n",
        variants.join(" | "),
        "---|".repeat(variants.len())
    );
    let (tail, all) = (format!("{fam}/tail"), format!("{fam}/all"));
    for g in scales {
        let cells: Vec<String> = variants
            .iter()
            .map(|v| {
                let m = |n: &str| stat(&runs_of(c, v), |r| at(r, g, n));
                let mut cell = format!("{} · {}", fmt(m(&tail)), fmt(m(&all)));
                if v != control {
                    let d = paired(c, v, control, |r| at(r, g, &tail));
                    cell += &format!(" (Δtail {})", fmt_paired(&d));
                }
                cell
            })
            .collect();
        s += &format!("| {g} | {} |\n", cells.join(" | "));
    }
    s
}

/// The Markdown report of a comparison.
pub fn markdown(c: &Comparison, variants: &[String]) -> String {
    let mut s = header(c, variants);
    s += &summary_table(c, variants);
    if variants.len() > 1 {
        s += &paired_intro(c);
        s += &paired_table(c, variants, &c.control);
    }
    s += &curve_table(c, variants);
    s += &sweep_table(c, variants, &c.control);
    s += &per_label_table(c, variants);
    s += &d_monitor_line(c, variants);
    s += &footer(c);
    s
}

/// The comparison's title, configuration, machine and how each column is scored.
fn header(c: &Comparison, variants: &[String]) -> String {
    let seeds: Vec<String> = runs_of(c, &variants[0])
        .iter()
        .map(|r| r.seed.to_string())
        .collect();
    format!(
        "### {} — {} seeds ({}), mean ± std over seeds\n\n{}\n\nAdapter: {}. Training + evaluation time, summed over runs: {:.0} s. \
         Score: {}. Buckets: labels ranked by training images, terciles (head, mid, tail); \
         slope: least-squares slope of the per-label score on ln(training images).\n\n",
        c.dataset,
        seeds.len(),
        seeds.join(", "),
        c.config,
        c.adapter,
        c.seconds,
        c.runs[0].evaluation.score
    )
}

/// Every metric of every objective, mean ± sd over seeds; a metric that only some runs
/// carry says how many.
fn summary_table(c: &Comparison, variants: &[String]) -> String {
    let metrics = metric_names(c);
    let mut s = "| objective | rows/step | train s | ".to_string();
    s += &metrics.join(" | ");
    s += " |\n|---|---|---|";
    s += &"---|".repeat(metrics.len());
    s += "\n";
    for v in variants {
        let runs = runs_of(c, v);
        s += &format!(
            "| {v} | {} | {:.0} | ",
            runs[0].rows_per_step,
            stat(&runs, |r| Some(r.train_seconds)).0
        );
        let cells: Vec<String> = metrics
            .iter()
            .map(|m| {
                let cell = fmt(stat(&runs, |r| r.evaluation.metric(m)));
                let have = runs.iter().filter(|r| r.evaluation.metric(m).is_some());
                match have.count() {
                    k if k > 0 && k < runs.len() => format!("{cell} ({k} of {})", runs.len()),
                    _ => cell,
                }
            })
            .collect();
        s += &cells.join(" | ");
        s += " |\n";
    }
    s
}

/// What the paired table shows and the rule it applies.
fn paired_intro(c: &Comparison) -> String {
    format!(
        "\nPaired differences from {}, seed by seed: mean [95% Student-t interval]. \
         A variant helps the tail when the interval of Δtail lies above 0 and Δhead ≥ \
         −{HEAD_TOLERANCE}.{}\n\n",
        c.control,
        if c.runs.iter().any(|r| !r.sweep.is_empty()) {
            " With a guidance sweep, Δtail at matched diversity is the variant's tail \
             minus the control's at the variant's tail diversity, interpolated along the \
             control's guidance scales (no extrapolation: seeds outside its range are \
             left out): the gain that raising the guidance does not also buy; \
             \"beyond guidance?\" applies the rule to it."
        } else {
            ""
        }
    )
}

/// Spearman ρ between training frequency and mean D per label, for the objectives that
/// monitor D; empty when none does.
fn d_monitor_line(c: &Comparison, variants: &[String]) -> String {
    let d: Vec<String> = variants
        .iter()
        .filter_map(|v| {
            let m = stat(&runs_of(c, v), |r| r.d_monitor.as_ref().map(|d| d.spearman));
            (!m.0.is_nan()).then(|| format!("{v}: {}", fmt(m)))
        })
        .collect();
    if d.is_empty() {
        return String::new();
    }
    format!(
        "\nD monitor, Spearman ρ(training frequency, mean D per label) over the second half \
         of training: {}.\n",
        d.join("; ")
    )
}

/// The evaluation's notes and the runs not finished yet.
fn footer(c: &Comparison) -> String {
    let mut s = String::new();
    for n in &c.runs[0].evaluation.notes {
        s += &format!("\nNote: {n}\n");
    }
    if !c.missing.is_empty() {
        let m: Vec<String> = c
            .missing
            .iter()
            .map(|(v, seed)| format!("{v} seed {seed}"))
            .collect();
        s += &format!(
            "\nNot finished yet, so not in these tables: {}.\n",
            m.join(", ")
        );
    }
    s
}

/// Per-label scores, mean over seeds.
fn per_label_table(c: &Comparison, variants: &[String]) -> String {
    let mut s = "\nPer label (mean over seeds):\n\n| label | train images | bucket | ".to_string();
    s += &variants.join(" | ");
    s += " |\n|---|---|---|";
    s += &"---|".repeat(variants.len());
    s += "\n";
    for (k, l) in c.runs[0].evaluation.per_label.iter().enumerate() {
        s += &format!("| {} | {} | {} | ", l.name, l.frequency, l.bucket);
        let cells: Vec<String> = variants
            .iter()
            .map(|v| {
                let m = stat(&runs_of(c, v), |r| {
                    r.evaluation.per_label.get(k).map(|x| x.score)
                });
                format!("{:.2}", m.0)
            })
            .collect();
        s += &cells.join(" | ");
        s += " |\n";
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::Evaluation;

    fn run(seed: u32, metrics: &[(&str, f64)]) -> RunResult {
        RunResult {
            variant: "dual-baseline".into(),
            seed,
            steps: 10,
            rows_per_step: 8,
            train_seconds: 1.0,
            eval_seconds: 1.0,
            evaluation: Evaluation {
                dataset: "shapes".into(),
                score: "success".into(),
                samples: 4,
                metrics: metrics.iter().map(|&(m, v)| (m.to_string(), v)).collect(),
                per_label: Vec::new(),
                notes: Vec::new(),
                trained: None,
            },
            eval_options: None,
            d_monitor: None,
            curve: Vec::new(),
            sweep: Vec::new(),
        }
    }

    fn sweep_point(guidance: f32, div: f64, tail: f64) -> super::super::extra::SweepPoint {
        super::super::extra::SweepPoint {
            guidance,
            metrics: vec![
                ("diversity/tail".into(), div),
                ("success/tail".into(), tail),
            ],
            per_label: Vec::new(),
        }
    }

    /// The matched-diversity endpoint on a frontier worked by hand: the control reads
    /// (diversity, tail) = (0.9, 0.6) at w = 1, (0.7, 0.8) at 1.5, (0.5, 0.9) at 2, so at
    /// diversity 0.6 it reads 0.85 and an arm at (0.6, 0.9) is +0.05 beyond it; at a grid
    /// point the difference is the raw one; outside the frontier there is none.
    #[test]
    fn tail_at_matched_diversity_interpolates_the_control_frontier() {
        let mut control = run(0, &[("diversity/tail", 0.7), ("success/tail", 0.8)]);
        control.sweep = vec![sweep_point(1.0, 0.9, 0.6), sweep_point(2.0, 0.5, 0.9)];
        let m = |control: &RunResult, d, t| {
            let arm = run(0, &[("diversity/tail", d), ("success/tail", t)]);
            tail_at_matched_diversity(&arm, control, "success")
        };
        assert!((m(&control, 0.6, 0.9).unwrap() - 0.05).abs() < 1e-12);
        assert!((m(&control, 0.9, 0.7).unwrap() - 0.1).abs() < 1e-12);
        assert_eq!(m(&control, 0.95, 0.9), None);
        assert_eq!(m(&control, 0.45, 0.9), None);
        // Without a sweep the control has one point: no frontier, no endpoint.
        control.sweep.clear();
        assert_eq!(m(&control, 0.7, 0.9), None);
    }

    /// A metric added after some runs were scored is reported over the runs that have it,
    /// and says over how many.
    #[test]
    fn metrics_some_runs_lack_are_reported_with_their_count() {
        let c = Comparison {
            dataset: "shapes".into(),
            adapter: "test".into(),
            config: String::new(),
            runs: vec![
                run(0, &[("success/tail", 0.5)]),
                run(1, &[("success/tail", 0.7), ("recall/tail", 0.25)]),
            ],
            control: "dual-baseline".into(),
            missing: Vec::new(),
            seconds: 2.0,
            process: "ddpm".into(),
            data_seed: 0,
            data_per_seed: true,
        };
        assert_eq!(metric_names(&c), ["success/tail", "recall/tail"]);
        let md = markdown(&c, &["dual-baseline".to_string()]);
        assert!(
            md.contains("| 0.600 ± 0.141 | 0.250 ± 0.000 (1 of 2) |"),
            "{md}"
        );
    }
}
