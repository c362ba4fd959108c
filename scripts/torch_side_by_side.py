"""The PyTorch half of `imba bench torch`: the same work as imba, timed one run at a time
on request, so that imba (which drives this process) can alternate runs of the two.

Protocol: one JSON object per line on stdin, one answer per line on stdout.
  {"op": "info"}                         -> {"torch": ..., "device": ..., "threads": ..., "tf32": ...}
  {"op": "loss", "shape": [B, N, K], "compile": bool}
  {"op": "step", "config": {...DitConfig...}, "batch": B}
  {"op": "sample", "config": {...}, "batch": B, "steps": S, "guidance": w}
                                         -> {"ok": true} once built, or {"error": "..."}
  {"op": "run"}                          -> {"ms": wall milliseconds of one run of the work}
The work of each op is the one imba times:
  loss    the fused IMBA loss on (B, N, K) tokens with ε drawn by torch, forward and the
          gradients for both predictions (autograd), in eager mode or torch.compile'd;
  step    one IMBA training step: dual forward, loss, backward, clip to norm 1, AdamW, EMA;
  sample  DDIM (η = 0) over S strided steps of the linear β schedule with classifier-free
          guidance (one forward of 2B rows per step).
"""

import argparse
import json
import os
import sys
import time
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_dit import DiT, Config, imba_loss, imba_loss_tokens  # noqa: E402

GAMMA, LAMBDA = 0.8, 0.9


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def loss_work(shape, compile_it, device):
    b, n, k = shape
    g = torch.Generator(device=device).manual_seed(0)
    pc = torch.randn(b, n, k, device=device, generator=g).requires_grad_()
    pu = torch.randn(b, n, k, device=device, generator=g).requires_grad_()

    def fused(pc, pu):
        eps = torch.randn(b, n, k, device=device, generator=g)
        loss, _, _, _ = imba_loss_tokens(pc, pu, eps, GAMMA, LAMBDA)
        return loss

    f = torch.compile(fused) if compile_it else fused

    def run():
        pc.grad = pu.grad = None
        f(pc, pu).backward()
    return run


def model_and_inputs(cfg, batch, device, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    model = DiT(cfg).to(device)
    x = torch.randn(batch, cfg.channels, cfg.height, cfg.width, device=device, generator=g)
    t = torch.randint(0, 1000, (batch,), device=device, generator=g).to(torch.float32)
    y = torch.randint(0, cfg.num_labels, (batch,), device=device, generator=g)
    return model, x, t, y, g


def step_work(cfg, batch, device):
    model, x, t, y, g = model_and_inputs(cfg, batch, device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    ema = [p.detach().clone() for p in params]

    def run():
        eps = torch.randn(x.shape, device=device, generator=g)
        out = model.forward_dual(x, t, y)
        loss, _, _, _ = imba_loss(out[:batch], out[batch:], eps, cfg, GAMMA, LAMBDA)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema, params, 1.0 - 0.9999)
    return run


def sample_work(cfg, batch, steps, guidance, device):
    model, _, _, y, g = model_and_inputs(cfg, batch, device)
    model.eval()
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0).tolist()
    ts = [int(i * 1000 // steps) for i in range(steps)][::-1]

    @torch.no_grad()
    def run():
        x = torch.randn(batch, cfg.channels, cfg.height, cfg.width, device=device, generator=g)
        for i, t in enumerate(ts):
            tt = torch.full((batch,), float(t), device=device)
            out = model.forward_dual(x, tt, y)
            eps = out[batch:] + guidance * (out[:batch] - out[batch:])
            a, a_prev = abar[t], (abar[ts[i + 1]] if i + 1 < len(ts) else 1.0)
            x0 = (x - (1 - a) ** 0.5 * eps) / a ** 0.5
            x = a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * eps
        sync(device)
    return run


def build(req, device):
    op = req["op"]
    if op == "loss":
        return loss_work(req["shape"], req.get("compile", False), device)
    cfg = Config(**req["config"])
    if op == "step":
        return step_work(cfg, req["batch"], device)
    if op == "sample":
        return sample_work(cfg, req["batch"], req["steps"], req["guidance"], device)
    raise ValueError(f"unknown op {op!r}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 matmuls on CUDA")
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    work = None
    for line in sys.stdin:
        req = json.loads(line)
        try:
            if req["op"] == "info":
                name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
                ans = {"torch": torch.__version__, "device": name,
                       "threads": torch.get_num_threads(), "tf32": args.tf32}
            elif req["op"] == "run":
                sync(device)
                t0 = time.perf_counter()
                work()
                sync(device)
                ans = {"ms": (time.perf_counter() - t0) * 1e3}
            else:
                work = build(req, device)
                work()  # the first run compiles, allocates and warms caches
                sync(device)
                ans = {"ok": True}
        except Exception as e:  # reported to imba, which prints it and skips the row
            work = None
            ans = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(ans), flush=True)


if __name__ == "__main__":
    main()
