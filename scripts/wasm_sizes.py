#!/usr/bin/env python3
"""What a WebAssembly module's code is made of, by crate: the size of every function body in
the code section, attributed by its name in the module's `name` section (Rust's v0 or legacy
mangling: the first crate name in it). Standard library only.

Usage: scripts/wasm_sizes.py [MODULE] [TOP]
(default: the page's module before wasm-bindgen strips its names,
target/web/wasm32-unknown-unknown/release/imba_web.wasm; scripts/build-web.sh builds it)
"""
import collections
import re
import sys


def leb(b, i):
    """An unsigned LEB128 at b[i]: (value, next index)."""
    value = shift = 0
    while True:
        x = b[i]
        i += 1
        value |= (x & 0x7F) << shift
        shift += 7
        if x < 0x80:
            return value, i


def imported_functions(data, i):
    """How many functions the import section at data[i] imports."""
    n, i = leb(data, i)
    functions = 0
    for _ in range(n):
        for _ in range(2):  # module and field names
            length, i = leb(data, i)
            i += length
        kind = data[i]
        i += 1
        if kind == 0:  # function: a type index
            _, i = leb(data, i)
            functions += 1
        elif kind == 1:  # table: element type, limits
            i += 1
            flags, i = leb(data, i)
            _, i = leb(data, i)
            if flags & 1:
                _, i = leb(data, i)
        elif kind == 2:  # memory: limits
            flags, i = leb(data, i)
            _, i = leb(data, i)
            if flags & 1:
                _, i = leb(data, i)
        elif kind == 3:  # global: value type, mutability
            i += 2
    return functions


def read(data):
    """(function body sizes in order, names by function index, section sizes)."""
    i, imports, bodies, names = 8, 0, [], {}
    sections = collections.Counter()
    while i < len(data):
        sid = data[i]
        size, i = leb(data, i + 1)
        end = i + size
        if sid == 2:
            imports = imported_functions(data, i)
        elif sid == 10:
            n, j = leb(data, i)
            for _ in range(n):
                length, k = leb(data, j)
                bodies.append(length + (k - j))
                j = k + length
        elif sid == 0:
            length, j = leb(data, i)
            name = data[j : j + length].decode()
            sid = "custom:" + name
            j += length
            while name == "name" and j < end:
                sub, j = data[j], j + 1
                sub_size, j = leb(data, j)
                if sub == 1:  # function names
                    n, k = leb(data, j)
                    for _ in range(n):
                        index, k = leb(data, k)
                        length, k = leb(data, k)
                        names[index] = data[k : k + length].decode("utf8", "replace")
                        k += length
                j += sub_size
        sections[sid] += size
        i = end
    return bodies, {index - imports: n for index, n in names.items()}, sections


def crate_of(name):
    if name.startswith("_R"):
        m = re.search(r"C(?:s[0-9a-zA-Z]*_)?(\d+)([A-Za-z_][A-Za-z_0-9]*)", name)
        if m:
            return m.group(2)[: int(m.group(1))]
    m = re.search(r"_ZN(\d+)([A-Za-z_0-9]+)", name)
    if m:
        return m.group(2)[: int(m.group(1))]
    m = re.match(r"<?([a-z_0-9]+)::", name)
    return m.group(1) if m else name[:24]


path = sys.argv[1] if len(sys.argv) > 1 else "target/web/wasm32-unknown-unknown/release/imba_web.wasm"
top = int(sys.argv[2]) if len(sys.argv) > 2 else 15
bodies, names, sections = read(open(path, "rb").read())
print(f"{path}: code {sections[10] / 1e6:.2f} MB; name section {sections['custom:name'] / 1e6:.2f} MB")
by = collections.Counter()
for index, size in enumerate(bodies):
    by[crate_of(names.get(index, "?"))] += size
for crate, size in by.most_common(top):
    print(f"{size / 1e6:8.2f} MB  {crate}")
