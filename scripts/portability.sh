#!/usr/bin/env bash
# The portability matrix: imba on every GPU implementation this machine can reach.
#
#   lavapipe (Vulkan)       the kernel cases exported for replay (once with the adapter's
#                           limits, once with WebGPU's defaults), and the DiT goldens and
#                           a short training run under WebGPU's default limits
#   SwiftShader (Vulkan)    kernel tests, DiT goldens, a 10-step training run
#   llvmpipe (OpenGL, GL)   kernel tests of every family, DiT goldens, a 10-step training run
#   Dawn in Node            every exported module compiled, every case replayed, each export
#                           on a device with the limits it was made with
#   Dawn in Chromium        the same in a headless browser tab
#
# The whole suite on lavapipe is scripts/test.sh; this script assumes it ran (the test
# binaries are built). Each training run's final loss is compared with lavapipe's (relative
# 1e-4). Skips (a missing browser or driver) are counted and named, never silent; the exit
# status is non-zero if any row failed. Usage: scripts/portability.sh [--quick]
# (--quick: the kernel cases' exports and the Dawn rows only).
set -uo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
SWIFTSHADER_ICD=${SWIFTSHADER_ICD:-/usr/lib/chromium/vk_swiftshader_icd.json}
CASES=target/portability/cases
CASES_WEBGPU=target/portability/cases-webgpu
RUNS=target/portability/runs
quick=0
[ "${1:-}" = --quick ] && quick=1

features=()
command -v mpicc >/dev/null 2>&1 && features=(--features mpi)
rows=()
skips=()
failed=0

# row NAME COMMAND...: runs a command, records pass or fail with its time.
row() {
  local name=$1
  shift
  local start=$SECONDS log
  log="target/portability/$(echo "$name" | tr -c 'a-zA-Z0-9\n' '_').log"
  if "$@" >"$log" 2>&1; then
    rows+=("pass  $(printf '%4d' $((SECONDS - start))) s  $name")
  else
    rows+=("FAIL  $(printf '%4d' $((SECONDS - start))) s  $name (log: $log)")
    failed=1
    tail -n 30 "$log" | sed 's/^/    /'
  fi
}

skip() { skips+=("$1: $2"); }

ct=(cargo test "${features[@]}" --locked)

# train NAME ENV...: a 10-step run of the default training on one implementation.
train() {
  local name=$1
  shift
  rm -rf "${RUNS:?}/$name"
  env "$@" cargo run "${features[@]}" --locked -q -- train --steps 10 --sample-count 0 \
    --out "$RUNS/$name"
}

final_loss() { tail -n 1 "$1/log.jsonl" | sed 's/.*"loss":\([^,]*\),.*/\1/'; }

# same_loss NAME ENV...: a 10-step run whose final loss is within 1e-4 (relative) of lavapipe's.
same_loss() {
  local name=$1 a b
  train "$@" >/dev/null || return 1
  a=$(final_loss "$RUNS/lavapipe") && b=$(final_loss "$RUNS/$name") || return 1
  echo "loss after 10 steps: lavapipe $a, $name $b"
  awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-4 * (a < 0 ? -a : a)) }'
}

mkdir -p target/portability "$RUNS"
rm -rf "$CASES" "$CASES_WEBGPU" target/portability/*.log

# lavapipe: export the kernel cases (the kernel tests, each recording what it dispatched).
row "lavapipe: kernel tests, cases exported" env IMBA_CASES_DIR="$PWD/$CASES" \
  "${ct[@]}" --test kernels
row "lavapipe, WebGPU default limits: kernel tests, cases exported" env IMBA_LIMITS=webgpu \
  IMBA_CASES_DIR="$PWD/$CASES_WEBGPU" "${ct[@]}" --test kernels

if [ "$quick" = 0 ]; then
  row "lavapipe: 10-step training" train lavapipe XDG_RUNTIME_DIR="$XDG_RUNTIME_DIR"
  row "lavapipe, WebGPU default limits: DiT goldens" env IMBA_LIMITS=webgpu \
    "${ct[@]}" --test model dit_goldens
  row "lavapipe, WebGPU default limits: 10-step training" same_loss webgpu-limits \
    IMBA_LIMITS=webgpu

  if [ -f "$SWIFTSHADER_ICD" ]; then
    ss=(VK_ICD_FILENAMES="$SWIFTSHADER_ICD")
    row "SwiftShader: kernel tests" env "${ss[@]}" "${ct[@]}" --test kernels
    row "SwiftShader: DiT goldens" env "${ss[@]}" "${ct[@]}" --test model dit_goldens
    row "SwiftShader: 10-step training" same_loss swiftshader "${ss[@]}"
  else
    skip "SwiftShader rows" "no $SWIFTSHADER_ICD (Debian: apt-get install chromium)"
  fi

  # wgpu's GL backend holds one context: a thread that waits on it for more than a few
  # seconds panics, so its tests run one at a time.
  gl=(WGPU_BACKEND=gl)
  if env "${gl[@]}" cargo run "${features[@]}" --locked -q -- info >/dev/null 2>&1; then
    # The forced tiled attention is skipped here: its GLSL runs ~10^4 times slower on
    # llvmpipe's GL than its SPIR-V on lavapipe (185 s for one 33-token forward at head size
    # 64); GL on a CPU adapter runs the texture attention, which is tested.
    row "GL (llvmpipe): kernel tests" env "${gl[@]}" "${ct[@]}" --test kernels -- \
      --test-threads=1 --skip tiled_attention_matches_reference
    skip "GL (llvmpipe): tiled_attention_matches_reference" \
      "the forced tiled attention takes minutes per head size on llvmpipe's GL (not the path GL chooses on a CPU adapter)"
    row "GL (llvmpipe): DiT goldens" env "${gl[@]}" "${ct[@]}" --test model dit_goldens -- \
      --test-threads=1
    row "GL (llvmpipe): 10-step training" same_loss gl "${gl[@]}"
  else
    skip "GL rows" "wgpu finds no GL adapter (Debian: apt-get install libegl1 libgl1-mesa-dri)"
  fi
fi

# Dawn, Chrome's WebGPU, on SwiftShader: in Node, then in headless Chromium.
dawn=portability/dawn
if command -v node >/dev/null 2>&1 && [ -f "$SWIFTSHADER_ICD" ]; then
  if (cd "$dawn" && npm ci --no-audit --no-fund --silent) >target/portability/npm.log 2>&1; then
    row "Dawn (Node): runner self-test" env VK_ICD_FILENAMES="$SWIFTSHADER_ICD" \
      node "$dawn/selftest.mjs" "$CASES"
    row "Dawn (Node): modules and cases" env VK_ICD_FILENAMES="$SWIFTSHADER_ICD" \
      node "$dawn/node.mjs" "$CASES"
    row "Dawn (Node), WebGPU default limits: modules and cases" \
      env VK_ICD_FILENAMES="$SWIFTSHADER_ICD" node "$dawn/node.mjs" --default-limits "$CASES_WEBGPU"
    if command -v chromium >/dev/null 2>&1; then
      row "Dawn (headless Chromium): modules and cases" node "$dawn/serve.mjs" "$CASES"
      row "Dawn (headless Chromium), WebGPU default limits: modules and cases" \
        node "$dawn/serve.mjs" --default-limits "$CASES_WEBGPU"
    else
      skip "Chromium row" "chromium not installed (Debian: apt-get install chromium)"
    fi
  else
    rows+=("FAIL     npm ci in $dawn (log: target/portability/npm.log)")
    failed=1
  fi
else
  skip "Dawn rows" "needs node (20+) and SwiftShader's ICD (Debian: apt-get install nodejs npm chromium)"
fi

echo
echo "portability matrix ($(date -u +%F)):"
printf '  %s\n' "${rows[@]}"
for f in target/portability/Dawn*.log; do
  grep -h "^dawn\|^chromium" "$f" | sed "s/^/  $(basename "$f" .log | sed 's/_*modules_and_cases//'): /"
done
grep -h "^loss after" target/portability/*training*.log 2>/dev/null | sed 's/^/  /'
echo "skipped rows: ${#skips[@]}"
for s in "${skips[@]}"; do echo "  skipped: $s"; done
exit "$failed"
