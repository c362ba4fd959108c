#!/usr/bin/env bash
# Installs what building and testing the browser page needs, from the package registries
# only (Debian's apt and crates.io): Debian's Rust for the web (rustc-web, cargo-web; the
# standard library's source, rust-web-src, since Debian builds it for the host only; its
# clippy, rust-web-clippy), LLVM's wasm-ld (lld-22), Chromium and Node.js (the browser test),
# and wasm-bindgen-cli built from crates.io at exactly the version of wasm-bindgen in
# Cargo.lock (into target/web-tools).
# About 3 minutes of downloads and 9 of CPU on two cores, once per machine.
# Debian 12 (bookworm) with its security updates; elsewhere see docs/web.md.
set -euo pipefail
cd "$(dirname "$0")/.."
want=(rustc-web cargo-web rust-web-src rust-web-clippy lld-22 chromium nodejs)
missing=()
for p in "${want[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || {
    echo "no apt-get: install ${missing[*]} yourself, or use rustup's route (docs/web.md)" >&2
    exit 1
  }
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# imba needs Rust 1.89 or newer: bookworm's own rustc-web is 1.85, its security updates 1.96.
version=$(/usr/bin/rustc --version | awk '{print $2}')
if [ "$(printf '%s\n1.89.0\n' "$version" | sort -V | head -1)" != 1.89.0 ]; then
  echo "/usr/bin/rustc is $version; imba needs 1.89 or newer (enable bookworm-security)" >&2
  exit 1
fi
# The lock file's wasm-bindgen: the CLI must be the same version as the crate it binds.
bindgen=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/[^0-9.]/, ""); print }' Cargo.lock)
tools=target/web-tools
if [ "$("$tools/bin/wasm-bindgen" --version 2>/dev/null | awk '{print $2}')" != "$bindgen" ]; then
  # Not --locked: one of the CLI's locked dependencies is no longer served by crates.io.
  cargo=$(command -v cargo || echo /usr/bin/cargo)
  "$cargo" install --quiet wasm-bindgen-cli --version "=$bindgen" --root "$tools"
fi
echo "web toolchain: rustc $version, wasm-ld-22, wasm-bindgen $bindgen, $(chromium --version 2>/dev/null | head -1), node $(node --version)"
