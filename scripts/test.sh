#!/usr/bin/env bash
# The test suite: `cargo test` (extra arguments are passed on), then the checks that tests
# skipped on this machine, counted and named, so a skip is never mistaken for a pass.
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
skips="target/tmp/skipped.txt"
mkdir -p target/tmp && : > "$skips"
status=0
# Data-parallel training and its tests build where an MPI library is installed
# (scripts/setup.sh installs Open MPI); elsewhere its tests are counted as skipped.
features=()
if command -v mpicc >/dev/null 2>&1; then
  features=(--features mpi)
fi
cargo test "${features[@]}" "$@" || status=$?
n=$(sort -u "$skips" | grep -c . || true)
if [ "$n" -gt 0 ]; then
  echo "skipped checks: $n (each passed without running; the reason is beside it)"
  sort -u "$skips" | sed 's/^/  skipped: /'
else
  echo "skipped checks: 0"
fi
exit "$status"
