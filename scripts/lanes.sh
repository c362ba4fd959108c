#!/usr/bin/env bash
# Starts the concept-balancing experiment in two lanes side by side, one core and one
# lavapipe thread each (1.58× the runs per hour of one run on both cores, BENCHMARKS.md), in
# the background, each lane running the given phases of scripts/concept_balancing.sh in turn
# over its half of the seeds (even and odd).
#
#   scripts/lanes.sh flow-mechanism flow-digits mechanism rest fashion ratio100   start (returns at once)
#   scripts/lanes.sh --status                              what runs, what finished
#   scripts/lanes.sh --stop                                stop both lanes (runs resume later)
#
# The lanes run a copy of the release binary (runs/concepts/lanes/imba), so a rebuild while
# they run cannot change what they train; logs go to runs/concepts/lanes/lane-{0,1}.log.
# Finished runs are reused and unfinished ones resume from their last checkpoint, so
# stopping and starting again loses at most the steps since a checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
dir=runs/concepts/lanes
mkdir -p "$dir"

lanes_running() { pgrep -f "$dir/imba compare" > /dev/null || pgrep -f "lanes.sh --lane" > /dev/null; }

case "${1:-}" in
  --status)
    pgrep -af "$dir/imba compare" | sed 's/.*--out /running: /; s/ --objectives / /; s/ --seeds / seed /; s/ --.*//' || echo "no lane is running"
    # The runs training now: a step log written in the last two minutes.
    find runs/concepts -name log.jsonl -mmin -2 2>/dev/null | while read -r log; do
      step=$(tail -n 1 "$log" | sed -n 's/^{"step":\([0-9]*\).*/\1/p')
      echo "training: $(dirname "$log") at step ${step:-?}"
    done
    find docs/results/concepts/runs -name result.json 2>/dev/null | sed 's|docs/results/concepts/runs/||; s|/result.json||' | awk -F/ '{n[$1]++} END {for (l in n) print "kept: " l " " n[l] " runs"}'
    exit 0 ;;
  --stop)
    pkill -f "lanes.sh --lane" || true
    # Only the lanes' phases (they run the lanes' binary), not a comparison started by hand.
    for pid in $(pgrep -f "concept_balancing.sh" || true); do
      if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "IMBA_BIN=$dir/imba"; then
        kill "$pid" 2>/dev/null || true
      fi
    done
    pkill -f "$dir/imba compare" || true
    echo "stopped; start again with the same phases to resume"
    exit 0 ;;
  --lane)
    # One lane: --lane SEEDS PHASE...
    seeds=$2
    shift 2
    for phase in "$@"; do
      SEEDS="$seeds" LP_NUM_THREADS=1 IMBA_BIN="$dir/imba" nice -n 15 \
        scripts/concept_balancing.sh "$phase"
    done
    exit 0 ;;
  ""|-*)
    echo "usage: scripts/lanes.sh PHASE... | --status | --stop" >&2
    exit 2 ;;
esac

if lanes_running; then
  echo "lanes are running already (scripts/lanes.sh --status; --stop to stop them)" >&2
  exit 1
fi
cargo build --release --quiet
# A CPU adapter over OpenGL trains about 11× slower than lavapipe's Vulkan: refuse it here
# rather than let hours of runs crawl (scripts/setup.sh installs lavapipe).
backend=$(target/release/imba info 2>/dev/null | sed -n 's/^backend *//p')
if [ "$backend" != Vulkan ] && [ "$backend" != Metal ] && [ "$backend" != Dx12 ]; then
  echo "the default adapter runs on '${backend:-nothing}', not a native GPU API; run scripts/setup.sh" >&2
  exit 1
fi
cp target/release/imba "$dir/imba.new" && mv "$dir/imba.new" "$dir/imba"
for lane in 0 1; do
  seeds=$(seq "$lane" 2 9 | paste -sd' ')
  nohup "$0" --lane "$seeds" "$@" >> "$dir/lane-$lane.log" 2>&1 &
  echo "lane $lane (seeds $seeds): $* — log $dir/lane-$lane.log"
done
