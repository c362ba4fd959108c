#!/usr/bin/env python3
"""Recomputes the concept-balancing tables of RESULTS.md from the committed raw results.

    scripts/results_tables.py [RAW_DIR]               print every table (Markdown)
    scripts/results_tables.py --check RESULTS.md      exit 1 if a table there differs
    scripts/results_tables.py --write RESULTS.md      rewrite the tables there in place
    scripts/results_tables.py --self-test             check the statistics on known answers

RAW_DIR (default docs/results/concepts) holds one `<lane>.jsonl` per comparison, copied from
the comparison folder's `raw.jsonl` (`imba compare` writes it): one JSON object per scored
point of a run (variant, seed, data seed, step, guidance, bucket metrics, per-label scores).
In RESULTS.md each table sits between `<!-- table LANE KIND -->` and `<!-- end table -->`.

Standard library only. Intervals are paired Student-t 95% intervals over seeds.
"""

import json
import math
import os
import re
import sys
from collections import defaultdict

CONTROL = "dual-baseline"
MAIN_GUIDANCE = 1.5
BUCKETS = ("head", "mid", "tail")
# The smallest paired difference the design must detect, at two-sided 5% and 80% power.
DETECT = 0.10


# ---- Student t -------------------------------------------------------------------------

def _betacf(a, b, x):
    """Continued fraction of the regularised incomplete beta (Lentz's method)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((a + m2 - 1) * (a + m2)),
                    -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a, b, x):
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log(1.0 - x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t, df):
    p = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - p if t >= 0 else p


def t_quantile(q, df):
    lo, hi = 0.0, 1000.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def mean_sd(xs):
    n = len(xs)
    m = sum(xs) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1)) if n > 1 else float("nan")
    return m, sd


def interval(xs):
    """Mean and paired 95% Student-t interval (None below two values)."""
    if len(xs) < 2:
        return (xs[0] if xs else float("nan")), None
    m, sd = mean_sd(xs)
    h = t_quantile(0.975, len(xs) - 1) * sd / math.sqrt(len(xs))
    return m, (m - h, m + h)


def seeds_needed(sd, effect=DETECT, power=0.8):
    """Pairs for a two-sided 5% paired t-test to detect `effect` with `power` (iterated)."""
    if not sd or math.isnan(sd) or sd == 0:
        return None
    n = 2
    while n < 1000:
        t_a = t_quantile(0.975, n - 1)
        t_b = t_quantile(power, n - 1)
        if n >= ((t_a + t_b) * sd / effect) ** 2:
            return n
        n += 1
    return None


# ---- reading --------------------------------------------------------------------------

def load(raw_dir):
    lanes = {}
    for name in sorted(os.listdir(raw_dir)):
        if name.endswith(".jsonl"):
            with open(os.path.join(raw_dir, name)) as f:
                lanes[name[:-6]] = [json.loads(line) for line in f if line.strip()]
    return lanes


def prefix(records):
    return records[0]["metrics"][0][0].split("/")[0]


def metric(rec, name):
    for k, v in rec["metrics"]:
        if k == name:
            return v
    return float("nan")


def label_log_odds(lab):
    """logit((hits + ½)/(n + 1)) of one label's samples."""
    hits = lab["score"] * lab["samples"]
    p = (hits + 0.5) / (lab["samples"] + 1.0)
    return math.log(p / (1.0 - p))


def log_odds(rec, bucket):
    """Mean over the bucket's labels of logit((hits + ½)/(n + 1)): robust near 0 and 1."""
    xs = [label_log_odds(lab) for lab in rec["per_label"]
          if lab["bucket"] == bucket and lab["samples"] > 0]
    return sum(xs) / len(xs) if xs else float("nan")


def final_points(records):
    """(variant, seed) -> {guidance: record} for the final models."""
    out = defaultdict(dict)
    for r in records:
        if r["step"] == r["steps"]:
            out[(r["variant"], r["seed"])][round(r["guidance"], 3)] = r
    return out


def variants_of(records):
    seen = []
    for r in records:
        if r["variant"] not in seen:
            seen.append(r["variant"])
    return seen


# ---- the endpoint ---------------------------------------------------------------------

def interpolate(pts, x):
    """y at x along the points (x, y) sorted by x, linearly; None outside their range (no
    extrapolation) or where a value is missing."""
    pts = [p for p in pts if not math.isnan(p[0]) and not math.isnan(p[1])]
    if math.isnan(x) or len(pts) < 2:
        return None
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return None


def matched(arm_point, control_frontier, score, div):
    """The arm's tail score minus the control's at the arm's tail diversity, interpolated
    linearly along the control's frontier (diversity, score) over its guidance grid; None
    when the arm's diversity lies outside the control's range (no extrapolation)."""
    pts = sorted((metric(r, div), metric(r, score)) for r in control_frontier.values())
    at = interpolate(pts, metric(arm_point, div))
    return None if at is None else metric(arm_point, score) - at


# ---- tables ---------------------------------------------------------------------------

def fmt(x, digits=3):
    return "n/a" if x is None or math.isnan(x) else f"{x:+.{digits}f}".replace("-", "−")


def plain(x, digits=3):
    return "n/a" if x is None or math.isnan(x) else f"{x:.{digits}f}".replace("-", "−")


def ci(xs):
    if not xs:
        return "n/a"
    m, iv = interval(xs)
    if iv is None:
        return f"{fmt(m)} (1 pair)"
    return f"{fmt(m)} [{fmt(iv[0])}, {fmt(iv[1])}]"


def ci_n(xs):
    """ci() with the number of pairs where it does not say it already."""
    return ci(xs) if len(xs) < 2 else f"{ci(xs)} ({len(xs)})"


def summary_table(records):
    p = prefix(records)
    fin = final_points(records)
    cols = [f"{p}/{b}" for b in BUCKETS] + [f"{p}/all", "log-odds/tail", "diversity/tail"]
    lines = ["| objective | seeds | " + " | ".join(cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for v in variants_of(records):
        pts = [g[MAIN_GUIDANCE] for (var, _), g in sorted(fin.items()) if var == v
               and MAIN_GUIDANCE in g]
        if not pts:
            continue
        cells = []
        for c in cols:
            xs = [log_odds(r, "tail") if c == "log-odds/tail" else metric(r, c) for r in pts]
            xs = [x for x in xs if not math.isnan(x)]
            if not xs:
                cells.append("n/a")
                continue
            m, sd = mean_sd(xs)
            cells.append(plain(m) + ("" if math.isnan(sd) else f" ± {plain(sd)}"))
        lines.append(f"| {v} | {len(pts)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pairs(fin, v):
    """Per seed with both: the arm's final point at the main guidance and the control's
    final points at every guidance (its frontier)."""
    for (var, seed), g in sorted(fin.items()):
        c = fin.get((CONTROL, seed))
        if var == v and c and MAIN_GUIDANCE in g and MAIN_GUIDANCE in c:
            yield g[MAIN_GUIDANCE], c


def paired_differences(fin, p, v):
    """Per seed, the arm against the control at the main guidance: Δhead, Δtail, Δlog-odds of
    the tail, and the primary endpoint (Δtail at matched diversity, where the arm's diversity
    lies within the control's frontier)."""
    score, div = f"{p}/tail", "diversity/tail"
    dh, dt, dl, dm = [], [], [], []
    for a, c in pairs(fin, v):
        b = c[MAIN_GUIDANCE]
        dh.append(metric(a, f"{p}/head") - metric(b, f"{p}/head"))
        dt.append(metric(a, score) - metric(b, score))
        dl.append(log_odds(a, "tail") - log_odds(b, "tail"))
        m = matched(a, c, score, div)
        if m is not None:
            dm.append(m)
    return dh, dt, dl, dm


def paired_table(records):
    p = prefix(records)
    fin = final_points(records)
    lines = [f"| Δ vs {CONTROL} | pairs | Δ{p}/head | Δ{p}/tail | Δlog-odds/tail | "
             f"**Δ{p}/tail at matched diversity** (pairs) | seeds for {DETECT:.2f} |",
             "|---|---|---|---|---|---|---|"]
    for v in variants_of(records):
        if v == CONTROL:
            continue
        dh, dt, dl, dm = paired_differences(fin, p, v)
        if not dt:
            continue
        sd = mean_sd(dm)[1] if len(dm) > 1 else None
        need = seeds_needed(sd) if sd else None
        lines.append(f"| {v} | {len(dt)} | {ci(dh)} | {ci(dt)} | {ci(dl)} | {ci_n(dm)}"
                     f" | {need if need else 'n/a'} |")
    return "\n".join(lines)


def secondary_table(records):
    """The secondary endpoints, fixed before the mechanism runs (RESULTS.md): the arm's tail
    score at matched tail recall and at matched tail placement coverage (jittered shapes),
    each along the control's guidance frontier, and the raw k-NN precision and recall."""
    p = prefix(records)
    fin = final_points(records)
    score = f"{p}/tail"
    axes = ("recall/tail", "coverage/tail")
    lines = [f"| Δ vs {CONTROL} | pairs | Δprecision/tail | Δrecall/tail | "
             f"Δ{p}/tail at matched recall (pairs) | Δ{p}/tail at matched coverage (pairs) |",
             "|---|---|---|---|---|---|"]
    for v in variants_of(records):
        if v == CONTROL:
            continue
        dp, dr, dm = [], [], {a: [] for a in axes}
        for a, c in pairs(fin, v):
            b = c[MAIN_GUIDANCE]
            for xs, name in ((dp, "precision/tail"), (dr, "recall/tail")):
                x = metric(a, name) - metric(b, name)
                if not math.isnan(x):
                    xs.append(x)
            for axis in axes:
                m = matched(a, c, score, axis)
                if m is not None:
                    dm[axis].append(m)
        if not dp and not dm[axes[0]]:
            continue
        lines.append(f"| {v} | {len(dp)} | {ci(dp)} | {ci(dr)} | "
                     + " | ".join(ci_n(dm[a]) for a in axes) + " |")
    return "\n".join(lines)


def versus_table(records, a, b):
    """Two arms against each other, seed by seed: the difference of their matched-diversity
    endpoints (each against the same control), their raw differences at every guidance
    scale of the grid, and at the main guidance at each snapshot of the learning curve."""
    p = prefix(records)
    fin = final_points(records)
    score, div = f"{p}/tail", "diversity/tail"
    seeds = sorted(s for (v, s) in fin if v == a and (b, s) in fin and (CONTROL, s) in fin)
    lines = [f"| {a} − {b} | pairs | Δ{p}/tail | Δ{p}/all |", "|---|---|---|---|"]
    dm = []
    for s in seeds:
        x = matched(fin[(a, s)][MAIN_GUIDANCE], fin[(CONTROL, s)], score, div)
        y = matched(fin[(b, s)][MAIN_GUIDANCE], fin[(CONTROL, s)], score, div)
        if x is not None and y is not None:
            dm.append(x - y)
    lines.append(f"| at matched diversity (w = {MAIN_GUIDANCE:g}) | {len(dm)} | {ci(dm)} | |")
    grid = sorted({g for s in seeds for g in fin[(a, s)]})
    for g in grid:
        both = [s for s in seeds if g in fin[(a, s)] and g in fin[(b, s)]]
        dt, da = ([metric(fin[(a, s)][g], m) - metric(fin[(b, s)][g], m) for s in both]
                  for m in (score, f"{p}/all"))
        lines.append(f"| w = {g:g} | {len(both)} | {ci(dt)} | {ci(da)} |")
    # The snapshots, at the main guidance: does one arm lead earlier in training?
    snap = {}
    for r in records:
        if r["step"] < r["steps"] and abs(r["guidance"] - MAIN_GUIDANCE) < 1e-6:
            snap[(r["variant"], r["seed"], r["step"])] = r
    for step in sorted({k[2] for k in snap}):
        both = [s for s in seeds if (a, s, step) in snap and (b, s, step) in snap]
        dt, da = ([metric(snap[(a, s, step)], m) - metric(snap[(b, s, step)], m) for s in both]
                  for m in (score, f"{p}/all"))
        lines.append(f"| step {step} (w = {MAIN_GUIDANCE:g}) | {len(both)} | {ci(dt)} | {ci(da)} |")
    return "\n".join(lines)


def frontier_table(records):
    p = prefix(records)
    fin = final_points(records)
    grid = sorted({g for pts in fin.values() for g in pts})
    lines = ["| objective | " + " | ".join(f"w = {g:g}" for g in grid) + " |",
             "|---|" + "---|" * len(grid)]
    for v in variants_of(records):
        cells = []
        for g in grid:
            pts = [pts[g] for (var, _), pts in sorted(fin.items()) if var == v and g in pts]
            if not pts:
                cells.append("n/a")
                continue
            s = mean_sd([metric(r, f"{p}/tail") for r in pts])[0]
            d = mean_sd([metric(r, "diversity/tail") for r in pts])[0]
            cells.append(f"{plain(s)} · {plain(d, 2)}")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def curve_table(records):
    p = prefix(records)
    by = defaultdict(list)
    for r in records:
        if abs(r["guidance"] - MAIN_GUIDANCE) < 1e-6:
            by[(r["variant"], r["step"])].append(metric(r, f"{p}/tail"))
    steps = sorted({s for (_, s) in by})
    lines = ["| objective | " + " | ".join(f"step {s}" for s in steps) + " |",
             "|---|" + "---|" * len(steps)]
    for v in variants_of(records):
        cells = [plain(mean_sd(by[(v, s)])[0]) if by.get((v, s)) else "n/a" for s in steps]
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def speed_table(records):
    """Exploratory: the arm minus its same-seed control at guidance 1.5, at every scored
    step, snapshots included: how fast an arm reaches the tail, where the final models sit at
    the oracle's ceiling. Raw differences (one guidance, no frontier at a snapshot), so
    sharpening counts here; the tail's diversity beside them shows how much, the head what
    it cost."""
    p = prefix(records)
    steps = sorted({r["step"] for r in records})
    lines = [f"| vs {CONTROL} at {MAIN_GUIDANCE} | pairs | "
             + " | ".join(f"step {s}" for s in steps) + " |",
             "|---|---|" + "---|" * len(steps)]
    names = (f"{p}/tail", "diversity/tail", f"{p}/head")
    # (variant, seed, step) -> value at the main guidance, per metric, read once.
    at_by = {name: {(r["variant"], r["seed"], r["step"]): metric(r, name) for r in records
                    if abs(r["guidance"] - MAIN_GUIDANCE) < 1e-6} for name in names}
    for v in variants_of(records):
        if v == CONTROL:
            continue
        for name in names:
            at = at_by[name]
            cells, n = [], 0
            for s in steps:
                d = [x - at[(CONTROL, seed, s)] for (var, seed, st), x in sorted(at.items())
                     if var == v and st == s and (CONTROL, seed, s) in at]
                n = max(n, len(d))
                cells.append(ci(d))
            lines.append(f"| {v}: Δ{name} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plateau_table(records):
    """The control's learning curve at guidance 1.5, a row per scored step: its tail, head
    and all, and the tail's gain over the last quarter of a budget ending at that step,
    tail(s) − tail(¾s) per seed where both were scored. The plateau rule asks for a gain
    under 0.01."""
    p = prefix(records)
    at = {(r["seed"], r["step"]): r for r in records
          if r["variant"] == CONTROL and abs(r["guidance"] - MAIN_GUIDANCE) < 1e-6}
    lines = [f"| {CONTROL} at step | seeds | {p}/tail | {p}/head | {p}/all | "
             f"Δ{p}/tail over the last quarter (seeds) |", "|---|---|---|---|---|---|"]
    for step in sorted({st for (_, st) in at}):
        seeds = sorted(seed for (seed, st) in at if st == step)
        means = [plain(mean_sd([metric(at[(seed, step)], f"{p}/{b}") for seed in seeds])[0])
                 for b in ("tail", "head", "all")]
        quarter = 3 * step // 4 if (3 * step) % 4 == 0 else None
        gains = [metric(at[(seed, step)], f"{p}/tail") - metric(at[(seed, quarter)], f"{p}/tail")
                 for seed in seeds if (seed, quarter) in at]
        lines.append(f"| {step} | {len(seeds)} | " + " | ".join(means)
                     + f" | {ci_n(gains) if gains else 'n/a'} |")
    return "\n".join(lines)


def family(name):
    """A shapes label's family ("blue-circle" -> "circle"); None for labels without one."""
    return name.rsplit("-", 1)[1] if "-" in name else None


def within_slope(xs, ys, groups):
    """The least-squares slope of ys on xs with one intercept per group (each group's
    means removed first): a difference between groups does not count as a slope."""
    by = defaultdict(list)
    for x, y, g in zip(xs, ys, groups):
        by[g].append((x, y))
    sxy = sxx = 0.0
    for pts in by.values():
        mx = sum(x for x, _ in pts) / len(pts)
        my = sum(y for _, y in pts) / len(pts)
        sxy += sum((x - mx) * (y - my) for x, y in pts)
        sxx += sum((x - mx) ** 2 for x, _ in pts)
    return sxy / sxx if sxx > 0 else float("nan")


def rarity_row(labels):
    """(mean log-odds, log-odds gained per halving of the label's training count, mean
    log-odds per family) of per-label values [(label, value)]."""
    xs = [-math.log2(lab["frequency"]) for lab, _ in labels]
    ys = [y for _, y in labels]
    fams = [family(lab["name"]) for lab, _ in labels]
    per = defaultdict(list)
    for f, y in zip(fams, ys):
        per[f].append(y)
    return (sum(ys) / len(ys), within_slope(xs, ys, fams),
            {f: sum(v) / len(v) for f, v in per.items()})


def rarity_table(records):
    """Exploratory, added after the flow lane's results: does an arm's gain grow as labels
    get rarer (what balancing by concepts should do), or is it the same shift for every
    label? Per seed at the main guidance, each label's log-odds (arm − control); their mean,
    their slope per halving of the label's training count (one intercept per shape family,
    so that a hard family is not read as a rare one), that slope beyond what guidance alone
    gives at the same mean gain (the control's own guidance grid, relative to its main
    guidance, interpolated at the arm's mean gain), and their mean per family. The rows
    `dual-baseline at w` are guidance alone: the control at w against itself at the main
    guidance. The rows `dual-baseline at step s` are training alone: the control's snapshot
    at step s against its final model (does an arm look like a control that has trained
    less?). They get no "beyond" column: near the end of training the mean gain barely moves
    with the step, so matching a step to an arm's mean gain seed by seed is ill-conditioned."""
    fin = final_points(records)

    def rows_of(pick):
        """Per seed with a control: rarity_row of (pick(seed) − control at main guidance)."""
        out = {}
        for (var, seed), c in sorted(fin.items()):
            if var != CONTROL or MAIN_GUIDANCE not in c or pick(seed) is None:
                continue
            base = {lab["name"]: label_log_odds(lab) for lab in c[MAIN_GUIDANCE]["per_label"]}
            out[seed] = rarity_row([(lab, label_log_odds(lab) - base[lab["name"]])
                                    for lab in pick(seed)["per_label"] if lab["samples"] > 0])
        return out

    grid = sorted({g for (v, _), pts in fin.items() if v == CONTROL for g in pts})
    guided = {g: rows_of(lambda s, g=g: fin[(CONTROL, s)].get(g)) for g in grid}
    snaps = defaultdict(dict)
    for r in records:
        if (r["variant"] == CONTROL and r["step"] < r["steps"]
                and abs(r["guidance"] - MAIN_GUIDANCE) < 1e-6):
            snaps[r["step"]][r["seed"]] = r
    staged = {st: rows_of(lambda s, st=st: snaps[st].get(s)) for st in sorted(snaps)}

    rows = []
    for v in variants_of(records):
        if v == CONTROL:
            continue
        ps = rows_of(lambda s, v=v: fin.get((v, s), {}).get(MAIN_GUIDANCE))
        beyond = []
        for s, r in ps.items():
            at = interpolate(sorted((guided[g][s][0], guided[g][s][1]) for g in grid
                                    if s in guided[g]), r[0])
            if at is not None:
                beyond.append(r[1] - at)
        rows.append((v, list(ps.values()), beyond))
    for g in grid:
        if g != MAIN_GUIDANCE:
            rows.append((f"{CONTROL} at w = {g:g}", list(guided[g].values()), None))
    for st, rs in staged.items():
        rows.append((f"{CONTROL} at step {st}", list(rs.values()), None))
    rows = [r for r in rows if r[1]]
    if not rows:
        return "(no runs)"
    fams = sorted({f for _, ps, _ in rows for r in ps for f in r[2] if f is not None})
    lines = [f"| Δ vs {CONTROL} at w = {MAIN_GUIDANCE:g} | pairs | Δlog-odds, every label | "
             "Δlog-odds per halving of the training count | … beyond guidance at equal "
             "mean gain (pairs) |" + "".join(f" Δlog-odds, {f} |" for f in fams),
             "|---|---|---|---|---|" + "---|" * len(fams)]
    for name, ps, beyond in rows:
        cells = [ci([r[0] for r in ps]), ci([r[1] for r in ps]),
                 "" if beyond is None else ci_n(beyond)]
        cells += [ci([r[2][f] for r in ps if f in r[2]]) for f in fams]
        lines.append(f"| {name} | {len(ps)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---- the readings ----------------------------------------------------------------------

# The seeds the plan asks for (the power calculation in RESULTS.md): a reading on fewer pairs
# is marked interim.
PLANNED_SEEDS = 10
# The registered rule's conditions for "helps": pairs at least, and the head's mean change.
RULE_MIN_PAIRS = 5
RULE_HEAD_FLOOR = -0.05


def verdict(dm, dh):
    """The decision rule of RESULTS.md on one arm's primary endpoint (dm, per pair) and its
    change in the head (dh): helps when the paired 95% interval lies above 0 over at least
    RULE_MIN_PAIRS pairs and the head loses at most 0.05 on average; hurts when it lies below
    0; otherwise the data do not decide. Fewer pairs than the plan's are marked interim."""
    if len(dm) < 2:
        return f"too few pairs ({len(dm)} of {PLANNED_SEEDS})"
    _, (lo, hi) = interval(dm)
    if lo > 0 and len(dm) >= RULE_MIN_PAIRS:
        head = sum(dh) / len(dh)
        word = "helps" if head >= RULE_HEAD_FLOOR else "tail up, head down (not helps)"
    elif lo > 0:
        word = "too few pairs"
    elif hi < 0:
        word = "hurts"
    else:
        word = "does not decide"
    return word if len(dm) >= PLANNED_SEEDS else f"{word} (interim, {len(dm)} of {PLANNED_SEEDS})"


# The lanes in the order of the questions: published IMBA under flow on each data set, then
# the mechanism arms, then the rest.
LANE_ORDER = ["shapes-flow", "digits-flow", "shapes-flow-mech", "shapes-eps", "digits-eps",
              "shapes-flow-r100", "fashion-flow"]


def scope(lane):
    """(data, prediction) of a lane from its name, `<data>-<flow|eps>[-…]`; a name of
    another form is its own data, of no stated prediction."""
    parts = lane.split("-")
    if len(parts) < 2:
        return lane, ""
    extra = {"r100": ", ratio 100"}.get(parts[-1], "")
    return parts[0] + extra, {"flow": "rectified flow", "eps": "ε"}.get(parts[1], parts[1])


def readings_table(lanes):
    """Every arm of every lane against its control, with the decision rule applied: the
    answers the experiment gives so far, in one place."""
    lines = ["| data | prediction | arm | pairs | Δhead at 1.5 | Δtail at matched diversity "
             "(pairs) | by the rule |", "|---|---|---|---|---|---|---|"]
    order = sorted(lanes, key=lambda lane: (LANE_ORDER.index(lane) if lane in LANE_ORDER
                                            else len(LANE_ORDER), lane))
    for lane in order:
        records = lanes[lane]
        p = prefix(records)
        fin = final_points(records)
        data, process = scope(lane)
        for v in variants_of(records):
            if v == CONTROL:
                continue
            dh, dt, _, dm = paired_differences(fin, p, v)
            if not dt:
                continue
            lines.append(f"| {data} | {process} | {v} | {len(dt)} | {ci(dh)} | {ci_n(dm)} | "
                         f"{verdict(dm, dh)} |")
    return "\n".join(lines)


KINDS = {
    "summary": summary_table,
    "paired": paired_table,
    "secondary": secondary_table,
    "frontier": frontier_table,
    "curve": curve_table,
    "speed": speed_table,
    "plateau": plateau_table,
    "rarity": rarity_table,
}


def joined(lanes, lane):
    """The records of LANE, or of A+B: two replicated lanes as one (the runs both hold, the
    control, taken once from A; the replication check has found them equal)."""
    if "+" not in lane:
        return lanes.get(lane)
    a, b = lane.split("+")
    if (a, b) not in REPLICATED:
        raise SystemExit(f"{lane}: only replicated lanes join ({REPLICATED})")
    if a not in lanes or b not in lanes:
        return None
    key = lambda r: (r["variant"], r["seed"], r["step"], round(r["guidance"], 3))
    seen = {key(r) for r in lanes[a]}
    return lanes[a] + [r for r in lanes[b] if key(r) not in seen]


def table(lanes, lane, kind):
    """LANE is a lane or A+B (two replicated lanes); KIND is one of KINDS, or versus:A:B (two
    arms against each other)."""
    if lane == "all" and kind == "readings":
        return readings_table(lanes)
    records = joined(lanes, lane)
    if records is None:
        return f"(no raw results for {lane})"
    if kind.startswith("versus:"):
        _, a, b = kind.split(":")
        return versus_table(records, a, b)
    return KINDS[kind](records)


# Lanes that train the same runs (same data, options and seeds) under other arms, or to a
# longer budget: a point present in both (a run's step and guidance) must have the same
# scores in both, to the last digit (training and sampling are deterministic), or the
# pairing across lanes would be unfounded. The plateau lane's snapshot at 2,000 steps is
# the mechanism lane's final model.
REPLICATED = [("shapes-flow", "shapes-flow-mech"), ("shapes-eps", "shapes-eps-long")]


def replication_errors(lanes):
    """Each scored point of a run in two replicated lanes whose shared metrics differ."""
    errors = []
    for a, b in REPLICATED:
        if a not in lanes or b not in lanes:
            continue
        key = lambda r: (r["variant"], r["seed"], r["step"], round(r["guidance"], 3))
        first = {key(r): r for r in lanes[a]}
        for r in lanes[b]:
            other = first.get(key(r))
            if other is None:
                continue
            mine = dict(r["metrics"])
            for name, value in other["metrics"]:
                if name in mine and mine[name] != value:
                    errors.append(f"{a} and {b} disagree on {key(r)} {name}: {value} against "
                                  f"{mine[name]}")
    return errors


BLOCK = re.compile(r"(<!-- table (\S+) (\S+) -->\n)(.*?)(<!-- end table -->)", re.S)


def fill(text, lanes):
    return BLOCK.sub(lambda m: m.group(1) + table(lanes, m.group(2), m.group(3)) + "\n"
                     + m.group(5), text)


def self_test():
    """Known answers from outside this script: Student-t quantiles from printed tables, an
    interval and a frontier worked by hand, the usual paired-design seed count, and the
    replication check on a run that agrees and one that does not."""
    def near(a, b, tol, what):
        assert abs(a - b) <= tol, f"{what}: {a} != {b}"
    near(t_quantile(0.975, 9), 2.2622, 1e-4, "t(0.975, 9)")
    near(t_quantile(0.975, 2), 4.3027, 1e-4, "t(0.975, 2)")
    near(t_quantile(0.8, 9), 0.8834, 1e-4, "t(0.8, 9)")
    m, (lo, hi) = interval([1.0, 2.0, 3.0])  # sd 1, half-width 4.3027/√3
    near(m, 2.0, 1e-12, "mean")
    near(hi - m, 2.4841, 1e-4, "half-width")
    near(m - lo, 2.4841, 1e-4, "half-width")
    # (t_a + t_b)² · (sd/effect)² at sd = effect: 10 pairs (t(0.975,9) + t(0.8,9) = 3.146).
    assert seeds_needed(0.10) == 10, seeds_needed(0.10)

    def point(div, score):
        return {"metrics": [["success/tail", score], ["diversity/tail", div]]}
    frontier = {1.0: point(0.9, 0.6), 1.5: point(0.7, 0.8), 2.0: point(0.5, 0.9)}
    # At diversity 0.6 the control's frontier reads 0.85: the arm's 0.9 is +0.05 beyond it.
    near(matched(point(0.6, 0.9), frontier, "success/tail", "diversity/tail"), 0.05, 1e-12,
         "matched")
    near(matched(point(0.9, 0.7), frontier, "success/tail", "diversity/tail"), 0.1, 1e-12,
         "matched at a grid point")
    assert matched(point(0.95, 0.9), frontier, "success/tail", "diversity/tail") is None
    assert matched(point(0.6, 0.9), frontier, "success/tail", "recall/tail") is None
    def run(variant, success):
        return {"variant": variant, "seed": 0, "step": 10, "guidance": 1.5,
                "metrics": [["success/tail", success]]}
    same = {"shapes-flow": [run("dual-baseline", 0.5)],
            "shapes-flow-mech": [run("dual-baseline", 0.5), run("time-mean-d", 0.7)]}
    assert replication_errors(same) == []
    both = joined(same, "shapes-flow+shapes-flow-mech")
    assert [r["variant"] for r in both] == ["dual-baseline", "time-mean-d"], both
    same["shapes-flow-mech"][0] = run("dual-baseline", 0.5 + 1e-9)
    assert len(replication_errors(same)) == 1
    # Within-group slopes worked by hand: groups with their own intercepts and slope 2 give
    # 2; slopes 1 (x̃ = ±½) and 3 (x̃ = ±1) pool to (½ + 6)/(½ + 2) = 2.6.
    near(within_slope([0, 1, 0, 1, 2], [1, 3, 5, 7, 9], "aabbb"), 2.0, 1e-12, "slope")
    near(within_slope([0, 1, 0, 2], [0, 1, 0, 6], "aabb"), 2.6, 1e-12, "pooled slope")
    assert math.isnan(within_slope([1, 1], [0, 5], "ab"))
    # The rule on pairs worked by hand: [0.02, 0.03, 0.04] is 0.03 ± 0.0248 (above 0, but
    # three pairs are too few); five or ten pairs of it lie above 0.
    up, zero = [0.02, 0.03, 0.04, 0.03, 0.03], [-0.01, 0.01, 0.0, 0.02, -0.02]
    assert verdict(up, [0.0] * 5) == "helps (interim, 5 of 10)", verdict(up, [0.0] * 5)
    assert verdict(up * 2, [-0.06] * 10) == "tail up, head down (not helps)"
    assert verdict([-x for x in up] * 2, [0.0] * 10) == "hurts"
    assert verdict(zero * 2, [0.0] * 10) == "does not decide"
    assert verdict(up[:3], [0.0] * 3).startswith("too few pairs")
    assert verdict([0.01, 0.02, 0.03], [0.0] * 3).startswith("does not decide")
    # The speed table pairs each arm's snapshot with its own seed's control at that step.
    def snap(variant, seed, step, success):
        return {"variant": variant, "seed": seed, "step": step, "steps": 20, "guidance": 1.5,
                "metrics": [["success/tail", success], ["success/head", 0.5],
                            ["diversity/tail", 1.0]]}
    runs = [snap("dual-baseline", 0, 10, 0.2), snap("dual-baseline", 1, 10, 0.4),
            snap("arm", 1, 10, 0.7), snap("arm", 0, 10, 0.3)]
    assert "| arm: Δsuccess/tail | 2 | +0.200 [−1.071, +1.471] |" in speed_table(runs), \
        speed_table(runs)
    # The plateau table: at step 20 the last quarter starts at 15 (scored), at 10 at 7.5 (not).
    curve = [snap("dual-baseline", seed, st, x) for seed, st, x in
             [(0, 10, 0.1), (0, 15, 0.5), (0, 20, 0.6), (1, 15, 0.4), (1, 20, 0.7)]]
    got = plateau_table(curve)
    assert "| 20 | 2 | 0.650 | 0.500 | n/a | +0.200 [−1.071, +1.471] (2) |" in got, got
    assert "| 10 | 1 | 0.100 | 0.500 | n/a | n/a |" in got, got
    assert scope("shapes-flow-mech") == ("shapes", "rectified flow")
    assert scope("shapes-flow-r100") == ("shapes, ratio 100", "rectified flow")
    assert scope("digits-eps") == ("digits", "ε")
    assert scope("tiny") == ("tiny", "")
    print("results_tables.py: the statistics match their known answers")
    return 0


def main(argv):
    if argv == ["--self-test"]:
        return self_test()
    raw_dir = "docs/results/concepts"
    if argv[:1] in (["--check"], ["--write"]) and len(argv) == 1:
        argv = argv + ["RESULTS.md"]  # the file the tables live in, by default
    if len(argv) >= 2 and argv[0] in ("--check", "--write"):
        if len(argv) >= 3:
            raw_dir = argv[2]
        lanes = load(raw_dir)
        errors = replication_errors(lanes)
        for e in errors:
            print(e, file=sys.stderr)
        if errors:
            return 1
        with open(argv[1]) as f:
            text = f.read()
        want = fill(text, lanes)
        if argv[0] == "--write":
            with open(argv[1], "w") as f:
                f.write(want)
            return 0
        if want != text:
            old, new = text.splitlines(), want.splitlines()
            for i, (a, b) in enumerate(zip(old, new)):
                if a != b:
                    print(f"{argv[1]}:{i + 1}: the table differs from the raw results:\n"
                          f"  file:       {a}\n  recomputed: {b}", file=sys.stderr)
                    break
            else:
                print(f"{argv[1]}: the tables differ in length from the raw results",
                      file=sys.stderr)
            return 1
        print(f"{argv[1]}: {len(BLOCK.findall(text))} tables match the raw results")
        return 0
    if argv:
        raw_dir = argv[0]
    lanes = load(raw_dir)
    for lane in lanes:
        for kind in KINDS:
            print(f"<!-- table {lane} {kind} -->\n{table(lanes, lane, kind)}\n<!-- end table -->\n")
    print(f"<!-- table all readings -->\n{readings_table(lanes)}\n<!-- end table -->")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
