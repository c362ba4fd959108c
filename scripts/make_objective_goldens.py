"""PyTorch goldens for CBDM and CCUA (tests/dit_goldens.rs, `gpu_objectives_match_pytorch_goldens`).

Reuses the DiT of make_dit_goldens.py (float64) with the weights and inputs it saved
(tests/goldens/dit_tiny_*.safetensors), and computes with autograd:

  CBDM (docs/design.md#cbdm): rows (y, y'); L = mse(ε_c, ε) + mean[(t/T)·τ·((ε_c − sg ε_y')²
        + ¼(sg ε_c − ε_y')²)], τ = 1, y' fixed below.
  CCUA (docs/design.md#ccua): rows (y, ∅); h = the ∅ rows' residual stream after block ⌊depth/4⌋,
        flattened per sample and L2-normalised (F.normalize); UCL_i = log(1 + Σ_{j≠i}
        exp((cos_ij − 1)/τ)); L = mse(ε_c, ε) + α·mean_i (t_i/T)·UCL_i
        + γ·mean[(t/T)·(ε_c − ε_u)²], α = 0.7, γ = 0.5, τ = 0.1 (weights larger than the
        defaults so that the regularisers' gradients are not hidden under the MSE's).

Writes tests/goldens/objectives_tiny.safetensors: "cbdm.labels2" (y'), "<obj>.loss" and
"<obj>.grad.<name>" for every parameter. Run once (outside CI):
  target/torch-venv/bin/python scripts/make_objective_goldens.py
"""

import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import make_dit_goldens as dg  # noqa: E402

torch.set_default_dtype(torch.float64)

T = 1000.0
# f32 values of the coefficients, as imba holds them.
def f32c(v):
    return torch.tensor(v, dtype=torch.float32).item()

CBDM_TAU = 1.0
ALPHA, GAMMA, TAU = f32c(0.7), f32c(0.5), f32c(0.1)
Y_PRIME = torch.tensor([1, 2, 0])


def forward_rows(model, x, t, labels):
    """Two label rows per sample (labels: 2B), returning the output (2B, C, H, W) and the
    residual stream after every block."""
    tok = model.x_embedder(x) + model.pos_embed
    temb = model.t_embedder(t)
    xs = torch.cat([tok, tok])
    c = torch.cat([temb, temb]) + model.y_embedder(labels)
    after = []
    for blk in model.blocks:
        xs = blk(xs, c)
        after.append(xs)
    return model.unpatchify(model.final_layer(xs, c)), after


def per_sample(w, like):
    return w.view(-1, *([1] * (like.dim() - 1)))


def main():
    dest = os.path.join(here, "..", "tests", "goldens")
    weights = load_file(os.path.join(dest, "dit_tiny_weights.safetensors"))
    io = load_file(os.path.join(dest, "dit_tiny_io.safetensors"))
    x_t = io["x_t"].to(torch.float64)
    noise = io["noise"].to(torch.float64)
    t = io["t"].to(torch.float64)
    y = io["labels"]
    b = y.shape[0]
    w = t / T
    out_file = {"cbdm.labels2": Y_PRIME.to(torch.int64)}
    for name in ["cbdm", "ccua"]:
        model = dg.DiT()
        model.load_state_dict({k: v.to(torch.float64) for k, v in weights.items()})
        if name == "cbdm":
            out, _ = forward_rows(model, x_t, t, torch.cat([y, Y_PRIME]))
            a, a2 = out[:b], out[b:]
            ww = per_sample(w, a)
            reg = ww * CBDM_TAU * ((a - a2.detach()) ** 2 + 0.25 * (a.detach() - a2) ** 2)
            loss = F.mse_loss(a, noise) + reg.mean()
        else:
            null = torch.full_like(y, dg.LABELS)
            out, after = forward_rows(model, x_t, t, torch.cat([y, null]))
            a, u = out[:b], out[b:]
            h = after[dg.DEPTH // 4][b:].reshape(b, -1)
            hn = F.normalize(h, dim=1)
            cos = hn @ hn.T
            off = ~torch.eye(b, dtype=torch.bool)
            e = torch.where(off, torch.exp((cos - 1.0) / TAU), torch.zeros_like(cos))
            ucl = torch.log1p(e.sum(dim=1))
            align = (per_sample(w, a) * (a - u) ** 2).mean()
            loss = F.mse_loss(a, noise) + ALPHA * (w * ucl).mean() + GAMMA * align
        loss.backward()
        out_file[f"{name}.loss"] = loss.detach().reshape(1)
        for n, p in model.named_parameters():
            if p.requires_grad:
                out_file[f"{name}.grad.{n}"] = p.grad.to(torch.float32).contiguous()
        print(f"{name}: L = {loss.item():.12g}")
    save_file(out_file, os.path.join(dest, "objectives_tiny.safetensors"), metadata={"format": "pt"})


if __name__ == "__main__":
    main()
