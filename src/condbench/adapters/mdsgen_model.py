"""MDSGen (triton99/MDSGen ``masked_diffusion/models.py``) in the official state-dict layout, inference path only.

A DiT-style stack of ``depth`` adaLN-Zero blocks with a BEiT relative-position bias on the 102x8 token grid of
an AudioLDM mel latent (8, 204, 16), patch 2; ``decoder_pos_embed`` is added before block ``depth -
decode_layer``. The condition is a clip's CAVP video features (N, 32, 512):
``y = conv1d_feat(mlp_feat(feats))`` (Linear/GELU/LayerNorm per frame, then a kernel-1 Conv1d across the 32
frames, GELU, LayerNorm) and ``c = t_embedder(t) + keep * y``, where ``keep`` is 1 for the conditional branch
and 0 for the null condition (the official ``cond_mask``: the null c is t alone). The timestep embedder has 204
frequencies and takes float timesteps. The hook may rewrite c where it is formed.

The official file also holds ``sideblocks`` and ``mask_token`` (masked training only): ``adapters.loading.load_network``
leaves them out by name (``training_only_prefixes``). Each attention keeps the official persistent
``relative_position_index`` buffer, so the file's copy is checked against ours.

The official forward runs under CUDA bf16 autocast; this network runs in the dtype of its weights (float32).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
import torch
from torch import nn

from ..precision import outside_autocast

from .catalogue import MDSGEN_EMBEDDER_PREFIXES, MDSGEN_TRAINING_ONLY_PREFIXES  # noqa: F401
from .dit_model import EmbeddingHook, FinalLayer, PatchEmbed, TimestepEmbedder
from .mdt_model import MDTBlock


@dataclass(frozen=True)
class MDSGenConfig:
    """Hyper-parameters of MDSGen; the defaults are ``MDSGen_B_2(decode_layer=4)``, the released model."""

    latent_size: tuple[int, int] = (204, 16)  # (mel frames / 4, mel bins / 4) of AudioLDM's VAE latent
    patch_size: int = 2
    in_channels: int = 8
    hidden_size: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    learn_sigma: bool = True
    decode_layer: int = 4
    frequency_embedding_size: int = 204
    num_frames: int = 32  # CAVP frames (4 fps over 8 s) the Conv1d mixes
    feature_dim: int = 512  # CAVP feature size

    @property
    def out_channels(self) -> int:
        return self.in_channels * 2 if self.learn_sigma else self.in_channels

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, cols) of the token grid: 102x8 for the released model."""
        return (self.latent_size[0] // self.patch_size, self.latent_size[1] // self.patch_size)

    def to_dict(self) -> dict:
        return asdict(self)


MDSGEN_B_2 = MDSGenConfig()


def sincos_pos_embed_grid(embed_dim: int, rows: int, cols: int) -> np.ndarray:
    """The official start of the learned position tables, (rows * cols, D): first half from the column index."""

    def one_axis(dim: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)  # (M, dim/2)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid_w, grid_h = np.meshgrid(np.arange(cols, dtype=np.float32), np.arange(rows, dtype=np.float32))
    return np.concatenate([one_axis(embed_dim // 2, grid_w), one_axis(embed_dim // 2, grid_h)], axis=1)


class MDSGen(nn.Module):
    """MDSGen without masking; ``forward`` returns the raw model output (N, 2C, 204, 16) (eps and sigma range)."""

    def __init__(self, config: MDSGenConfig = MDSGEN_B_2):
        super().__init__()
        self.config = config
        d, (rows, cols) = config.hidden_size, config.grid
        self.x_embedder = PatchEmbed(config.patch_size, config.in_channels, d)
        self.t_embedder = TimestepEmbedder(d, config.frequency_embedding_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, rows * cols, d))
        self.blocks = nn.ModuleList(MDTBlock(d, config.num_heads, config.mlp_ratio, config.grid, skip=False)
                                    for _ in range(config.depth))
        self.final_layer = FinalLayer(d, config.patch_size, config.out_channels)
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, rows * cols, d))
        self.mlp_feat = nn.Sequential(nn.Linear(config.feature_dim, d), nn.GELU(), nn.LayerNorm(d, eps=1e-12))
        self.conv1d_feat = nn.Sequential(nn.Conv1d(config.num_frames, 1, kernel_size=1), nn.GELU(),
                                         nn.LayerNorm(d, eps=1e-12))
        table = torch.from_numpy(sincos_pos_embed_grid(d, rows, cols)).float()[None]  # (1, T, D)
        self.pos_embed.data.copy_(table)
        self.decoder_pos_embed.data.copy_(table)

    def condition_embedding(self, feats: torch.Tensor) -> torch.Tensor:
        """y = conv1d_feat(mlp_feat(feats)): CAVP features (N, F, 512) -> (N, D)."""
        return self.conv1d_feat(self.mlp_feat(feats)).squeeze(1)  # (N, F, D) -> (N, 1, D) -> (N, D)

    def embed_parts(self, t: torch.Tensor, feats: torch.Tensor,
                    keep: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The timestep part and the (masked) condition part of c, each (N, D); ``keep`` (N,) is 1 or 0 per row."""
        y = self.condition_embedding(feats)
        if keep is not None:
            y = keep.to(y.dtype).view(-1, 1) * y
        return self.t_embedder(t), y

    @outside_autocast
    def conditional_vector(self, t: torch.Tensor, feats: torch.Tensor, keep: Optional[torch.Tensor] = None,
                           hook: Optional[EmbeddingHook] = None) -> torch.Tensor:
        """c = t_embedder(t) + keep * y (N, D), as ``hook`` rewrites it; float32 even under autocast."""
        t_part, y_part = self.embed_parts(t, feats, keep)
        c = t_part + y_part
        return hook(c, t_part, y_part) if hook is not None else c

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, p*p*C) -> (N, C, rows*p, cols*p) for the (rows, cols) token grid."""
        (rows, cols), p, c = self.config.grid, self.config.patch_size, self.config.out_channels
        x = x.reshape(x.shape[0], rows, cols, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], c, rows * p, cols * p)

    def forward(self, x: torch.Tensor, t: torch.Tensor, feats: torch.Tensor, keep: Optional[torch.Tensor] = None,
                hook: Optional[EmbeddingHook] = None) -> torch.Tensor:
        """x (N, C, 204, 16), float t (N,), feats (N, 32, 512), keep (N,) or None (all 1) -> (N, 2C, 204, 16)."""
        tokens = self.x_embedder(x) + self.pos_embed  # (N, T, D)
        c = self.conditional_vector(t, feats, keep, hook)  # (N, D)
        decoder_start = len(self.blocks) - self.config.decode_layer
        for i, block in enumerate(self.blocks):
            if i == decoder_start:
                tokens = tokens + self.decoder_pos_embed
            tokens = block(tokens, c)
        return self.unpatchify(self.final_layer(tokens, c))
