#!/usr/bin/env python3
"""Paired tail difference of one objective scored at one guidance scale against the control
scored at another, seed by seed, from a comparison's result.json files: how a remedy that
sharpens samples compares where both draw equally varied samples.

  scripts/equal_diversity.py ROOT [--variant imba-tnorm] [--at 1] [--control dual-baseline]
                             [--control-at 1.5] [--score acc]

ROOT is an `imba compare --out` folder whose runs were scored with --guidance-sweep holding
the scales named (the main evaluation's scale counts too). Prints each seed's tail score,
tail diversity and Fréchet distance (digits) for both, then the mean difference of the tail
score with its 95% Student-t interval. Standard library only.
"""
import argparse
import json
import math
import pathlib
import statistics

# Two-sided 95% Student-t quantiles by degrees of freedom.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
       9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}


def t95(df):
    return T95.get(df) or T95[max(k for k in T95 if k <= df)]


def metrics_at(result, guidance):
    """The run's metrics at `guidance`: the main evaluation's or the sweep's."""
    if abs(result["eval_options"]["guidance"] - guidance) < 1e-6:
        return dict(result["evaluation"]["metrics"])
    for s in result["sweep"]:
        if abs(s["guidance"] - guidance) < 1e-6:
            return dict(s["metrics"])
    raise SystemExit(f"{result['variant']} seed {result['seed']}: not scored at guidance {guidance}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", type=pathlib.Path)
    p.add_argument("--variant", default="imba-tnorm")
    p.add_argument("--at", type=float, default=1.0)
    p.add_argument("--control", default="dual-baseline")
    p.add_argument("--control-at", type=float, default=1.5)
    p.add_argument("--score", default="acc", help="metric family: acc (digits), success (shapes)")
    a = p.parse_args()
    diffs = []
    for seed in range(100):
        files = [a.root / v / f"seed{seed}" / "result.json" for v in (a.variant, a.control)]
        if not all(f.exists() for f in files):
            continue
        r, c = (json.loads(f.read_text()) for f in files)
        m, mc = metrics_at(r, a.at), metrics_at(c, a.control_at)
        key = f"{a.score}/tail"
        line = f"seed {seed}: {a.variant}@{a.at:g} tail {m[key]:.3f}, {a.control}@{a.control_at:g} " \
               f"tail {mc[key]:.3f}"
        if "diversity/tail" in m:
            line += f"; tail diversity {m['diversity/tail']:.2f} / {mc['diversity/tail']:.2f}"
        if "frechet" in m:
            line += f"; Fréchet {m['frechet']:.1f} / {mc['frechet']:.1f}"
        print(line)
        diffs.append(m[key] - mc[key])
    if len(diffs) < 2:
        raise SystemExit("fewer than two paired seeds")
    mean = statistics.mean(diffs)
    half = t95(len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    print(f"{len(diffs)} pairs: Δ{a.score}/tail {mean:+.3f} [{mean - half:+.3f}, {mean + half:+.3f}]")


if __name__ == "__main__":
    main()
