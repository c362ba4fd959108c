#!/usr/bin/env bash
# Speed of each GPU implementation this machine reaches, as ratios to lavapipe, measured in
# one alternating run (round r runs every implementation once, so load drifts hit all alike):
# the default training step (median ms of steps 3–12 of `imba train --steps 12`) and the
# fused IMBA loss (GPU timestamps, median of 5, `imba bench kernels` at B,C,H,W,p below).
# Usage: scripts/backend_bench.sh [ROUNDS] [SIZE]   (defaults: 3, 64,4,32,32,2)
# Needs the release binary (cargo build --release) and SwiftShader's ICD (Debian: chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
rounds=${1:-3}
size=${2:-64,4,32,32,2}
imba=target/release/imba
ss=/usr/lib/chromium/vk_swiftshader_icd.json
out=target/backend-bench
mkdir -p "$out"
names=(lavapipe swiftshader gl)

run() { # NAME ARGS...: imba on one implementation
  case $1 in
    lavapipe) shift; "$imba" --backend vulkan --adapter llvmpipe "$@" ;;
    swiftshader) shift; VK_ICD_FILENAMES=$ss "$imba" --backend vulkan "$@" ;;
    gl) shift; "$imba" --backend gl "$@" ;;
  esac
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

: >"$out/samples.tsv"
for r in $(seq "$rounds"); do
  for n in "${names[@]}"; do
    rm -rf "$out/run-$n"
    run "$n" train --steps 12 --sample-count 0 --out "$out/run-$n" >/dev/null 2>&1
    step=$(sed -n '3,12p' "$out/run-$n/log.jsonl" | sed 's/.*"ms":\([0-9.]*\).*/\1/' | median)
    loss=$(run "$n" bench kernels --reps 5 --warmup 2 --size "$size" 2>/dev/null |
      awk -F'|' '/imba fused, default/ { gsub(/ /, "", $4); print $4 }')
    printf '%s\t%s\t%s\t%s\n' "$r" "$n" "$step" "$loss" | tee -a "$out/samples.tsv"
  done
done

echo
echo "| implementation | training step, ms (median of rounds) | × lavapipe | fused IMBA loss at $size, GPU ms | × lavapipe |"
echo "|---|---:|---:|---:|---:|"
base_step=$(awk -F'\t' '$2 == "lavapipe" { print $3 }' "$out/samples.tsv" | median)
base_loss=$(awk -F'\t' '$2 == "lavapipe" { print $4 }' "$out/samples.tsv" | median)
for n in "${names[@]}"; do
  step=$(awk -F'\t' -v n="$n" '$2 == n { print $3 }' "$out/samples.tsv" | median)
  loss=$(awk -F'\t' -v n="$n" '$2 == n { print $4 }' "$out/samples.tsv" | median)
  awk -v n="$n" -v s="$step" -v l="$loss" -v bs="$base_step" -v bl="$base_loss" \
    'BEGIN { printf "| %s | %.1f | %.1f× | %.3f | %.1f× |\n", n, s, s / bs, l, l / bl }'
done
