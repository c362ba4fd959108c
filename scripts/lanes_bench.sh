#!/usr/bin/env bash
# How to spend a machine's cores on many independent runs (a comparison's seeds): one run at a
# time with lavapipe's threads on every core, or K runs side by side with one lavapipe thread
# each. Each round runs every width once, in turn (so a change in the machine's load falls on
# all of them), and prints each width's wall time and its throughput against one run at a time
# (runs per hour at width K over runs per hour of one run on every core).
# Usage: scripts/lanes_bench.sh [ROUNDS] [STEPS] [extra `imba train` options...]
#        WIDTHS="2 4" scripts/lanes_bench.sh ...   (default: the number of cores)
# (default: the concept-balancing experiment's shapes arm under ε-prediction; start-up and
# the first step's compilation are inside the wall times, as they are in a comparison).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"; steps="${2:-200}"; shift $(( $# < 2 ? $# : 2 ))
bin="${IMBA_BIN:-target/release/imba}"
cores=$(nproc)
widths="${WIDTHS:-$cores}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
args=(train --dataset shapes --image-size 8 --jitter --permute-frequencies --batch 32
      --lr 3e-3 --warmup 100 --objective dual-baseline --process ddpm --steps "$steps"
      --sample-count 0 --checkpoint-every 0 --quiet "$@")
now() { date +%s.%N; }
echo "round  one run, $cores threads: s  $(for k in $widths; do printf '%s runs, 1 thread each: s  ratio  ' "$k"; done)"
for r in $(seq "$rounds"); do
  t0=$(now)
  LP_NUM_THREADS=$cores "$bin" "${args[@]}" --seed "$r" --out "$dir/one-$r" > /dev/null
  one=$(python3 -c "print($(now) - $t0)")
  line=$(printf '%5d  %24.1f' "$r" "$one")
  for k in $widths; do
    t1=$(now)
    for j in $(seq "$k"); do
      LP_NUM_THREADS=1 "$bin" "${args[@]}" --seed "$r" --out "$dir/side-$r-$k-$j" > /dev/null &
    done
    wait
    line+=$(python3 -c "
side = $(now) - $t1
print(f'  {side:26.1f}  {$k * $one / side:5.2f}×', end='')")
  done
  echo "$line"
done
