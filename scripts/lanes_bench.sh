#!/usr/bin/env bash
# How to spend a machine's cores on many independent runs (a comparison's seeds): one run at a
# time with lavapipe's threads on every core, or one run per core side by side with one
# lavapipe thread each. Alternates the two ROUNDS times and prints each one's wall time and
# the throughput ratio (runs per hour side by side over runs per hour one at a time).
# Usage: scripts/lanes_bench.sh [ROUNDS] [STEPS] [extra `imba train` options...]
# (default: the concept-balancing experiment's shapes arm under ε-prediction; start-up and
# the first step's compilation are inside the wall times, as they are in a comparison).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"; steps="${2:-200}"; shift $(( $# < 2 ? $# : 2 ))
bin="${IMBA_BIN:-target/release/imba}"
cores=$(nproc)
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
args=(train --dataset shapes --image-size 8 --jitter --permute-frequencies --batch 32
      --lr 3e-3 --warmup 100 --objective dual-baseline --process ddpm --steps "$steps"
      --sample-count 0 --checkpoint-every 0 --quiet "$@")
now() { date +%s.%N; }
echo "round  one run, $cores threads: s  $cores runs, 1 thread each: s  throughput ratio"
for r in $(seq "$rounds"); do
  t0=$(now)
  LP_NUM_THREADS=$cores "$bin" "${args[@]}" --seed "$r" --out "$dir/one-$r" > /dev/null
  t1=$(now)
  for k in $(seq "$cores"); do
    LP_NUM_THREADS=1 "$bin" "${args[@]}" --seed "$r" --out "$dir/side-$r-$k" > /dev/null &
  done
  wait
  t2=$(now)
  python3 -c "
one, side = $t1 - $t0, $t2 - $t1
print(f'{$r:5d}  {one:24.1f}  {side:30.1f}  {$cores * one / side:16.2f}')"
done
