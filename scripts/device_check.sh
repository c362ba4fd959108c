#!/usr/bin/env bash
# One prepared check of imba on a GPU machine that has PyTorch but no Rust toolchain and no
# network, in at most 8 minutes, writing one Markdown report.
#
#   scripts/device_check.sh prepare          here, with the toolchain: builds the release binary
#                                            and the kernel and model test binaries, strips them
#                                            and collects them with a Vulkan loader in
#                                            target/device-check/ (about 35 MB) to carry over
#   scripts/device_check.sh run [OUT_DIR]    on the GPU machine, from the repository root:
#                                            tests on the GPU adapter, the kernel, matmul and
#                                            DiT-S/2 benchmarks, the roofline, PyTorch side by
#                                            side on CUDA (TF32 off, then on); report in
#                                            OUT_DIR/device_report.md (default: $OUT or .)
#   scripts/device_check.sh run --dry-run    the same logic here on whatever adapter there is,
#                                            at small sizes, PyTorch on the CPU (if installed)
# shellcheck disable=SC2086 # $dit and $sizes are lists of arguments
set -uo pipefail
cd "$(dirname "$0")/.."
pack=target/device-check

prepare() {
    set -e
    cargo build --release --quiet
    mkdir -p "$pack/bin" "$pack/lib"
    strip -o "$pack/bin/imba" target/release/imba
    cargo test --no-run --quiet --message-format=json 2>/dev/null |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") \
            and m["target"]["kind"] == ["test"] and m["target"]["name"] in ("kernels", "model"):
        print(m["target"]["name"], m["executable"])' |
        while read -r name exe; do strip -o "$pack/bin/$name" "$exe"; done
    # The loader wgpu opens; GPU machines in containers often have the driver's ICD but no
    # loader.
    loader=$(ldconfig -p | awk '/libvulkan.so.1 / {print $NF; exit}')
    if [ -n "$loader" ]; then cp -L "$loader" "$pack/lib/libvulkan.so.1"; fi
    echo "built from $(git describe --always --dirty 2>/dev/null || echo unknown) on $(date -u '+%Y-%m-%d %H:%M UTC')" >"$pack/BUILD"
    ls -la "$pack/bin" "$pack/lib"
    du -sh "$pack"
}

# Uses the machine's Vulkan loader, else ours; the machine's NVIDIA ICD manifest, else one
# written for the driver library found on the machine.
vulkan_setup() {
    if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1 '; then
        export LD_LIBRARY_PATH="$PWD/$pack/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        echo "Vulkan loader: the one carried in $pack/lib"
    else
        echo "Vulkan loader: the machine's"
    fi
    local d
    for d in /etc/vulkan/icd.d /usr/share/vulkan/icd.d /usr/local/share/vulkan/icd.d; do
        if ls "$d"/nvidia*.json >/dev/null 2>&1; then
            echo "NVIDIA ICD: $(ls "$d"/nvidia*.json | head -1)"
            return
        fi
    done
    local lib
    lib=$(ldconfig -p 2>/dev/null | awk '/libGLX_nvidia.so.0 / {print $NF; exit}')
    if [ -z "$lib" ]; then
        lib=$(find / -name 'libGLX_nvidia.so.0' -not -path '*/proc/*' 2>/dev/null | head -1)
    fi
    if [ -n "$lib" ]; then
        local icd="$work/nvidia_icd.json"
        printf '{"file_format_version": "1.0.0", "ICD": {"library_path": "%s", "api_version": "1.3.0"}}\n' \
            "$lib" >"$icd"
        export VK_ICD_FILENAMES="$icd" VK_DRIVER_FILES="$icd"
        echo "NVIDIA ICD: written for $lib"
    else
        echo "NVIDIA ICD: none found (no libGLX_nvidia.so.0); wgpu will list what Vulkan offers"
    fi
}

# section TITLE SECONDS COMMAND...: runs COMMAND under a time limit, its output into the
# report as a code block (tables are printed as they are).
section() {
    local title=$1 limit=$2
    shift 2
    echo "== $title" >&2
    local start=$SECONDS rc=0
    {
        echo
        echo "## $title"
        echo
        echo "\`$*\`"
        echo
    } >>"$report"
    timeout --kill-after=10 "$limit" "$@" >"$work/out.txt" 2>&1 || rc=$?
    if grep -q '^|' "$work/out.txt" && [ "$rc" -eq 0 ]; then
        cat "$work/out.txt" >>"$report"
    else
        { echo '```'; tail -n 60 "$work/out.txt"; echo '```'; } >>"$report"
    fi
    local status="ok"
    [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && status="stopped at its ${limit}s limit"
    [ "$rc" -ne 0 ] && [ "$status" = ok ] && status="failed (exit $rc)"
    echo >>"$report"
    echo "($status, $((SECONDS - start)) s)" >>"$report"
    echo "| $title | $status | $((SECONDS - start)) s |" >>"$work/summary.md"
}

# The test binaries' result lines, as a section.
tests_section() {
    local name=$1 limit=$2
    section "tests: $name" "$limit" "$pack/bin/$name" --test-threads=2 -q
    grep -E '^test result|FAILED|panicked' "$work/out.txt" | head -20 | sed 's/^/    /' >>"$report"
}

run() {
    local dry=0 out="${OUT:-.}"
    for a in "$@"; do
        case "$a" in
            --dry-run) dry=1 ;;
            *) out=$a ;;
        esac
    done
    for b in imba kernels model; do
        if [ ! -x "$pack/bin/$b" ]; then
            echo "error: $pack/bin/$b is missing; run 'scripts/device_check.sh prepare' on a machine with the Rust toolchain and carry $pack" >&2
            exit 2
        fi
    done
    mkdir -p "$out"
    report="$out/device_report.md"
    work=$(mktemp -d)
    : >"$work/summary.md"
    export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
    local imba="$pack/bin/imba" python=python3 device=cuda
    local s2=32 rounds=10 mm_rows=16384 sizes=""
    local dit="--model S/2 --image-size 32 --channels 4 --labels 1000 --batch 32"
    if [ "$dry" -eq 1 ]; then
        python=target/torch-venv/bin/python device=cpu s2=1 rounds=2 mm_rows=256
        dit="--model tiny --batch 4" sizes="--size 64,3,32,32,4"
    fi
    {
        echo "# imba device check$([ "$dry" -eq 1 ] && echo ' (dry run)')"
        echo
        echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); load: $(cut -d' ' -f1-3 /proc/loadavg); binaries $(cat "$pack/BUILD" 2>/dev/null || echo 'of unknown origin')"
        echo
        echo '```'
        nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 | head -5
        vulkan_setup
        "$imba" info 2>&1 | head -13
        echo '```'
        if [ "$dry" -eq 0 ] && ! "$imba" info 2>/dev/null | grep -qi 'device type *\(DiscreteGpu\|IntegratedGpu\)'; then
            echo
            echo "**No GPU adapter through Vulkan.** Everything below ran on whatever adapter wgpu"
            echo "found instead. In a container, NVIDIA's Vulkan driver (libGLX_nvidia.so.0,"
            echo "libnvidia-glvkspirv.so and an ICD manifest) is only mounted with"
            echo "NVIDIA_DRIVER_CAPABILITIES including graphics."
        fi
    } >"$report" 2>&1
    tests_section kernels 90
    tests_section model 45
    # The same batch as the DiT step below, so that the step can be set against its bound.
    section "roofline, DiT-S/2 batch 32" 15 "$imba" info --model S/2 --batch 32 --roofline
    section "fused loss and noise kernels" 40 "$imba" bench kernels --reps 20 $sizes
    local shapes=()
    [ "$dry" -eq 0 ] && shapes+=(--shape 4096,4096,4096)
    shapes+=(--shape "$mm_rows,384,1152" --shape "$mm_rows,384,384" --shape "$mm_rows,384,1536" --shape "$mm_rows,1536,384")
    section "matmul (stream of 10 products per submission)" 45 "$imba" bench matmul "${shapes[@]}" --stream 10 --portable-reps 0
    section "DiT step" 45 "$imba" bench dit $dit --reps 5
    if "$python" -c 'import torch' 2>/dev/null; then
        section "PyTorch side by side, TF32 off" 90 "$imba" bench torch --python "$python" \
            --device "$device" --work loss,step-s2,sample --s2-batch "$s2" --rounds "$rounds"
        # torch.compile's first call compiles for tens of seconds: its own limit.
        section "PyTorch torch.compile'd loss" 50 "$imba" bench torch --python "$python" \
            --device "$device" --work loss-compiled --rounds "$rounds"
        [ "$dry" -eq 0 ] && section "PyTorch side by side, TF32 on" 35 "$imba" bench torch \
            --python "$python" --device "$device" --tf32 --work step-s2 --s2-batch "$s2" --rounds "$rounds"
    else
        echo "| PyTorch side by side | skipped: $python has no torch | 0 s |" >>"$work/summary.md"
    fi
    targets >>"$report"
    {
        echo
        echo "## Summary"
        echo
        echo "| section | status | time |"
        echo "|---|---|---|"
        cat "$work/summary.md"
    } >>"$report"
    echo "report: $report" >&2
    ! grep -q 'failed\|stopped' "$work/summary.md"
}

# The targets, read from the report's tables: the matmul's share of FP32 peak (PEAK_TFLOPS,
# default 67), the fused loss's share of copy bandwidth, the DiT-S/2 step against PyTorch.
targets() {
    echo
    echo "## Targets"
    echo
    PEAK_TFLOPS="${PEAK_TFLOPS:-67}" python3 - "$report" 2>&1 <<'PY'
import os, re, sys
text = open(sys.argv[1]).read()
peak = float(os.environ["PEAK_TFLOPS"]) * 1e3  # GFLOP/s
def rows(prefix):
    return [[c.strip() for c in l.strip().strip("|").split("|")]
            for l in text.splitlines() if l.startswith("| " + prefix)]
out = []
mm = [r for r in rows("(") if re.match(r"[\d.]+$", r[4])]
big = [float(r[4]) for r in mm if r[0] == "(4096, 4096, 4096)"]
lin = [float(r[4]) for r in mm if r[0] != "(4096, 4096, 4096)"]
if big:
    out.append(f"matmul 4096³: {max(big) / peak:.0%} of {peak / 1e3:g} TFLOP/s (target ≥ 40%)")
if lin:
    out.append(f"matmul at DiT-S/2 linear shapes: {min(lin) / peak:.0%} to {max(lin) / peak:.0%} (target ≥ 25%)")
loss = [r for r in rows("imba fused, default") if r[1] == "(256, 256, 16)"]
if loss:
    out.append(f"fused loss (256, 256, 16): {loss[0][4]} of copy bandwidth (target ≥ 70%)")
bound = [r for r in rows("step ") if len(r) >= 5]
dit = [r for r in rows("depth 12, D 384") if len(r) >= 5]
if bound and dit:
    b, m = float(bound[0][4]), float(dit[0][4])
    out.append(f"DiT-S/2 step at batch 32: {m:.1f} ms measured, {b:.1f} ms roofline bound ({b / m:.0%} of the bound's speed)")
for r in rows("IMBA training step, DiT-S/2"):
    out.append(f"{r[0]}: imba / PyTorch = {r[3]} (target ≤ 1.5 with TF32 off)")
print("\n".join(f"- {o}" for o in out) or "- no benchmark table to read")
PY
}

case "${1:-}" in
    prepare) prepare ;;
    run) shift; run "$@" ;;
    *) sed -n '2,16p' "$0"; exit 2 ;;
esac
