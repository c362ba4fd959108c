#!/usr/bin/env python3
"""The largest absolute difference between the f32 tensors of two safetensors files (by
name), and between the losses of two runs' logs: how far a data-parallel run is from one
process. Standard library only.

Usage: scripts/checkpoint_diff.py RUN_A RUN_B   (run folders with checkpoint.safetensors)
"""
import array
import json
import struct
import sys
from pathlib import Path


def tensors(path):
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    out = {}
    for name, t in header.items():
        if name != "__metadata__" and t["dtype"] == "F32":
            start, end = t["data_offsets"]
            out[name] = array.array("f", data[8 + n + start : 8 + n + end])
    return out


def losses(run):
    return [json.loads(l)["loss"] for l in (run / "log.jsonl").read_text().splitlines()]


a, b = Path(sys.argv[1]), Path(sys.argv[2])
ta, tb = tensors(a / "checkpoint.safetensors"), tensors(b / "checkpoint.safetensors")
if ta.keys() != tb.keys():
    sys.exit("the checkpoints hold different tensors")
values = sum(len(v) for v in ta.values())
worst = max(abs(x - y) for k in ta for x, y in zip(ta[k], tb[k]))
print(f"checkpoint values: {values}, largest |difference| {worst:.3g}")
la, lb = losses(a), losses(b)
rel = max(abs(x - y) / abs(x) for x, y in zip(la, lb))
print(f"steps logged: {len(la)} and {len(lb)}, largest relative loss difference {rel:.3g}")
