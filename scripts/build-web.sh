#!/usr/bin/env bash
# Builds the browser page's WebAssembly (web/pkg/): imba and its glue for
# wasm32-unknown-unknown with wgpu's WebGPU backend, then wasm-bindgen's JavaScript bindings.
# The toolchain comes from Debian's packages only (scripts/setup-web.sh installs it, run here
# when its tools are missing): Rust
# 1.96 (rustc-web, cargo-web) with the standard library built from its source
# (rust-web-src), linked by LLVM's wasm-ld, and wasm-bindgen-cli from crates.io at the lock
# file's wasm-bindgen version. With rustup's wasm32 target and a wasm-bindgen on PATH instead,
# set IMBA_WEB_TOOLCHAIN=rustup (docs/web.md).
# Usage: scripts/build-web.sh [--debug | --clippy]   (--clippy: lint the glue for wasm32
# with Debian's clippy, -D warnings, instead of building)
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
[ "${1:-}" = --debug ] && profile=debug
flags=()
[ "$profile" = release ] && flags=(--release)
command=(build)
[ "${1:-}" = --clippy ] && command=(clippy)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_WEB:-target/web}"
if [ "${IMBA_WEB_TOOLCHAIN:-debian}" = rustup ]; then
  [ "${command[0]}" = clippy ] && command+=(-- -D warnings)
  cargo "${command[0]}" -p imba-web --locked --target wasm32-unknown-unknown "${flags[@]}" \
    "${command[@]:1}"
  bindgen=wasm-bindgen
else
  tools=target/web-tools/bin
  bindgen="$tools/wasm-bindgen"
  # A fresh machine gets its tools first (once; the script does nothing when they are there).
  [ -x "$bindgen" ] || scripts/setup-web.sh
  # Debian ships no rust-lld: LLVM's own wasm-ld links, for this target only. The standard
  # library is built from source because Debian packages it for the host only.
  # PATH: Debian's cargo-clippy, not rustup's, lints with Debian's rustc.
  [ "${command[0]}" = clippy ] && command+=(-- -D warnings)
  PATH=/usr/bin:$PATH RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-22 \
    /usr/bin/cargo "${command[0]}" -p imba-web --locked --target wasm32-unknown-unknown \
    "${flags[@]}" -Zbuild-std=std,panic_abort "${command[@]:1}"
fi
[ "${command[0]}" = clippy ] && exit 0
wasm="$CARGO_TARGET_DIR/wasm32-unknown-unknown/$profile/imba_web.wasm"
"$bindgen" --target web --no-typescript --out-dir web/pkg "$wasm"
ls -l web/pkg/imba_web_bg.wasm | awk '{print "web/pkg/imba_web_bg.wasm: " $5 " bytes"}'
