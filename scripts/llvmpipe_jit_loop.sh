#!/usr/bin/env bash
# Dumps the x86 code llvmpipe (lavapipe) JIT-compiled for the matmul product kernel and counts
# the instructions of its K loop: a measure of the kernel's cost that, unlike wall time on a
# shared machine, does not move between runs. Used to compare kernel variants (BENCHMARKS.md).
# Needs gdb, objdump (binutils) and python3, and permission to attach to a child process.
# Usage: scripts/llvmpipe_jit_loop.sh [IMBA_BINARY] [M,K,N]   (default ./target/release/imba, 1024,1024,1024)
set -euo pipefail
bin=${1:-./target/release/imba}
shape=${2:-1024,1024,1024}
out=$(mktemp -d)
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
"$bin" bench matmul --portable-reps 0 --reps 1000 --shape "$shape" >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$out"' EXIT
sleep 8
# llvmpipe's JIT code lives in anonymous executable mappings.
for range in $(grep " r-xp " /proc/$pid/maps | awk '$6 == "" {print $1}'); do
    start=0x${range%-*}
    end=0x${range#*-}
    gdb -p "$pid" -batch -ex "dump binary memory $out/$start.bin $start $end" >/dev/null 2>&1
    objdump -D -b binary -mi386:x86-64 --adjust-vma="$start" "$out/$start.bin"
done >"$out/jit.s"
python3 - "$out/jit.s" <<'PY'
import re, sys
from collections import Counter
code = []
for line in open(sys.argv[1]):
    parts = line.split("\t")
    if len(parts) >= 3 and re.match(r"\s+[0-9a-f]+:$", parts[0]):
        code.append((int(parts[0].strip()[:-1], 16), parts[2].strip()))
# The K loop is the longest span closed by a backward jump.
best = None
for addr, text in code:
    m = re.match(r"j\w+\s+0x([0-9a-f]+)", text)
    if m and int(m.group(1), 16) < addr:
        lo = int(m.group(1), 16)
        if best is None or addr - lo > best[1] - best[0]:
            best = (lo, addr)
body = [t for a, t in code if best[0] <= a <= best[1]]
ops = Counter(t.split()[0] for t in body)
muls = ops["vmulps"] or 1
print(f"K loop: {len(body)} instructions, {ops['vmulps']} vmulps, {ops['vaddps']} vaddps, "
      f"{len(body) / muls:.2f} instructions per 8-wide multiply; {ops['call']} calls "
      "(the called functions' instructions are not counted)")
print("most frequent:", ", ".join(f"{op} {n}" for op, n in ops.most_common(12)))
PY
