#!/usr/bin/env python3
"""The figures of how src/ reads, against their targets and a ratchet.

    scripts/code_figures.py            print the figures, the targets and the worst offenders
    scripts/code_figures.py --check    also exit 1 where a figure is worse than its ratchet

Figures (Rust sources under src/):
  long files        files over 600 lines
  long functions    functions over 120 lines (from `fn` to its closing brace)
  tuple parameters  parameters destructured from a tuple, `(a, b): (T, U)`
  indexed pipelines pipelines taken by position: `pipelines[2]`, `.next().unwrap()` on a
                    family's pipelines
  repeated pairs    pairs of files (a file with itself included) that share a run of six or
                    more lines of the same shape: the same tokens once names, strings and
                    numbers are folded; blank, comment, `use` and lone-punctuation lines are
                    passed over, and a run found in more than eight places counts as an idiom

The ratchet (RATCHET below) holds the figures as they stand: CI fails when a change makes one
worse, and a change that makes one better lowers it. TARGET is where the code should be.
"""
import collections
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
TARGET = {"long files": 2, "long functions": 2, "tuple parameters": 5,
          "indexed pipelines": 0, "repeated pairs": 8}
# Repeated pairs: half of the 16 this measure found when the figures were first taken.
RATCHET = {"long files": 0, "long functions": 0, "tuple parameters": 0,
           "indexed pipelines": 0, "repeated pairs": 7}
RUN, IDIOM = 6, 8


def sources():
    return sorted(p for p in (ROOT / "src").rglob("*.rs"))


def rel(p):
    return str(p.relative_to(ROOT))


def functions(lines):
    """(name, first line, length) of every fn with a body, by rustfmt's layout: the closing
    brace stands alone at the indentation of the line that opened the fn."""
    out = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?"
                     r"fn\s+(\w+)", line)
        if not m:
            continue
        indent = m.group(1)
        for j in range(i, len(lines)):
            stripped = lines[j].rstrip()
            if stripped.endswith(";") and "{" not in "".join(lines[i:j + 1]):
                break  # a declaration without a body
            if stripped == indent + "}":
                out.append((m.group(2), i + 1, j - i + 1))
                break
    return out


def signature(lines, start):
    """The text of a fn's parameter list, from its `fn` line to the opening brace."""
    text = []
    for line in lines[start:start + 40]:
        text.append(line)
        if line.rstrip().endswith("{") or line.rstrip().endswith(";"):
            break
    return " ".join(text)


TUPLE_PARAM = re.compile(r"\(\s*(?:mut\s+)?[a-z_]\w*\s*,[^():]*\)\s*:\s*\(")


def shape(line):
    """A line with names, strings and numbers folded; None for lines that do not count."""
    s = line.strip()
    if not s or s.startswith("//") or s.startswith("use ") or s.startswith("pub use ") \
            or re.fullmatch(r"[{}()\[\];,.]+", s):
        return None
    s = re.sub(r'"(?:\\.|[^"\\])*"', "S", s)
    s = re.sub(r"\b\d[\d_.]*(?:e-?\d+)?(?:u32|u64|f32|f64|usize|i32)?\b", "N", s)
    keywords = {"fn", "let", "mut", "pub", "if", "else", "for", "in", "match", "return",
                "impl", "struct", "enum", "self", "Self", "Some", "None", "Ok", "Err", "as",
                "while", "loop", "break", "continue", "where", "crate", "super", "ref", "move",
                "true", "false", "const", "static", "type", "mod", "dyn", "unsafe"}
    s = re.sub(r"\b[A-Za-z_]\w*\b", lambda m: m.group(0) if m.group(0) in keywords else "I", s)
    s = re.sub(r"\s+", " ", s)
    # Thin lines (`I: I,`, `pub I: I,`, `I,`, `})?;`) say nothing about the code's shape: a
    # struct's fields, a literal of names or an argument list would match any other of its
    # length.
    # Declarations are thin too: a field's name and type (`pub(crate) I: I<I>,`), an
    # attribute, a struct's first line, a constant, a row of a name table (`I::I => S,`).
    if re.fullmatch(r"(pub(\((crate|super)\))? )?(I: [\w:<>&' \[\];]*,|struct I(<[^>]*>)? \{"
                    r"|const I: [^=]*= [^;]*;)", s) \
            or re.fullmatch(r"I::I => [SNI],", s) or s.startswith("#["):
        return None
    thin = re.sub(r"\bpub(\(I\))?", "", s).replace(" ", "")
    return None if len(thin) <= 6 else s


def repeated_pairs(files):
    runs = collections.defaultdict(set)
    for path, lines in files.items():
        kept = [(i, shape(l)) for i, l in enumerate(lines)]
        kept = [(i, s) for i, s in kept if s is not None]
        for k in range(len(kept) - RUN + 1):
            key = tuple(s for _, s in kept[k:k + RUN])
            runs[key].add((path, kept[k][0]))
    pairs = collections.Counter()
    for places in runs.values():
        if len(places) < 2 or len(places) > IDIOM:
            continue
        places = sorted(places)
        for a in range(len(places)):
            for b in range(a + 1, len(places)):
                (fa, la), (fb, lb) = places[a], places[b]
                if fa == fb and abs(la - lb) < RUN:
                    continue  # a run overlapping itself
                pairs[(fa, fb)] += 1
    return pairs


def main():
    files = {rel(p): p.read_text().splitlines() for p in sources()}
    long_files = sorted(((len(l), f) for f, l in files.items() if len(l) > 600), reverse=True)
    long_fns, tuples, indexed = [], [], []
    for f, lines in files.items():
        for name, start, n in functions(lines):
            if n > 120:
                long_fns.append((n, f"{f}:{start} {name}"))
            sig = signature(lines, start - 1)
            params = sig[sig.find("("):] if "(" in sig else ""
            for _ in TUPLE_PARAM.finditer(params):
                tuples.append(f"{f}:{start} {name}")
        for i, line in enumerate(lines):
            if re.search(r"\bpipe\w*\[[^\]]+\]", line) or re.search(r"pipelines\(.*\.remove\(", line) or \
                    re.search(r"\b(?:p|pipes|pipelines|it)\.next\(\)\.unwrap\(\)", line):
                indexed.append(f"{f}:{i + 1}")
    pairs = repeated_pairs(files)
    figures = {"long files": len(long_files), "long functions": len(long_fns),
               "tuple parameters": len(tuples), "indexed pipelines": len(indexed),
               "repeated pairs": len(pairs)}
    worse = []
    for k, v in figures.items():
        mark = "met" if v <= TARGET[k] else "not met"
        print(f"{k:18} {v:4}   target ≤ {TARGET[k]:3} ({mark})   ratchet ≤ {RATCHET[k]}")
        if v > RATCHET[k]:
            worse.append(k)
    print("\nlong files:", ", ".join(f"{f} ({n})" for n, f in long_files) or "none")
    print("long functions:", ", ".join(f"{s} ({n})" for n, s in sorted(long_fns, reverse=True)))
    print("tuple parameters:", ", ".join(tuples) or "none")
    print("indexed pipelines:", ", ".join(indexed) or "none")
    top = pairs.most_common(8)
    print("most repeated:", ", ".join(f"{a} ~ {b} ({n})" for (a, b), n in top))
    if "--check" in sys.argv and worse:
        print(f"\nworse than the ratchet: {', '.join(worse)}; simplify the change, or lower "
              "the ratchet only where a figure improved", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:  # the output piped into `head`
        sys.exit(0)
