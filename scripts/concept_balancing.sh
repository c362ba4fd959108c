#!/usr/bin/env bash
# The concept-balancing experiment of RESULTS.md: does balancing by concepts help rare labels,
# in any form, under ε-prediction and rectified flow?
#
#   scripts/concept_balancing.sh PHASE [OUT]     (default OUT: runs/concepts)
#   SEEDS="0 2 4" scripts/concept_balancing.sh flow     (a subset of the seeds)
#
# Phases, in the order that gives the most information per hour of a 2-core machine:
#   flow       rectified flow, shapes: dual-baseline (the control), imba (as published),
#              imba-tnorm (D over its timestep bucket's running mean);
#   flow-mechanism
#              rectified flow, shapes: which part of published IMBA's weight helps the tail
#              under flow: time-mean-d (D's timestep profile alone, at its scale), mean-d
#              (its overall scale alone), class-mean-d (its concept part alone), shuffled-d
#              (the placebo), inverse-frequency, beside the control (trained again: its
#              scores must equal the flow lane's);
#   flow-digits
#              the flow lane's three objectives on digits: question (a) on the second
#              data set (real handwriting);
#   mechanism  ε-prediction, shapes and digits: the control, imba-tnorm, imba-tnorm-sample
#              (the ε-tilt shrinks, the concept signal stays), class-mean-d (D's running mean
#              per label and timestep bucket: concept balancing with the paper's own signal),
#              inverse-frequency (explicit class weights): questions (b) and (c);
#   rest       the other arms: shuffled-d (a placebo with imba-tnorm's weight
#              distribution), the one-pass baseline at equal forward rows, CBDM (scored at
#              its published guidance 2.6 on the grid);
#   ratio100   the flow lane's three objectives on shapes at imbalance 100 (the CIFAR-LT
#              ratio: 200 images of the head label down to 2 of the tail) instead of 10;
#   fashion    a real long-tailed image set: Fashion-MNIST (28×28, ratio 100, Debian's
#              dataset-fashion-mnist), the flow lane's three objectives under flow: does
#              the shapes result hold on real images?
#   plateau    ε-prediction, shapes then digits: the control extended to 8,000 steps, a
#              snapshot every 500: where its tail stops rising (the plateau rule: under 0.01
#              over the last quarter); not in the lanes (run it for a few seeds, SEEDS="0 1").
#              It resumes the mechanism lane's finished 2,000-step controls where
#              they are on this machine (a resumed run is bit for bit the run trained to the
#              longer budget at once: the learning rate is constant after warm-up), else it
#              trains from the start;
#   report     the tables of every finished run (trains nothing).
#   keep       copy every finished run's record (result.json, config.toml) into KEPT.
# Every seed draws its own data (`--data-per-seed`: which label is rare changes with the
# seed); all objectives of one seed share it, so the differences are paired. Runs go seed by
# seed, so the paired differences sharpen as seeds finish. Two invocations may run side by
# side (one per core, LP_NUM_THREADS=1 each) on disjoint SEEDS. Rerunning resumes: finished
# runs are reused, unfinished ones continue from their last checkpoint.
# A finished run's record (its result.json and config.toml, ~40 KB) is kept in the repository
# under KEPT (default docs/results/concepts/runs) as each run finishes; a phase first copies
# the kept records of its seeds back into OUT, so a fresh clone, or a machine that lost OUT,
# reuses every committed run instead of training it again. `report` restores every seed.
# The whole script is one block, read before it runs: the lanes run for days, and an edit of
# this file while they run must not change what they execute.
{
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
PHASE="${1:?usage: scripts/concept_balancing.sh flow|flow-mechanism|flow-digits|mechanism|rest|ratio100|fashion|plateau|report|keep [OUT]}"
OUT="${2:-runs/concepts}"
BIN="${IMBA_BIN:-target/release/imba}"
if [ ! -x "$BIN" ]; then
  cargo build --release
fi
STEPS="${STEPS:-2000}"
SEEDS="${SEEDS:-0 1 2 3 4 5 6 7 8 9}"
KEPT="${KEPT:-docs/results/concepts/runs}"

# The guidance grid of the frontier (fixed before the runs), 32 samples per label, DDIM (or
# Euler) 25 steps; snapshots at every quarter give the learning curve.
scoring=(--eval-per-label 32 --eval-steps 25 --eval-guidance 1.5
         --guidance-sweep 1,1.25,1.75,2,2.6,3.5 --snapshots --quiet --data-per-seed)
# Every training option that matters is pinned (not left to the trainer's defaults), for a
# budget of $1 steps with a snapshot every quarter of the lanes' budget.
training() {
  printf '%s\n' --batch 32 --lr 3e-3 --warmup 100 --model auto --steps "$1" \
    --checkpoint-every $((STEPS / 4))
}
mapfile -t common < <(training "$STEPS")
# The plateau phase's budget: four times the lanes'.
mapfile -t long < <(training $((4 * STEPS)))
shapes_data=(--dataset shapes --image-size 8 --jitter --permute-frequencies)
shapes=("${shapes_data[@]}" "${common[@]}")
digits_data=(--dataset digits --permute-frequencies)
digits=("${digits_data[@]}" "${common[@]}")
fashion=(--dataset idx --permute-frequencies "${common[@]}")

# restore ROOT SEEDS...: the kept records of those seeds copied into ROOT where it has none.
restore() {
  local root=$1 lane kept seed dest
  shift
  lane=$(basename "$root")
  for seed in "$@"; do
    # shellcheck disable=SC2231 # the seed may be a glob (`report` restores every seed)
    for kept in "$KEPT/$lane"/*/seed$seed; do
      [ -f "$kept/result.json" ] && [ -f "$kept/config.toml" ] || continue
      dest="$root/${kept#"$KEPT/$lane/"}"
      [ -f "$dest/result.json" ] && continue
      mkdir -p "$dest"
      cp "$kept/config.toml" "$kept/result.json" "$dest/"
      echo "restored $dest from $kept"
    done
  done
}

# keep ROOT: every finished run's record of ROOT copied into KEPT (atomically, by rename).
keep() {
  local root=$1 lane run dest file
  [ -d "$root" ] || return 0
  lane=$(basename "$root")
  for run in "$root"/*/seed*; do
    [ -f "$run/result.json" ] || continue
    dest="$KEPT/$lane/${run#"$root/"}"
    mkdir -p "$dest"
    for file in config.toml result.json; do
      cmp -s "$run/$file" "$dest/$file" && continue
      cp "$run/$file" "$dest/.$file.tmp" && mv "$dest/.$file.tmp" "$dest/$file"
    done
  done
}

# run ROOT OBJECTIVES ARGS...: each seed of SEEDS, all objectives of the seed, one comparison
# per run (it reuses the seed's finished runs), so that each run's record is kept as soon as
# it finishes, not when its seed does: a machine lost mid-seed loses only the run in progress.
run() {
  local root=$1 objectives=$2 objective
  shift 2
  # shellcheck disable=SC2086 # SEEDS is a list
  restore "$root" $SEEDS
  for seed in $SEEDS; do
    for objective in ${objectives//,/ }; do
      "$BIN" compare --out "$root" --objectives "$objective" --seeds "$seed" "$@" >/dev/null
      keep "$root"
    done
    echo "$(date -u +%FT%TZ) $root seed $seed done"
  done
}

# fork FROM TO OBJECTIVE: each seed's finished run of OBJECTIVE in FROM copied into TO where
# TO has none, so that TO's longer budget resumes it instead of training its first steps again.
fork() {
  local from=$1 to=$2 objective=$3 seed src dest
  for seed in $SEEDS; do
    src="$from/$objective/seed$seed"
    dest="$to/$objective/seed$seed"
    [ -f "$src/result.json" ] && [ -f "$src/checkpoint.safetensors" ] || continue
    [ -e "$dest" ] && continue
    mkdir -p "$to/$objective"
    rm -rf "$dest.tmp"
    # Without its result: that is the shorter run's, and `report` takes a result as finished.
    cp -r "$src" "$dest.tmp" && rm "$dest.tmp/result.json" && mv "$dest.tmp" "$dest"
    echo "forked $dest from $src"
  done
}

# report ROOT OBJECTIVES ARGS...: the table of every finished run of every seed.
report() {
  local root=$1 objectives=$2
  shift 2
  restore "$root" '*'
  [ -d "$root" ] || return 0
  local seeds
  # The seeds with a finished run (a lane that has only started has none: nothing to report).
  seeds=$(find "$root" -mindepth 3 -maxdepth 3 -path '*/seed*/result.json' |
    sed -n 's|.*/seed\([0-9]*\)/result.json$|\1|p' | sort -un | paste -sd,)
  [ -n "$seeds" ] || return 0
  "$BIN" compare --out "$root" --objectives "$objectives" --seeds "$seeds" "$@" --report-only \
    > "$root/report.md"
  echo "written: $root/report.md"
}

CORE=dual-baseline,imba,imba-tnorm
FLOW_MECHANISM=dual-baseline,time-mean-d,mean-d,class-mean-d,shuffled-d,inverse-frequency
MECHANISM=dual-baseline,imba-tnorm,imba-tnorm-sample,class-mean-d,inverse-frequency
REST=shuffled-d,baseline-matched,cbdm

mkdir -p "$OUT"
case "$PHASE" in
  flow)
    run "$OUT/shapes-flow" "$CORE" "${shapes[@]}" --process flow "${scoring[@]}" ;;
  flow-mechanism)
    run "$OUT/shapes-flow-mech" "$FLOW_MECHANISM" "${shapes[@]}" --process flow "${scoring[@]}" ;;
  flow-digits)
    run "$OUT/digits-flow" "$CORE" "${digits[@]}" --process flow "${scoring[@]}" ;;
  mechanism)
    run "$OUT/shapes-eps" "$MECHANISM" "${shapes[@]}" --process ddpm "${scoring[@]}"
    run "$OUT/digits-eps" "$MECHANISM" "${digits[@]}" --process ddpm "${scoring[@]}" ;;
  rest)
    run "$OUT/shapes-eps" "dual-baseline,$REST" "${shapes[@]}" --process ddpm "${scoring[@]}"
    run "$OUT/digits-eps" "dual-baseline,$REST" "${digits[@]}" --process ddpm "${scoring[@]}" ;;
  ratio100)
    run "$OUT/shapes-flow-r100" "$CORE" "${shapes[@]}" --imbalance 100 --process flow \
      "${scoring[@]}" ;;
  fashion)
    run "$OUT/fashion-flow" "$CORE" "${fashion[@]}" --process flow "${scoring[@]}" ;;
  plateau)
    fork "$OUT/shapes-eps" "$OUT/shapes-eps-long" dual-baseline
    run "$OUT/shapes-eps-long" dual-baseline "${shapes_data[@]}" "${long[@]}" --process ddpm \
      "${scoring[@]}"
    fork "$OUT/digits-eps" "$OUT/digits-eps-long" dual-baseline
    run "$OUT/digits-eps-long" dual-baseline "${digits_data[@]}" "${long[@]}" --process ddpm \
      "${scoring[@]}" ;;
  keep)
    for root in "$OUT"/*/; do keep "${root%/}"; done ;;
  report)
    report "$OUT/shapes-flow" "$CORE" "${shapes[@]}" --process flow "${scoring[@]}"
    report "$OUT/shapes-flow-mech" "$FLOW_MECHANISM" "${shapes[@]}" --process flow "${scoring[@]}"
    report "$OUT/digits-flow" "$CORE" "${digits[@]}" --process flow "${scoring[@]}"
    report "$OUT/shapes-eps" "$MECHANISM,$REST" "${shapes[@]}" --process ddpm "${scoring[@]}"
    report "$OUT/digits-eps" "$MECHANISM,$REST" "${digits[@]}" --process ddpm "${scoring[@]}"
    report "$OUT/shapes-eps-long" dual-baseline "${shapes_data[@]}" "${long[@]}" --process ddpm \
      "${scoring[@]}"
    report "$OUT/digits-eps-long" dual-baseline "${digits_data[@]}" "${long[@]}" --process ddpm \
      "${scoring[@]}"
    report "$OUT/shapes-flow-r100" "$CORE" "${shapes[@]}" --imbalance 100 --process flow \
      "${scoring[@]}"
    report "$OUT/fashion-flow" "$CORE" "${fashion[@]}" --process flow "${scoring[@]}" ;;
  *)
    echo "unknown phase $PHASE: flow, flow-mechanism, flow-digits, mechanism, rest, ratio100, fashion, plateau, report or keep" >&2
    exit 2 ;;
esac
exit
}
