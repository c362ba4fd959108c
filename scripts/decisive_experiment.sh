#!/usr/bin/env bash
# The decisive experiment of RESULTS.md: does concept balancing help the tail?
#
#   scripts/decisive_experiment.sh [OUT]        (default OUT: runs/decisive)
#   LANES=2 scripts/decisive_experiment.sh      (one lane only)
#
# Two lanes run side by side (one per core of a 2-core machine):
#   lane 1: jittered 8×8 shapes with permuted frequencies, ε-prediction: dual-baseline (the
#           control), IMBA as published, IMBA with timestep-normalised D, the compute-matched
#           baseline and CBDM, seeds 0-4; then rectified flow: dual-baseline, IMBA, IMBA
#           timestep-normalised, seeds 0-2;
#   lane 2: real digits, ε-prediction, the same four objectives, seeds 0-4.
# Each comparison runs seed by seed (all objectives of seed 0, then of seed 1, ...), so the
# paired differences sharpen as seeds finish, and ends with one report over all seeds. Every
# run keeps snapshots (learning curves) and is scored at guidance 1.5, 1 and 2.6.
#
# The budgets (steps) come from the pilot described in RESULTS.md. Rerunning the script
# resumes: finished runs are reused, unfinished ones continue from their last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
OUT="${1:-runs/decisive}"
BIN="${IMBA_BIN:-target/release/imba}"
if [ ! -x "$BIN" ]; then
  cargo build --release
fi
SHAPES_STEPS="${SHAPES_STEPS:-2000}"
DIGITS_STEPS="${DIGITS_STEPS:-2000}"
SEEDS="0 1 2 3 4"
FLOW_SEEDS="0 1 2"

# 64 samples per label, DDIM 25: six scorings a run (three snapshots, three guidance scales)
# at DDIM 50 cost more than the training itself.
scoring=(--eval-per-label 64 --eval-steps 25 --eval-guidance 1.5 --guidance-sweep 1,2.6
         --snapshots --quiet)
# Every training option that matters is pinned (not left to the trainer's defaults).
shapes=(--dataset shapes --image-size 8 --jitter --permute-frequencies --batch 32 --lr 3e-3
        --warmup 100 --model auto
        --steps "$SHAPES_STEPS" --checkpoint-every $((SHAPES_STEPS / 4)))
digits=(--dataset digits --batch 32 --lr 3e-3 --warmup 100 --model auto --steps "$DIGITS_STEPS"
        --checkpoint-every $((DIGITS_STEPS / 4)))

CORE=dual-baseline,imba,imba-tnorm

# compare ROOT "CORE" "EXTRA" "SEEDS" ARGS...: the core objectives seed by seed (so the
# decisive paired differences come first), then the extra ones seed by seed, then the
# report over all objectives and seeds (report.md beside compare.md).
compare() {
  local root=$1 core=$2 extra=$3 seeds=$4
  shift 4
  for objectives in $core $extra; do
    for seed in $seeds; do
      "$BIN" compare --out "$root" --objectives "$objectives" --seeds "$seed" "$@" >/dev/null
    done
  done
  local all=$core${extra:+,$extra}
  "$BIN" compare --out "$root" --objectives "$all" --seeds "${seeds// /,}" "$@" \
    > "$root/report.md"
  echo "$(date -u +%FT%TZ) finished $root"
}

lane1() {
  compare "$OUT/shapes-eps" "$CORE" baseline-matched,cbdm "$SEEDS" "${shapes[@]}" --process ddpm \
    "${scoring[@]}"
  compare "$OUT/shapes-flow" "$CORE" "" "$FLOW_SEEDS" "${shapes[@]}" --process flow \
    "${scoring[@]}"
}

lane2() {
  compare "$OUT/digits-eps" "$CORE" baseline-matched "$SEEDS" "${digits[@]}" --process ddpm \
    "${scoring[@]}"
}

mkdir -p "$OUT"
for lane in ${LANES:-1 2}; do
  "lane$lane" > "$OUT/lane$lane.log" 2>&1 &
done
wait
echo "done: $OUT/*/report.md"
