#!/usr/bin/env bash
# Makes sure a Vulkan driver is present. Machines with a GPU driver need nothing; machines
# without one get Mesa's software Vulkan driver (lavapipe), plus spirv-tools so the shader
# test can also run spirv-val. On Debian/Ubuntu it also installs Open MPI and libclang, for
# data-parallel training (`--features mpi`) and its tests; IMBA_NO_MPI=1 skips them.
# Debian/Ubuntu only; elsewhere install a Vulkan driver (and an MPI library) yourself.
set -euo pipefail
have_icd() { ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json 2>/dev/null | grep -q .; }
want_mpi() { [ "${IMBA_NO_MPI:-0}" != 1 ] && ! command -v mpicc >/dev/null 2>&1; }
if have_icd && command -v spirv-val >/dev/null 2>&1 && ! want_mpi; then
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
