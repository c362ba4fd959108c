#!/usr/bin/env bash
# Makes sure a Vulkan driver is present. Machines with a GPU driver need nothing; machines
# without one get Mesa's software driver (lavapipe), plus spirv-tools so the shader test can
# also run spirv-val. On Debian/Ubuntu it also installs Open MPI and libclang, for
# data-parallel training (`--features mpi`) and its tests; IMBA_NO_MPI=1 skips them. It also
# installs Fashion-MNIST (Debian's dataset-fashion-mnist, for `--dataset idx` and its tests);
# IMBA_NO_DATASETS=1 skips it.
# `scripts/setup.sh --portability` also installs what scripts/portability.sh runs on: Mesa's
# OpenGL driver (wgpu's GL backend over llvmpipe), Chromium (SwiftShader, Google's Vulkan
# implementation, and a browser with WebGPU), glslang (an HLSL compiler), Node.js and npm
# (Dawn, Chrome's WebGPU, in Node).
# Debian/Ubuntu only; elsewhere install a Vulkan driver (and an MPI library) yourself.
set -euo pipefail
portability=0
[ "${1:-}" = --portability ] && portability=1
have_icd() { ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json 2>/dev/null | grep -q .; }
want_mpi() { [ "${IMBA_NO_MPI:-0}" != 1 ] && ! command -v mpicc >/dev/null 2>&1; }
want_datasets() {
  [ "${IMBA_NO_DATASETS:-0}" != 1 ] && [ ! -d /usr/share/datasets/fashion-mnist ]
}
want_portability() {
  [ "$portability" = 1 ] || return 1
  ! { command -v chromium && command -v glslangValidator && command -v npm &&
    ls /usr/lib/x86_64-linux-gnu/libEGL.so.1 /usr/lib/*/dri/swrast_dri.so; } >/dev/null 2>&1
}
if have_icd && command -v spirv-val >/dev/null 2>&1 && ! want_mpi && ! want_portability &&
  ! want_datasets; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  have_icd && exit 0
  echo "No Vulkan driver found and no apt-get: install your GPU's Vulkan driver (or Mesa's lavapipe)." >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq mesa-vulkan-drivers spirv-tools >/dev/null
if want_mpi; then
  $SUDO apt-get install -y -qq openmpi-bin libopenmpi-dev libclang-dev >/dev/null
fi
if want_datasets; then
  $SUDO apt-get install -y -qq --no-install-recommends dataset-fashion-mnist >/dev/null
fi
if want_portability; then
  node=()
  command -v npm >/dev/null 2>&1 || node=(nodejs npm)
  $SUDO apt-get install -y -qq --no-install-recommends chromium glslang-tools libegl1 \
    libegl-mesa0 libgl1-mesa-dri "${node[@]}" >/dev/null
fi
