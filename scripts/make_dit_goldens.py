"""PyTorch goldens for the whole-model test (tests/dit_goldens.rs).

Builds the DiT of docs/design.md#the-dit in PyTorch — written here from the paper's definitions and
the reference repository's module layout, so the state-dict names and shapes are the
reference's — with float64 arithmetic, draws non-zero random weights for every tensor
(the zero-initialised adaLN and final linears too), runs the dual forward (labels, then
the null label) on a fixed batch, timesteps and noise, computes the IMBA loss, and saves:

  tests/goldens/dit_tiny_weights.safetensors  the weights (F32; the f64 run uses exactly
                                              these values) and pos_embed
  tests/goldens/dit_tiny_io.safetensors       x_t, t, labels, noise (F32 inputs); the
                                              outputs (2B, C, H, W), [L, L_c, L_u, mean D],
                                              and every parameter's gradient ("grad.<name>")

With --learn-sigma it writes instead the goldens of importing a learn_sigma = true state
dict (the reference's default: the output layer predicts the variance's C channels after
ε's), from a model of the same config but for that output:

  tests/goldens/dit_tiny_sigma_weights.safetensors  its state dict (F32), as a PyTorch user
                                                    saves it
  tests/goldens/dit_tiny_sigma_io.safetensors       x_t, t, labels and the dual forward's
                                                    output (2B, 2C, H, W): ε, then the variance

Run once (outside CI) with torch and safetensors installed:
  target/torch-venv/bin/python scripts/make_dit_goldens.py [--learn-sigma]
"""

import dataclasses
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_dit import DiT, Config, imba_loss  # noqa: E402

torch.set_default_dtype(torch.float64)

# The tiny config of DitConfig::tiny().
H = W = 8
C = 3
P = 2
D = 32
DEPTH = 2
HEADS = 2
LABELS = 3
B = 3
# IMBA's defaults γ = 0.8, λ = 0.9, rounded to f32 as imba's ImbaParams holds them, so the
# f64 reference can match PyTorch to f64 precision.
GAMMA = torch.tensor(0.8, dtype=torch.float32).item()
LAMBDA = torch.tensor(0.9, dtype=torch.float32).item()


CFG = Config(height=H, width=W, channels=C, patch=P, dim=D, depth=DEPTH, heads=HEADS,
             num_labels=LABELS)


def f32(t):
    """Round to float32 and back: every input is exactly representable in the F32 files."""
    return t.to(torch.float32).to(torch.float64)


def random_model(cfg, g):
    """The DiT of `cfg` with every weight drawn uniformly at its fan-in's scale."""
    model = DiT(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "pos_embed":
                continue
            fan = p.shape[-1] if p.dim() > 1 else p.shape[0]
            p.copy_(f32((torch.rand(p.shape, generator=g) * 2 - 1) * (3.0 / fan) ** 0.5))
    return model


def state_dict_f32(model):
    return {n: p.detach().to(torch.float32).contiguous() for n, p in model.state_dict().items()}


def golden_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    dest = os.path.join(here, "..", "tests", "goldens")
    os.makedirs(dest, exist_ok=True)
    return dest


def learn_sigma():
    g = torch.Generator().manual_seed(20261207)
    model = random_model(dataclasses.replace(CFG, learn_sigma=True), g)
    x_t = f32(torch.randn(B, C, H, W, generator=g))
    t = torch.tensor([7.0, 998.0, 301.0])
    y = torch.tensor([1, 2, 0])
    out = model.forward_dual(x_t, t, y)
    dest = golden_dir()
    save_file(state_dict_f32(model), os.path.join(dest, "dit_tiny_sigma_weights.safetensors"),
              metadata={"format": "pt"})
    io = {"x_t": x_t.to(torch.float32), "t": t.to(torch.float32), "labels": y.to(torch.int64),
          "out": out.detach().to(torch.float32).contiguous()}
    save_file(io, os.path.join(dest, "dit_tiny_sigma_io.safetensors"), metadata={"format": "pt"})
    print(f"learn_sigma output {tuple(out.shape)} written to {os.path.normpath(dest)}")


def main():
    g = torch.Generator().manual_seed(20261123)
    model = random_model(CFG, g)
    x_t = f32(torch.randn(B, C, H, W, generator=g))
    noise = f32(torch.randn(B, C, H, W, generator=g))
    t = torch.tensor([3.0, 999.0, 500.0])
    y = torch.tensor([2, 0, 1])

    out = model.forward_dual(x_t, t, y)
    loss, lc, lu, mean_d = imba_loss(out[:B], out[B:], noise, CFG, GAMMA, LAMBDA)
    loss.backward()

    dest = golden_dir()
    save_file(state_dict_f32(model), os.path.join(dest, "dit_tiny_weights.safetensors"), metadata={"format": "pt"})
    io = {
        "x_t": x_t.to(torch.float32),
        "noise": noise.to(torch.float32),
        "t": t.to(torch.float32),
        "labels": y.to(torch.int64),
        "out": out.detach().to(torch.float32).contiguous(),
        "loss": torch.stack([loss, lc, lu, mean_d]).detach(),
    }
    for n, p in model.named_parameters():
        if p.requires_grad:
            io["grad." + n] = p.grad.to(torch.float32).contiguous()
    save_file(io, os.path.join(dest, "dit_tiny_io.safetensors"), metadata={"format": "pt"})
    print(f"L = {loss.item():.12g}, L_c = {lc.item():.12g}, L_u = {lu.item():.12g}, "
          f"mean D = {mean_d.item():.12g}; {len(io) - 6} gradients written to {os.path.normpath(dest)}")


if __name__ == "__main__":
    learn_sigma() if sys.argv[1:] == ["--learn-sigma"] else main()
