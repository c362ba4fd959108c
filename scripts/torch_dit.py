"""The DiT in PyTorch, for the goldens (scripts/make_dit_goldens.py) and the side-by-side
benchmark (scripts/torch_side_by_side.py). Written from the DiT paper's definitions and the
reference repository's module layout, so the state-dict names and shapes are the
reference's, and configured like imba's DitConfig (one label slot; learn_sigma = false unless
asked, as imba's models are: learn_sigma = true is the reference's default, whose output has
the variance's C channels after ε's, and imba imports such a state dict by its ε half).
Everything runs in torch's default dtype (float64 for the goldens, float32 to benchmark)."""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Config:
    height: int
    width: int
    channels: int
    patch: int
    dim: int
    depth: int
    heads: int
    mlp_ratio: int = 4
    num_labels: int = 1000
    label_slots: int = 1
    learn_sigma: bool = False

    @property
    def out_channels(self):
        return 2 * self.channels if self.learn_sigma else self.channels

    @property
    def tokens(self):
        return (self.height // self.patch) * (self.width // self.patch)


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
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float64,
                                                      device=t.device) / half)
    args = t[:, None].to(torch.float64) * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(torch.get_default_dtype())


class TimestepEmbedder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(256, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))

    def forward(self, t):
        return self.mlp(timestep_features(t))


class LabelEmbedder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embedding_table = nn.Embedding(cfg.num_labels + 1, cfg.dim)  # last row: ∅

    def forward(self, y):
        return self.embedding_table(y)


class PatchEmbed(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.proj = nn.Conv2d(cfg.channels, cfg.dim, kernel_size=cfg.patch, stride=cfg.patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, N, D), row-major patches


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.heads = cfg.heads
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.proj = nn.Linear(cfg.dim, cfg.dim)

    def forward(self, x):
        b, n, d = x.shape
        hd = d // self.heads
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        attn = torch.softmax((q @ k.transpose(-2, -1)) * hd ** -0.5, dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.fc1 = nn.Linear(cfg.dim, cfg.mlp_ratio * cfg.dim)
        self.fc2 = nn.Linear(cfg.mlp_ratio * cfg.dim, cfg.dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def modulate(x, shift, scale):
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg.dim
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(cfg)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))

    def forward(self, x, c):
        s1, sc1, g1, s2, sc2, g2 = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + g1[:, None] * self.attn(modulate(self.norm1(x), s1, sc1))
        return x + g2[:, None] * self.mlp(modulate(self.norm2(x), s2, sc2))


class FinalLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg.dim
        self.norm_final = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(d, cfg.patch * cfg.patch * cfg.out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class DiT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        if cfg.label_slots != 1:
            raise ValueError("this PyTorch DiT takes one label per sample")
        self.cfg = cfg
        self.x_embedder = PatchEmbed(cfg)
        self.t_embedder = TimestepEmbedder(cfg)
        self.y_embedder = LabelEmbedder(cfg)
        gh, gw = cfg.height // cfg.patch, cfg.width // cfg.patch
        self.pos_embed = nn.Parameter(torch.zeros(1, gh * gw, cfg.dim), requires_grad=False)
        self.pos_embed.data.copy_(pos_embed_2d(cfg.dim, gh, gw)[None])
        self.blocks = nn.ModuleList([DiTBlock(cfg) for _ in range(cfg.depth)])
        self.final_layer = FinalLayer(cfg)

    def unpatchify(self, x):
        """(B, N, p·p·C') in (i, j, c) order → (B, C', H, W), C' the output channels."""
        c = self.cfg
        b, p, oc = x.shape[0], c.patch, c.out_channels
        x = x.reshape(b, c.height // p, c.width // p, p, p, oc)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(b, oc, c.height, c.width)

    def forward_dual(self, x, t, y):
        """The IMBA dual forward: patch and timestep embeddings once, then 2B rows
        (labels y, then the null label)."""
        tok = self.x_embedder(x) + self.pos_embed
        temb = self.t_embedder(t)
        null = torch.full_like(y, self.cfg.num_labels)
        xs = torch.cat([tok, tok])
        c = torch.cat([temb, temb]) + self.y_embedder(torch.cat([y, null]))
        for blk in self.blocks:
            xs = blk(xs, c)
        return self.unpatchify(self.final_layer(xs, c))


def tokens(img, cfg):
    """(B, C, H, W) → (B, N, p·p·C) in (i, j, c) order, the loss's layout."""
    b, p = img.shape[0], cfg.patch
    x = img.reshape(b, cfg.channels, cfg.height // p, p, cfg.width // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, cfg.tokens, p * p * cfg.channels)


def imba_loss_tokens(ec, eu, e, gamma, lam):
    """IMBA's loss on (B, N, K) tokens: per-token weights D = mean_k |ε − ε_u|^γ (no
    gradient), L = λ·mean(D·(ε_c − ε)²) + (1 − λ)·mean((ε_u − ε)²)."""
    d = ((e - eu).detach().abs() ** gamma).mean(dim=-1, keepdim=True)
    lc = (d * (ec - e) ** 2).mean()
    lu = ((eu - e) ** 2).mean()
    return lam * lc + (1 - lam) * lu, lc, lu, d.mean()


def imba_loss(eps_c, eps_u, eps, cfg, gamma, lam):
    return imba_loss_tokens(tokens(eps_c, cfg), tokens(eps_u, cfg), tokens(eps, cfg),
                            gamma, lam)
