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

Run once (outside CI) with torch and safetensors installed:
  target/torch-venv/bin/python scripts/make_dit_goldens.py
"""

import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

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


def pos_embed_2d(dim, gh, gw):
    """(N, D): first half encodes the column, second the row; each half [sin, cos]."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(torch.arange(gh, dtype=torch.float64),
                                torch.arange(gw, dtype=torch.float64), indexing="ij")
    def half(pos):
        a = pos.reshape(-1, 1) * omega[None]
        return torch.cat([torch.sin(a), torch.cos(a)], dim=1)
    return torch.cat([half(cols), half(rows)], dim=1)


def timestep_features(t, dim=256):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float64) / half)
    args = t[:, None].to(torch.float64) * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepEmbedder(nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(256, D), nn.SiLU(), nn.Linear(D, D))

    def forward(self, t):
        return self.mlp(timestep_features(t))


class LabelEmbedder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding_table = nn.Embedding(LABELS + 1, D)  # last row: the null label

    def forward(self, y):
        return self.embedding_table(y)


class PatchEmbed(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Conv2d(C, D, kernel_size=P, stride=P)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, N, D), row-major patches


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(D, 3 * D)
        self.proj = nn.Linear(D, D)

    def forward(self, x):
        b, n, _ = x.shape
        hd = D // HEADS
        q, k, v = self.qkv(x).reshape(b, n, 3, HEADS, hd).permute(2, 0, 3, 1, 4)
        attn = torch.softmax((q @ k.transpose(-2, -1)) * hd ** -0.5, dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, D))


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(D, 4 * D)
        self.fc2 = nn.Linear(4 * D, D)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def modulate(x, shift, scale):
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.attn = Attention()
        self.norm2 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp()
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(D, 6 * D))

    def forward(self, x, c):
        s1, sc1, g1, s2, sc2, g2 = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + g1[:, None] * self.attn(modulate(self.norm1(x), s1, sc1))
        return x + g2[:, None] * self.mlp(modulate(self.norm2(x), s2, sc2))


class FinalLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm_final = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(D, P * P * C)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(D, 2 * D))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class DiT(nn.Module):
    def __init__(self):
        super().__init__()
        self.x_embedder = PatchEmbed()
        self.t_embedder = TimestepEmbedder()
        self.y_embedder = LabelEmbedder()
        n = (H // P) * (W // P)
        self.pos_embed = nn.Parameter(torch.zeros(1, n, D), requires_grad=False)
        self.pos_embed.data.copy_(pos_embed_2d(D, H // P, W // P)[None])
        self.blocks = nn.ModuleList([DiTBlock() for _ in range(DEPTH)])
        self.final_layer = FinalLayer()

    def unpatchify(self, x):
        """(B, N, p·p·C) in (i, j, c) order → (B, C, H, W)."""
        b = x.shape[0]
        x = x.reshape(b, H // P, W // P, P, P, C)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(b, C, H, W)

    def forward_dual(self, x, t, y):
        """The IMBA dual forward: patch and timestep embeddings once, then 2B rows
        (labels y, then the null label)."""
        tok = self.x_embedder(x) + self.pos_embed
        temb = self.t_embedder(t)
        null = torch.full_like(y, LABELS)
        xs = torch.cat([tok, tok])
        c = torch.cat([temb, temb]) + self.y_embedder(torch.cat([y, null]))
        for blk in self.blocks:
            xs = blk(xs, c)
        return self.unpatchify(self.final_layer(xs, c))


def tokens(img):
    """(B, C, H, W) → (B, N, p·p·C) in (i, j, c) order, the loss's layout."""
    b = img.shape[0]
    x = img.reshape(b, C, H // P, P, W // P, P)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (H // P) * (W // P), P * P * C)


def imba_loss(eps_c, eps_u, eps):
    ec, eu, e = tokens(eps_c), tokens(eps_u), tokens(eps)
    d = ((e - eu).detach().abs() ** GAMMA).mean(dim=-1, keepdim=True)
    lc = (d * (ec - e) ** 2).mean()
    lu = ((eu - e) ** 2).mean()
    return LAMBDA * lc + (1 - LAMBDA) * lu, lc, lu, d.mean()


def f32(t):
    """Round to float32 and back: every input is exactly representable in the F32 files."""
    return t.to(torch.float32).to(torch.float64)


def main():
    g = torch.Generator().manual_seed(20261123)
    model = DiT()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "pos_embed":
                continue
            fan = p.shape[-1] if p.dim() > 1 else p.shape[0]
            p.copy_(f32((torch.rand(p.shape, generator=g) * 2 - 1) * (3.0 / fan) ** 0.5))
    x_t = f32(torch.randn(B, C, H, W, generator=g))
    noise = f32(torch.randn(B, C, H, W, generator=g))
    t = torch.tensor([3.0, 999.0, 500.0])
    y = torch.tensor([2, 0, 1])

    out = model.forward_dual(x_t, t, y)
    loss, lc, lu, mean_d = imba_loss(out[:B], out[B:], noise)
    loss.backward()

    here = os.path.dirname(os.path.abspath(__file__))
    dest = os.path.join(here, "..", "tests", "goldens")
    os.makedirs(dest, exist_ok=True)
    weights = {n: p.detach().to(torch.float32).contiguous() for n, p in model.state_dict().items()}
    save_file(weights, os.path.join(dest, "dit_tiny_weights.safetensors"), metadata={"format": "pt"})
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
    main()
