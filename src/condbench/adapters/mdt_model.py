"""MDTv2 (sail-sg/MDT ``masked_diffusion/models.py``) in the official state-dict layout, inference path only.

MDTv2 is DiT with long skips and a relative position bias in every attention: ``en_inblocks`` (half of
``depth - decode_layer``) store their outputs, ``en_outblocks`` take them back in reverse order through
``skip_linear`` (2D -> D), ``decoder_pos_embed`` is added, and ``de_blocks`` (``decode_layer`` of them) each
take the embedded input tokens as their skip. ``pos_embed`` and ``decoder_pos_embed`` are learned.
c = t_embedder(t) + y_embedder(y), exactly as in DiT; the hook may rewrite it where it is formed.

Sampling runs the network without masking, so the training-only parts of the official file (the
``sideblocks`` that fill in masked tokens and ``mask_token``) are not built here: ``adapters.loading.load_network``
leaves them out by name (:data:`MDT_TRAINING_ONLY_PREFIXES`). Every attention keeps the official
``rel_pos_bias.relative_position_index`` buffer (persistent, so the file's copy is checked and loaded).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from .dit_model import (DiT, DiTBlock, DiTConfig, EmbeddingHook, FinalLayer, LabelEmbedder, PatchEmbed,
                        TimestepEmbedder, sincos_pos_embed_2d)
from .dit_model import Attention as DiTAttention


@dataclass(frozen=True)
class MDTConfig(DiTConfig):
    """DiT's hyper-parameters plus ``decode_layer``, the number of decoder blocks after the skip encoder.

    The official ``mask_ratio`` is a training option (None at inference) and is not part of this network.
    """

    decode_layer: int = 4

    @property
    def half_depth(self) -> int:
        """Blocks in each encoder half; the official code floors (depth - decode_layer) / 2."""
        return (self.depth - self.decode_layer) // 2


# MDTv2_XL_2(input_size=32, decode_layer=4) as infer_mdt.py / scripts/image_sample.py build it.
MDT_XL_2 = MDTConfig(input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=28, num_heads=16,
                     mlp_ratio=4.0, num_classes=1000, class_dropout_prob=0.1, learn_sigma=True, decode_layer=4)

# Weights the official file carries for masked training only; inference never uses them.
MDT_TRAINING_ONLY_PREFIXES = ("sideblocks.", "mask_token")
# The state-dict prefixes of the parts that form c.
MDT_EMBEDDER_PREFIXES = ("t_embedder.", "y_embedder.")


Grid = Union[int, tuple[int, int]]  # a square side, or (rows, cols) of a rectangular token grid


def grid_shape(grid: Grid) -> tuple[int, int]:
    """(rows, cols) of a token grid given as its side or as (rows, cols)."""
    return (grid, grid) if isinstance(grid, int) else (int(grid[0]), int(grid[1]))


def relative_position_index(grid: Grid) -> torch.Tensor:
    """(T, T) index into the bias table for the T = rows * cols tokens in row-major order (BEiT's layout, no cls).

    Token pairs (i, j) at rows/cols (ri, ci), (rj, cj) share the entry (ri - rj + R - 1) * (2C - 1) + ci - cj + C - 1.
    """
    n_rows, n_cols = grid_shape(grid)
    rows = torch.arange(n_rows).repeat_interleave(n_cols)  # (T,)
    cols = torch.arange(n_cols).repeat(n_rows)  # (T,)
    d_row = rows[:, None] - rows[None, :] + n_rows - 1  # (T, T)
    d_col = cols[:, None] - cols[None, :] + n_cols - 1  # (T, T)
    return d_row * (2 * n_cols - 1) + d_col


class RelativePositionBias(nn.Module):
    """A learned bias per head and relative offset; the table keeps BEiT's 3 unused cls rows."""

    def __init__(self, grid: Grid, num_heads: int):
        super().__init__()
        n_rows, n_cols = grid_shape(grid)
        self.num_tokens = n_rows * n_cols
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * n_rows - 1) * (2 * n_cols - 1) + 3, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(grid))

    def forward(self) -> torch.Tensor:
        t = self.num_tokens
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]  # (T*T, H)
        return bias.view(t, t, -1).permute(2, 0, 1)  # (H, T, T)


class RelPosAttention(DiTAttention):
    """DiT's attention (``qkv``, ``proj``) with MDT's relative position bias added to the logits."""

    def __init__(self, dim: int, num_heads: int, grid: Grid):
        super().__init__(dim, num_heads)
        self.rel_pos_bias = RelativePositionBias(grid, num_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (N, H, T, D/H)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.rel_pos_bias().to(q.dtype))  # (N, H, T, D/H)
        return self.proj(out.transpose(1, 2).reshape(n, t, d))


class MDTBlock(DiTBlock):
    """DiT's adaLN-Zero block with relative-position attention and, for skip blocks, ``skip_linear``
    that merges [x, skip] (2D -> D) before the block."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, grid: Grid, skip: bool):
        super().__init__(hidden_size, num_heads, mlp_ratio)
        self.attn = RelPosAttention(hidden_size, num_heads, grid)  # replaces DiT's bias-free attention
        self.skip_linear = nn.Linear(2 * hidden_size, hidden_size) if skip else None

    def forward(self, x: torch.Tensor, c: torch.Tensor, skip: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))  # (N, T, D)
        return super().forward(x, c)


class MDT(nn.Module):
    """MDTv2 without masking; ``forward`` returns the raw model output (N, C_out, H, W) like DiT's.

    Weights come from a checkpoint; construction only sets the position tables to the official sin-cos start.
    """

    def __init__(self, config: MDTConfig):
        super().__init__()
        self.config = config
        d, grid = config.hidden_size, config.input_size // config.patch_size

        def block(skip: bool) -> MDTBlock:
            return MDTBlock(d, config.num_heads, config.mlp_ratio, grid, skip)

        self.x_embedder = PatchEmbed(config.patch_size, config.in_channels, d)
        self.t_embedder = TimestepEmbedder(d, config.frequency_embedding_size)
        self.y_embedder = LabelEmbedder(config.num_classes, d, config.class_dropout_prob)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid, d))
        self.en_inblocks = nn.ModuleList(block(False) for _ in range(config.half_depth))
        self.en_outblocks = nn.ModuleList(block(True) for _ in range(config.half_depth))
        self.de_blocks = nn.ModuleList(block(True) for _ in range(config.decode_layer))
        self.final_layer = FinalLayer(d, config.patch_size, config.out_channels)
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, grid * grid, d))
        table = torch.from_numpy(sincos_pos_embed_2d(d, grid)).float()[None]  # (1, T, D)
        self.pos_embed.data.copy_(table)
        self.decoder_pos_embed.data.copy_(table)

    embed_parts = DiT.embed_parts  # (t_embedder(t), y_embedder(y)), each (N, D)
    conditional_vector = DiT.conditional_vector
    unpatchify = DiT.unpatchify  # (N, T, p*p*C) -> (N, C, H, W)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, hook: Optional[EmbeddingHook] = None
    ) -> torch.Tensor:
        """x (N, C, H, W), t (N,), y (N,) -> (N, C_out, H, W); ``hook`` may rewrite c before AdaLN."""
        tokens = self.x_embedder(x) + self.pos_embed  # (N, T, D)
        c = self.conditional_vector(t, y, hook)  # (N, D)
        input_tokens, skips = tokens, []
        for block in self.en_inblocks:
            tokens = block(tokens, c)
            skips.append(tokens)
        for block in self.en_outblocks:
            tokens = block(tokens, c, skips.pop())  # last in, first out: a U-shaped encoder
        tokens = tokens + self.decoder_pos_embed
        for block in self.de_blocks:
            tokens = block(tokens, c, input_tokens)
        return self.unpatchify(self.final_layer(tokens, c))
