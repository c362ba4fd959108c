#!/usr/bin/env bash
# Data-parallel scaling on this machine: `imba train` on 1 rank and on R ranks (mpirun), one
# lavapipe thread per rank, alternating ROUNDS times; prints the median step time of each
# run (steps after the first 5), the speed-up and the exchange's share of an R-rank step.
# Usage: scripts/parallel_bench.sh [R] [ROUNDS] [extra `imba train` options...]
# Needs a release build with `--features mpi` and Open MPI's mpirun.
set -euo pipefail
cd "$(dirname "$0")/.."
ranks="${1:-2}"; rounds="${2:-3}"; shift $(( $# < 2 ? $# : 2 ))
bin="${IMBA_BIN:-target/release/imba}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}" LP_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
args=(train --steps 30 --sample-count 0 --checkpoint-every 0 --quiet "$@")
median() { python3 -c "
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])][5:]
ms = statistics.median(r['ms'] for r in rows)
sync = statistics.median(r.get('sync_ms', 0.0) for r in rows)
print(f'{ms:.1f} {sync:.1f}')" "$1"; }
echo "round  1-rank ms/step  ${ranks}-rank ms/step  speed-up  exchange ms (share)"
for r in $(seq "$rounds"); do
  "$bin" "${args[@]}" --out "$dir/one-$r" > /dev/null
  mpirun -n "$ranks" --oversubscribe "$bin" "${args[@]}" --out "$dir/many-$r" > /dev/null
  read -r one _ < <(median "$dir/one-$r/log.jsonl")
  read -r many sync < <(median "$dir/many-$r/log.jsonl")
  python3 -c "print(f'{$r:5d}  {$one:14.1f}  {$many:14.1f}  {$one/$many:8.2f}  {$sync:6.1f} ({100*$sync/$many:.0f}%)')"
done
