#!/usr/bin/env bash
# Makes sure a Vulkan driver is present. Machines with a GPU driver need nothing; machines
# without one get Mesa's software Vulkan driver (lavapipe), plus spirv-tools so the shader
# test can also run spirv-val. Debian/Ubuntu only; elsewhere install a Vulkan driver yourself.
set -euo pipefail
have_icd() { ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json 2>/dev/null | grep -q .; }
if have_icd && command -v spirv-val >/dev/null 2>&1; then
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
