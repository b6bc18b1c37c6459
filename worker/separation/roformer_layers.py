"""The building blocks of the RoFormer networks (worker/separation/roformer.py).

Written after lucidrains' BS-RoFormer (github.com/lucidrains/BS-RoFormer, MIT licence,
Copyright (c) 2023 Phil Wang) as Music-Source-Separation-Training (github.com/ZFTurbo/
Music-Source-Separation-Training, MIT licence, Copyright (c) 2024 Roman Solovyev) modified it:
the same modules under the same names, so that MSST checkpoints load key for key, including
the rotary embeddings' `freqs` that every attention layer carries. Inference only: dropout,
checkpointing and losses are left out. Norms and rotary angles run in float32 whatever the
autocast precision, and the residual stream stays float32, so bf16 loses little.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """x / |x| * sqrt(dim) * gamma, in float32."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One pass over x fewer than F.normalize(x) * gain: the gain divided by each norm.
        x = x.float()
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min_(1e-12)
        return x * ((self.scale * self.gamma.float()) / norm)


class RotaryEmbedding(nn.Module):
    """rotary-embedding-torch's RotaryEmbedding (theta 10000, interleaved pairs), as used."""

    def __init__(self, dim: int, theta: float = 10000.0):
        super().__init__()
        freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
        self.freqs = nn.Parameter(freqs, requires_grad=False)
        self.cache: tuple[int, torch.device, torch.Tensor, torch.Tensor] | None = None

    def angles(self, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and signed sin `[length, dim]` of each position (-sin on the even features,
        sin on the odd), kept for the next call."""
        if self.cache is None or self.cache[:2] != (length, device):
            positions = torch.arange(length, device=device, dtype=torch.float32)
            angles = positions[:, None] * self.freqs.to(device=device, dtype=torch.float32)
            angles = angles.repeat_interleave(2, dim=-1)
            sign = torch.tensor([-1.0, 1.0], device=device).repeat(angles.shape[-1] // 2)
            self.cache = (length, device, angles.cos(), angles.sin() * sign)
        return self.cache[2], self.cache[3]

    def rotate(self, t: torch.Tensor) -> torch.Tensor:
        """`t` `[..., n, d]` rotated by position along n, computed in float32: each pair
        (a, b) to (a cos - b sin, b cos + a sin), the swapped pairs times the signed sin."""
        cos, signed_sin = self.angles(t.shape[-2], t.device)
        x = t.float()
        swapped = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
        return torch.addcmul(x * cos, swapped, signed_sin).to(t.dtype)


class Attention(nn.Module):
    """Multi-head self-attention with rotary positions and a sigmoid gate per head."""

    def __init__(self, dim: int, heads: int, dim_head: int, rotary_embed: RotaryEmbedding | None):
        super().__init__()
        self.heads = heads
        self.rotary_embed = rotary_embed
        self.norm = RMSNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.to_gates = nn.Linear(dim, heads)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        b, n, _ = x.shape
        qkv = self.to_qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.rotary_embed is not None:  # q and k in one pass
            q, k = self.rotary_embed.rotate(qkv[:2]).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        gates = self.to_gates(x).transpose(1, 2).unsqueeze(-1).sigmoid()
        out = (out * gates).transpose(1, 2).reshape(b, n, -1)
        return self.to_out(out)


class LinearAttention(nn.Module):
    """Cross-covariance attention (El-Nouby et al.): across features, over the whole sequence."""

    def __init__(self, dim: int, heads: int, dim_head: int, scale: float = 8.0):
        super().__init__()
        self.heads, self.scale = heads, scale
        self.norm = RMSNorm(dim)
        self.to_qkv = nn.Sequential(nn.Linear(dim, 3 * heads * dim_head, bias=False))
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.to_out = nn.Sequential(nn.Identity(), nn.Linear(heads * dim_head, dim, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        b, n, _ = x.shape
        q, k, v = self.to_qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 4, 1).unbind(0)
        q, k = F.normalize(q.float(), dim=-1), F.normalize(k.float(), dim=-1)
        q = (q * self.temperature.float().exp()).to(v.dtype)
        out = F.scaled_dot_product_attention(q, k.to(v.dtype), v, scale=self.scale)
        return self.to_out(out.permute(0, 3, 1, 2).reshape(b, n, -1))


class FeedForward(nn.Module):
    """RMSNorm, Linear, GELU, Linear; the Identity stands where training has its dropout."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        inner = int(dim * mult)
        self.net = nn.Sequential(RMSNorm(dim), nn.Linear(dim, inner), nn.GELU(), nn.Identity(),
                                 nn.Linear(inner, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Transformer(nn.Module):
    """Pre-norm residual attention and feed-forward layers, optionally a final norm."""

    def __init__(self, *, dim: int, depth: int, dim_head: int, heads: int, norm_output: bool,
                 rotary_embed: RotaryEmbedding | None = None, linear_attn: bool = False):
        super().__init__()
        self.layers = nn.ModuleList()
        for _ in range(depth):
            attention = (LinearAttention(dim, heads, dim_head) if linear_attn
                         else Attention(dim, heads, dim_head, rotary_embed))
            self.layers.append(nn.ModuleList([attention, FeedForward(dim)]))
        self.norm: nn.Module = RMSNorm(dim) if norm_output else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attention, ff in cast("list[tuple[nn.Module, nn.Module]]", self.layers):
            x = attention(x) + x
            x = ff(x) + x
        return self.norm(x)


class BandSplit(nn.Module):
    """Each band's bins (real and imaginary, per channel) to one feature vector."""

    def __init__(self, dim: int, dim_inputs: tuple[int, ...]):
        super().__init__()
        self.dim_inputs = dim_inputs
        self.to_features = nn.ModuleList(
            nn.Sequential(RMSNorm(dim_in), nn.Linear(dim_in, dim)) for dim_in in dim_inputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bands = x.split(self.dim_inputs, dim=-1)
        return torch.stack([net(band) for band, net in zip(bands, self.to_features, strict=True)],
                           dim=-2).float()


def mlp(dim_in: int, dim_out: int, dim_hidden: int, hidden_layers: int) -> nn.Sequential:
    """Linear layers with Tanh between them, `hidden_layers` of width `dim_hidden`."""
    dims = (dim_in, *((dim_hidden,) * hidden_layers), dim_out)
    net: list[nn.Module] = []
    for index, (layer_in, layer_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        net.append(nn.Linear(layer_in, layer_out))
        if index < len(dims) - 2:
            net.append(nn.Tanh())
    return nn.Sequential(*net)


class MaskEstimator(nn.Module):
    """Each band's feature vector back to its bins' complex mask, through an MLP and a GLU."""

    def __init__(self, dim: int, dim_inputs: tuple[int, ...], hidden_layers: int,
                 mlp_expansion_factor: int):
        super().__init__()
        hidden = dim * mlp_expansion_factor
        self.to_freqs = nn.ModuleList(
            nn.Sequential(mlp(dim, dim_in * 2, hidden, hidden_layers), nn.GLU(dim=-1))
            for dim_in in dim_inputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bands = x.unbind(dim=-2)
        return torch.cat([net(band) for band, net in zip(bands, self.to_freqs, strict=True)],
                         dim=-1)
