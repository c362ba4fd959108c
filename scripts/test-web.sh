#!/usr/bin/env bash
# The browser test: builds the page (scripts/build-web.sh), runs its scenario natively
# (`examples/live.rs` on web/test/spec.json), then in headless Chromium through WebGPU, and
# compares the two: every sample value and every training step's loss within the spec's
# tolerances. Keeps the page's screenshot and results in target/web-test/.
# Needs scripts/setup-web.sh's tools and a Vulkan driver (scripts/setup.sh) for the native run.
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
out=target/web-test
mkdir -p "$out"
scripts/build-web.sh
cargo run --locked --release --quiet --example live -- web/test/spec.json > "$out/native.json"
node web/serve.mjs --test "$out/native.json" --screenshot "$out/page.png" --result "$out/page.json"
