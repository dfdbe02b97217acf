"""The DiT architecture in the official state-dict layout (facebookresearch/DiT ``models.py``).

One network serves DiT, SiT, REPA and MG (they differ only in ``learn_sigma``, the size of the label
table and, for REPA, unused projector weights). The forward pass exposes the conditional vector
``c = t_embedder(t) + y_embedder(y)`` (before the SiLU of every ``adaLN_modulation``) and accepts a
hook that may rewrite c, which is how pruning policies act on the model.

Key layout (strict): ``x_embedder.proj``, ``t_embedder.mlp.{0,2}``, ``y_embedder.embedding_table``,
``pos_embed``, ``blocks.N.{attn.qkv, attn.proj, mlp.fc1, mlp.fc2, adaLN_modulation.1}``,
``final_layer.{linear, adaLN_modulation.1}``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..precision import outside_autocast

# A hook receives (c, t_part, cond_part), each (N, D), and returns the c the network should use.
EmbeddingHook = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class DiTConfig:
    """Hyper-parameters of a DiT-family network; the named sizes below are the official ones."""

    input_size: int = 32
    patch_size: int = 2
    in_channels: int = 4
    hidden_size: int = 1152
    depth: int = 28
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_classes: int = 1000
    class_dropout_prob: float = 0.1  # > 0 adds the null row used by classifier-free guidance
    learn_sigma: bool = True
    frequency_embedding_size: int = 256

    @property
    def out_channels(self) -> int:
        return self.in_channels * 2 if self.learn_sigma else self.in_channels

    def to_dict(self) -> dict:
        return asdict(self)


# The official sizes (DiT paper, Table 1); the patch size is a separate option.
DIT_SIZES = {
    "S": dict(depth=12, hidden_size=384, num_heads=6),
    "B": dict(depth=12, hidden_size=768, num_heads=12),
    "L": dict(depth=24, hidden_size=1024, num_heads=16),
    "XL": dict(depth=28, hidden_size=1152, num_heads=16),
}


def timestep_sinusoid(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of (possibly fractional) timesteps, laid out [cos, sin]: (N,) -> (N, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]  # (N, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepEmbedder(nn.Module):
    """t -> sinusoid(F) -> Linear(F, D) -> SiLU -> Linear(D, D)."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        freq = timestep_sinusoid(t, self.frequency_embedding_size)  # (N, F)
        return self.mlp(freq.to(self.mlp[0].weight.dtype))  # (N, D)


class LabelEmbedder(nn.Module):
    """Class id -> row of a table; row ``num_classes`` is the null class used for guidance."""

    def __init__(self, num_classes: int, hidden_size: int, dropout_prob: float):
        super().__init__()
        use_null_row = dropout_prob > 0
        self.embedding_table = nn.Embedding(num_classes + int(use_null_row), hidden_size)
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob

    def drop_labels(self, labels: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Replace labels by the null class with probability ``dropout_prob`` (training only)."""
        drop = torch.rand(labels.shape, device=labels.device, generator=generator) < self.dropout_prob
        return torch.where(drop, torch.full_like(labels, self.num_classes), labels)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.embedding_table(labels)  # (N, D)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (timm layout: ``qkv``, ``proj``)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (N, H, T, D/H)
        out = F.scaled_dot_product_attention(q, k, v)  # (N, H, T, D/H)
        return self.proj(out.transpose(1, 2).reshape(n, t, d))


class Mlp(nn.Module):
    """fc1 -> GELU(tanh) -> fc2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """AdaLN modulation x * (1 + scale) + shift; x (N, T, D), shift/scale (N, D)."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class DiTBlock(nn.Module):
    """Transformer block with adaLN-Zero conditioning on c."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class FinalLayer(nn.Module):
    """adaLN (shift, scale) then a linear map from tokens to patches."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class PatchEmbed(nn.Module):
    """Conv patchifier (timm layout: ``proj``): (N, C, H, W) -> (N, T, D)."""

    def __init__(self, patch_size: int, in_channels: int, hidden_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def sincos_pos_embed_2d(embed_dim: int, grid_size: int) -> np.ndarray:
    """Fixed 2-D sin-cos position table (T, D), as DiT builds it: first half from the column index, second from the row."""

    def one_axis(dim: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)  # (M, dim/2)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    coords = np.arange(grid_size, dtype=np.float32)
    grid_w, grid_h = np.meshgrid(coords, coords)  # each (G, G); grid_w varies along columns
    return np.concatenate([one_axis(embed_dim // 2, grid_w), one_axis(embed_dim // 2, grid_h)], axis=1)


class DiT(nn.Module):
    """Class-conditional diffusion transformer; ``forward`` returns the raw model output (N, C_out, H, W)."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = config
        d = config.hidden_size
        self.x_embedder = PatchEmbed(config.patch_size, config.in_channels, d)
        self.t_embedder = TimestepEmbedder(d, config.frequency_embedding_size)
        self.y_embedder = LabelEmbedder(config.num_classes, d, config.class_dropout_prob)
        num_patches = (config.input_size // config.patch_size) ** 2
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, d), requires_grad=False)
        self.blocks = nn.ModuleList(DiTBlock(d, config.num_heads, config.mlp_ratio) for _ in range(config.depth))
        self.final_layer = FinalLayer(d, config.patch_size, config.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's initialisation: xavier linears, fixed pos-embed, adaLN-Zero (zeroed modulation and output)."""

        def xavier(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

        self.apply(xavier)
        grid = int(self.pos_embed.shape[1] ** 0.5)
        self.pos_embed.data.copy_(torch.from_numpy(sincos_pos_embed_2d(self.config.hidden_size, grid)).float()[None])
        w = self.x_embedder.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        for layer in (self.final_layer.adaLN_modulation[-1], self.final_layer.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def embed_parts(self, t: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The timestep part and the class part of c, each (N, D)."""
        return self.t_embedder(t), self.y_embedder(y)

    @outside_autocast
    def conditional_vector(self, t: torch.Tensor, y: torch.Tensor, hook: Optional[EmbeddingHook] = None) -> torch.Tensor:
        """c = t_embedder(t) + y_embedder(y) (N, D), the vector the study measures, as ``hook`` rewrites it; float32
        even under autocast."""
        t_part, y_part = self.embed_parts(t, y)
        c = t_part + y_part
        return hook(c, t_part, y_part) if hook is not None else c

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, p*p*C) -> (N, C, H, W)."""
        c, p = self.config.out_channels, self.config.patch_size
        h = w = int(x.shape[1] ** 0.5)
        x = x.reshape(x.shape[0], h, w, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], c, h * p, w * p)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, hook: Optional[EmbeddingHook] = None
    ) -> torch.Tensor:
        """x (N, C, H, W), t (N,), y (N,) -> (N, C_out, H, W); ``hook`` may rewrite c before AdaLN."""
        tokens = self.x_embedder(x) + self.pos_embed  # (N, T, D)
        c = self.conditional_vector(t, y, hook)  # (N, D)
        for block in self.blocks:
            tokens = block(tokens, c)
        return self.unpatchify(self.final_layer(tokens, c))
