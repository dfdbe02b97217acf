"""The LightningDiT network in the official state-dict layout (hustvl/LightningDiT ``models/lightningdit.py``).

LightningDiT is DiT with optional RMSNorm, SwiGLU feed-forward, 2-D rotary position embedding (on top of the
fixed sin-cos table), qk-norm and shift-free AdaLN. The released ImageNet-256 model is XL/1 on 16x16x32
VA-VAE latents with RMSNorm + SwiGLU + RoPE (no qk-norm, with shift), no learned sigma, t in [0, 1] with
0 = noise. The conditional vector is ``c = t_embedder(t) + y_embedder(y)`` as in DiT, and ``forward`` takes
the same ``hook`` on c. Embedders, patchifier, final layer, position table and initialisation are DiT's.

Key layout (strict, released model): ``x_embedder.proj``, ``t_embedder.mlp.{0,2}``,
``y_embedder.embedding_table``, ``pos_embed``, ``feat_rope.freqs_{cos,sin}`` (persistent buffers),
``blocks.N.{norm1, norm2}.weight`` (RMSNorm), ``blocks.N.attn.{qkv, proj}``, ``blocks.N.mlp.{w12, w3}``,
``blocks.N.adaLN_modulation.1``, ``final_layer.{norm_final.weight, linear, adaLN_modulation.1}``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .dit_model import (DiT, DiTConfig, EmbeddingHook, FinalLayer, LabelEmbedder, Mlp, PatchEmbed, TimestepEmbedder,
                        modulate)


@dataclass(frozen=True)
class LightningDiTConfig(DiTConfig):
    """Constructor arguments of the official ``LightningDiT``: DiT's, plus the architecture switches; the
    defaults are the released ImageNet-256 XL/1 model (``configs/reproductions/lightningdit_xl_vavae_f16d32_800ep_cfg.yaml``)."""

    input_size: int = 16
    patch_size: int = 1
    in_channels: int = 32
    learn_sigma: bool = False
    use_qknorm: bool = False
    use_swiglu: bool = True
    use_rope: bool = True
    use_rmsnorm: bool = True
    wo_shift: bool = False


# The official named sizes (``LightningDiT_models``); the patch size (1 or 2) is a separate option.
LIGHTNINGDIT_SIZES = {
    "B": dict(depth=12, hidden_size=768, num_heads=12),
    "L": dict(depth=24, hidden_size=1024, num_heads=16),
    "XL": dict(depth=28, hidden_size=1152, num_heads=16),
    "1p0B": dict(depth=24, hidden_size=1536, num_heads=24),
    "1p6B": dict(depth=28, hidden_size=1792, num_heads=28),
}

XL1_IMAGENET256 = LightningDiTConfig()


class RMSNorm(nn.Module):
    """x / rms(x) computed in float32, times a learned per-channel weight (LLaMA's RMSNorm, eps 1e-6)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


def rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs by 90 degrees: (a, b) -> (-b, a) along the last axis."""
    pairs = x.unflatten(-1, (-1, 2))  # (..., D/2, 2)
    return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)


class Rope2D(nn.Module):
    """2-D rotary embedding over a G x G token grid (EVA-02 style, as LightningDiT uses it).

    The first half of each head's channels rotates with the token's row, the second half with its column;
    within a half, channel pairs (2i, 2i+1) share frequency 10000^(-2i/half). The tables are persistent
    buffers ``freqs_cos``/``freqs_sin`` of shape (G*G, head_dim), so they appear in the state dict.
    """

    def __init__(self, head_dim: int, grid_size: int, theta: float = 10000.0):
        super().__init__()
        half = head_dim // 2
        inv_freq = 1.0 / theta ** (torch.arange(0, half, 2)[: half // 2].float() / half)  # (half/2,)
        pos = torch.arange(grid_size) / grid_size * grid_size  # the official float positions, written as it does
        angles = torch.repeat_interleave(pos[:, None] * inv_freq[None], 2, dim=-1)  # (G, half)
        rows = angles[:, None, :].expand(grid_size, grid_size, half)  # indexed by the token's row
        cols = angles[None, :, :].expand(grid_size, grid_size, half)  # indexed by the token's column
        table = torch.cat([rows, cols], dim=-1).reshape(grid_size * grid_size, 2 * half)  # (T, head_dim)
        self.register_buffer("freqs_cos", table.cos())
        self.register_buffer("freqs_sin", table.sin())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, H, T, head_dim) -> the same, rotated by each token's position."""
        return x * self.freqs_cos + rotate_pairs(x) * self.freqs_sin


class RopeAttention(nn.Module):
    """Self-attention with a fused biased qkv (``qkv``, ``proj``), optional per-head qk-norm and RoPE."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool, use_rmsnorm: bool):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        norm = (lambda: RMSNorm(head_dim)) if use_rmsnorm else (lambda: nn.LayerNorm(head_dim))
        self.q_norm = norm() if qk_norm else nn.Identity()
        self.k_norm = norm() if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: Optional[Rope2D]) -> torch.Tensor:
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (N, H, T, D/H)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = rope(q), rope(k)
        out = F.scaled_dot_product_attention(q, k, v)  # (N, H, T, D/H)
        return self.proj(out.transpose(1, 2).reshape(n, t, d))


class SwiGLU(nn.Module):
    """w3(SiLU(a) * b) with [a, b] = w12(x); hidden width int(2/3 * mlp_ratio * D)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(a) * b)


def make_norm(dim: int, use_rmsnorm: bool) -> nn.Module:
    """RMSNorm with weight, or DiT's affine-free LayerNorm."""
    return RMSNorm(dim) if use_rmsnorm else nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)


def _modulate(x: torch.Tensor, shift: Optional[torch.Tensor], scale: torch.Tensor) -> torch.Tensor:
    """DiT's modulate, or scale only when the block has no shift."""
    return x * (1 + scale.unsqueeze(1)) if shift is None else modulate(x, shift, scale)


class LightningDiTBlock(nn.Module):
    """DiT block with the LightningDiT options; AdaLN gives 6 chunks, or 4 (no shifts) with ``wo_shift``."""

    def __init__(self, config: LightningDiTConfig):
        super().__init__()
        d = config.hidden_size
        self.wo_shift = config.wo_shift
        self.norm1 = make_norm(d, config.use_rmsnorm)
        self.attn = RopeAttention(d, config.num_heads, config.use_qknorm, config.use_rmsnorm)
        self.norm2 = make_norm(d, config.use_rmsnorm)
        hidden = int(d * config.mlp_ratio)
        self.mlp = SwiGLU(d, int(2 / 3 * hidden)) if config.use_swiglu else Mlp(d, hidden)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, (4 if config.wo_shift else 6) * d))

    def forward(self, x: torch.Tensor, c: torch.Tensor, rope: Optional[Rope2D]) -> torch.Tensor:
        mod = self.adaLN_modulation(c)  # (N, 4D or 6D)
        if self.wo_shift:
            scale_msa, gate_msa, scale_mlp, gate_mlp = mod.chunk(4, dim=1)
            shift_msa = shift_mlp = None
        else:
            shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod.chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(_modulate(self.norm1(x), shift_msa, scale_msa), rope)
        x = x + gate_mlp.unsqueeze(1) * self.mlp(_modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class LightningFinalLayer(FinalLayer):
    """DiT's final layer with RMSNorm (key ``norm_final.weight``) when the model uses RMSNorm."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int, use_rmsnorm: bool):
        super().__init__(hidden_size, patch_size, out_channels)
        self.norm_final = make_norm(hidden_size, use_rmsnorm)


class LightningDiT(nn.Module):
    """Class-conditional LightningDiT; ``forward`` returns the raw output (N, C_out, H, W), C_out = out_channels.

    Like condbench's DiT (and unlike the official forward, which drops it), a learned-sigma half is kept;
    the released model has none, so its output is the velocity (N, 32, 16, 16).
    """

    def __init__(self, config: LightningDiTConfig):
        super().__init__()
        self.config = config
        d = config.hidden_size
        grid = config.input_size // config.patch_size
        self.x_embedder = PatchEmbed(config.patch_size, config.in_channels, d)
        self.t_embedder = TimestepEmbedder(d, config.frequency_embedding_size)
        self.y_embedder = LabelEmbedder(config.num_classes, d, config.class_dropout_prob)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid, d), requires_grad=False)
        self.feat_rope = Rope2D(d // config.num_heads, grid) if config.use_rope else None
        self.blocks = nn.ModuleList(LightningDiTBlock(config) for _ in range(config.depth))
        self.final_layer = LightningFinalLayer(d, config.patch_size, config.out_channels, config.use_rmsnorm)
        self.initialize_weights()

    # The official initialisation, position table, c parts and unpatchify are DiT's.
    initialize_weights = DiT.initialize_weights
    embed_parts = DiT.embed_parts
    conditional_vector = DiT.conditional_vector
    unpatchify = DiT.unpatchify

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, hook: Optional[EmbeddingHook] = None
    ) -> torch.Tensor:
        """x (N, C, H, W), t (N,) in [0, 1] (0 = noise), y (N,) -> (N, C_out, H, W); ``hook`` may rewrite c."""
        tokens = self.x_embedder(x) + self.pos_embed  # (N, T, D)
        c = self.conditional_vector(t, y, hook)  # (N, D)
        for block in self.blocks:
            tokens = block(tokens, c, self.feat_rope)
        return self.unpatchify(self.final_layer(tokens, c))
