#!/usr/bin/env bash
# The page against native code on this machine: ROUNDS rounds (default 3), each running the
# page's scenario (web/test/spec.json: a grid from the bundled model, then training steps of
# the default run) natively on lavapipe, natively on SwiftShader (the Vulkan implementation
# under headless Chromium's WebGPU here), and in headless Chromium, one after another so that
# a change of load falls on all three. Prints the medians and the per-round ratios.
# Usage: scripts/bench-web.sh [ROUNDS]   (after scripts/setup-web.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
rounds=${1:-3}
icd=${SWIFTSHADER_ICD:-/usr/lib/chromium/vk_swiftshader_icd.json}
out=target/web-bench
mkdir -p "$out"
scripts/build-web.sh >/dev/null
cargo build --locked --release --quiet --example live
live=target/release/examples/live
for r in $(seq 1 "$rounds"); do
  "$live" web/test/spec.json >"$out/lavapipe-$r.json"
  VK_ICD_FILENAMES=$icd "$live" web/test/spec.json >"$out/swiftshader-$r.json"
  node web/serve.mjs --test "$out/lavapipe-$r.json" --result "$out/browser-$r.json" >/dev/null
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
kinds = ["lavapipe", "swiftshader", "browser"]
def figures(d):
    steps = [s["ms"] for s in d["train"][1:]]  # the first step also compiles pipelines
    return {"sample": d["ms"]["sample_again"], "step": statistics.median(steps)}
runs = {k: [figures(json.load(open(f"{out}/{k}-{r}.json"))) for r in range(1, rounds + 1)] for k in kinds}
adapters = {k: json.load(open(f"{out}/{k}-1.json"))["adapter"] for k in kinds}
print(f"{rounds} rounds; medians (ms), and the browser's time over each native run's, per round (min..max)")
print(f"{'runtime':<13}{'adapter':<48}{'grid (warm)':>12}{'train step':>12}")
for k in kinds:
    med = {f: statistics.median(r[f] for r in runs[k]) for f in ("sample", "step")}
    print(f"{k:<13}{adapters[k][:46]:<48}{med['sample']:>12.1f}{med['step']:>12.1f}")
for k in kinds[:2]:
    for f in ("sample", "step"):
        ratios = [b[f] / n[f] for b, n in zip(runs["browser"], runs[k])]
        print(f"browser / {k:<12} {f:<7} {statistics.median(ratios):6.2f}x  ({min(ratios):.2f}..{max(ratios):.2f})")
PY
