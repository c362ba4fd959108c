#!/usr/bin/env bash
# Whether a change kept every bit: runs the same trainings with two binaries of `imba` (built
# from the commit before the change and from the change) and compares the bytes of what they
# wrote: checkpoints, EMA models and samples. A safetensors file whose only change is metadata
# the new binary adds (the tensors and every old key the same) passes, and the added keys are
# printed.
#
#   scripts/same_bits.sh OLD_BIN NEW_BIN            every objective at 20 steps, a two-rank run
#   FULL=1 scripts/same_bits.sh OLD_BIN NEW_BIN     and the default run (`imba train`, minutes)
#   OBJECTIVES=imba scripts/same_bits.sh ...         a subset of the objectives
#
# Build the old binary from the earlier commit in a worktree, e.g.
#   git worktree add /tmp/old HEAD~1 && (cd /tmp/old && cargo build --release --features mpi)
# The two-rank run needs both binaries built with `--features mpi` and Open MPI's mpirun;
# without them it is skipped and said to be skipped. Exits 1 on the first difference.
set -euo pipefail
OLD=$(realpath "${1:?usage: scripts/same_bits.sh OLD_BIN NEW_BIN}")
NEW=$(realpath "${2:?usage: scripts/same_bits.sh OLD_BIN NEW_BIN}")
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
# Containers and CI run as root; Open MPI refuses root without these.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
WORK=$(mktemp -d)
mkdir -p "$WORK/old" "$WORK/new"
trap 'rm -rf "$WORK"' EXIT

# same_tensors A B: two safetensors files whose bytes differ hold the same tensors, bit for
# bit, and the same metadata but for keys only B has (a change that describes a file more)
# and the seal that covers them; prints the added keys.
same_tensors() {
  python3 - "$1" "$2" <<'PY'
import json, struct, sys
def read(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    meta.pop("imba.checksum", None)
    body = {k: data[8 + n + t["data_offsets"][0] : 8 + n + t["data_offsets"][1]] for k, t in header.items()}
    shapes = {k: (t["dtype"], t["shape"]) for k, t in header.items()}
    return meta, shapes, body
(ma, sa, ba), (mb, sb, bb) = read(sys.argv[1]), read(sys.argv[2])
changed = [k for k in ma if ma[k] != mb.get(k)]
if sa != sb or ba != bb or changed:
    sys.exit(1)
print(", ".join(sorted(set(mb) - set(ma))))
PY
}

# same NAME: the files both runs of NAME wrote that hold results (not timings).
same() {
  local a="$WORK/old/$1" b="$WORK/new/$1" n=0 added
  while IFS= read -r f; do
    if ! cmp -s "$a/$f" "$b/$f"; then
      if [[ "$f" == *.safetensors ]] && added=$(same_tensors "$a/$f" "$b/$f") && [ -n "$added" ]; then
        echo "  $1: $f: the same tensors; the new binary adds metadata: $added"
        n=$((n + 1))
        continue
      fi
      echo "DIFFERENT: $1: $f" >&2
      exit 1
    fi
    n=$((n + 1))
  done < <(cd "$a" && find . -name '*.safetensors' -o -name '*.png' -o -name 'split.json' | sort)
  [ "$n" -gt 0 ] || { echo "DIFFERENT: $1 wrote no results" >&2; exit 1; }
  [ -z "$(cd "$b" && find . -name '*.safetensors' -o -name '*.png' | sort |
    comm -13 <(cd "$a" && find . -name '*.safetensors' -o -name '*.png' | sort) -)" ] ||
    { echo "DIFFERENT: $1: the new binary wrote files the old one did not" >&2; exit 1; }
  echo "same bits: $1 ($n files)"
}

# both NAME ARGS...: `imba train ARGS` with each binary into its own folder.
both() {
  local name=$1
  shift
  # The same relative folder name: checkpoints record the --out they were given.
  (cd "$WORK/old" && "$OLD" train "$@" --quiet --out "$name" > /dev/null)
  (cd "$WORK/new" && "$NEW" train "$@" --quiet --out "$name" > /dev/null)
  same "$name"
}

OBJECTIVES="${OBJECTIVES:-baseline imba dual-baseline cbdm ccua reweighted}"
for objective in $OBJECTIVES; do
  both "$objective" --objective "$objective" --steps 20
done
if command -v mpirun > /dev/null; then
  for bin in old new; do
    exe="$OLD"
    [ "$bin" = new ] && exe="$NEW"
    (cd "$WORK/$bin" && mpirun -n 2 --oversubscribe "$exe" train --steps 20 --batch 16 \
      --quiet --out two-ranks > /dev/null)
  done
  same two-ranks
else
  echo "skipped: the two-rank run (no mpirun)"
fi
if [ "${FULL:-0}" = 1 ]; then
  both default
fi
