#!/usr/bin/env bash
# The browser test: builds the page (scripts/build-web.sh), runs its scenario natively
# (`examples/live.rs` on web/test/spec.json), then in headless Chromium through WebGPU, and
# compares them: every sample value and every training step's loss within the spec's
# tolerances of the native run on lavapipe, and bit for bit with the native run on
# SwiftShader, the browser's own Vulkan implementation here. Keeps the page's screenshot and
# results in target/web-test/.
# Needs scripts/setup-web.sh's tools and a Vulkan driver (scripts/setup.sh) for the native run.
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
out=target/web-test
mkdir -p "$out"
scripts/build-web.sh
# The test suite's features and profile, so that its build is reused (scripts/test.sh).
features=()
command -v mpicc >/dev/null 2>&1 && features=(--features mpi)
cargo run --locked --quiet "${features[@]}" --example live -- web/test/spec.json > "$out/native.json"
# Headless Chromium's WebGPU runs on SwiftShader here: natively on SwiftShader too, the same
# kernels give the same bits, which the page must match exactly.
icd=${SWIFTSHADER_ICD:-/usr/lib/chromium/vk_swiftshader_icd.json}
twin=()
if [ -f "$icd" ]; then
  VK_ICD_FILENAMES=$icd cargo run --locked --quiet "${features[@]}" --example live -- \
    web/test/spec.json > "$out/native-swiftshader.json"
  twin=(--same-bits "$out/native-swiftshader.json")
else
  echo "skipped: the bit-for-bit comparison (no SwiftShader ICD at $icd; Debian: apt-get install chromium)"
fi
node web/serve.mjs --test "$out/native.json" "${twin[@]}" --screenshot "$out/page.png" \
  --result "$out/page.json"
# Without WebGPU the page must refuse, saying what is missing and how to get it.
node web/serve.mjs --test "$out/native.json" --without-webgpu
