#!/usr/bin/env bash
# The matmul benchmark beside PyTorch's CPU sgemm on the same machine, in one run: builds
# imba, installs PyTorch into target/torch-venv from the package registry on first use (a
# large download; CI does not run this script), then prints both Markdown tables.
# Usage: scripts/bench_matmul_vs_torch.sh [extra `imba bench matmul` flags]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/torch-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet torch
fi
cargo build --release --quiet
echo "## imba ($(date -u +%Y-%m-%d))"
./target/release/imba bench matmul "$@"
echo
echo "## PyTorch CPU, same machine, same run"
"$venv/bin/python" scripts/torch_matmul.py
