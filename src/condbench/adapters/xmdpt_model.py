"""X-MDPT (trungpx/xmdpt ``masked_diffusion/models.py``, class ``XMDPT``) in the official state-dict layout,
inference path only.

The network is a plain stack of ``depth`` DiT blocks with a BEiT relative-position bias in every attention
(MDT's block, see ``mdt_model``); the learned ``decoder_pos_embed`` is added to the tokens before block
``depth - decode_layer``. Both position tables are learned parameters. The condition is a (target pose,
source image) pair, seen through three heads::

    pose   = LN(GELU(conv1d_pose(LN(GELU(mlp_dino_pose(pose_features))))))      (N, 257, 768)  -> (N, 1, D)
    global = LN(GELU(conv1d_global(LN(GELU(mlp_dino_img(source_features))))))  (N, 257, 1536) -> (N, 1, D)
    local  = LN(GELU(conv1d_local(x_embedder(source_latent) + pos_embed)))      (N, 4, 32, 32) -> (N, 1, D)
    y      = mlp_final(pose + global + local)                                   (N, D)

where each ``conv1d_*`` is a 1x1 Conv1d over the token axis (tokens as channels). c = t_embedder(t) + y * mask;
the unconditional branch of guidance has mask 0, so its condition part is the zero vector and c = t.

Here :meth:`XMDPT.condition_embedding` computes y once per batch of pairs (it does not depend on x or t), and
``forward(x, t, y, hook)`` takes that y (zero rows for the null condition) like DiT's forward takes labels.

The official forward also pushes the source latent's tokens through every block (``src_img = block(src_img, c)``
under ``no_grad``) and then discards them: they serve only the masked-training side interpolator. That stream
is not run here: the output is the same and a sampling step costs about half (see ``tests/test_xmdpt_parity.py``).
Training-only weights in the released file (``sideblocks``, ``sideblocks_cross``, ``mask_token``) are not
built: ``adapters.loading.load_network`` leaves them out (``training_only_prefixes``). Every kept attention has the file's
``relative_position_index`` buffer, loaded strictly.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import torch
from torch import nn

from .catalogue import XMDPT_EMBEDDER_PREFIXES, XMDPT_SIZES, XMDPT_TRAINING_ONLY_PREFIXES  # noqa: F401
from .dit_model import DiT, EmbeddingHook, FinalLayer, PatchEmbed, TimestepEmbedder, sincos_pos_embed_2d
from .mdt_model import MDTBlock


@dataclass(frozen=True)
class XMDPTConfig:
    """Hyper-parameters of an X-MDPT network; the condition widths are fixed by the DINOv2 encoders."""

    input_size: int = 32  # latent side; 256-px images through the SD VAE (the only released resolution)
    patch_size: int = 2
    in_channels: int = 4
    hidden_size: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    learn_sigma: bool = True
    decode_layer: int = 2  # infer_xmdpt.py builds every size with decode_layer=2
    frequency_embedding_size: int = 256
    pose_dim: int = 768  # DINOv2 ViT-B/14 width (pose skeleton)
    source_dim: int = 1536  # DINOv2 ViT-g/14 width (source image)
    feature_tokens: int = 257  # CLS + 16x16 patch tokens of a 224-px DINOv2 input

    @property
    def out_channels(self) -> int:
        return self.in_channels * 2 if self.learn_sigma else self.in_channels

    @property
    def grid(self) -> int:
        return self.input_size // self.patch_size

    def to_dict(self) -> dict:
        return asdict(self)


def xmdpt_config(size: str, **overrides) -> XMDPTConfig:
    """The official X-MDPT-``size``/2 configuration (``size`` in S, B, L, XL), with ``overrides``."""
    if size not in XMDPT_SIZES:
        raise ValueError(f"unknown X-MDPT size {size!r}; the official sizes are {', '.join(XMDPT_SIZES)}")
    return XMDPTConfig(**{**XMDPT_SIZES[size], **overrides})


def _projection(in_features: int, hidden: int) -> nn.Sequential:
    """Linear -> GELU (erf) -> LayerNorm(eps 1e-12), the official ``mlp_*`` heads."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.GELU(), nn.LayerNorm(hidden, eps=1e-12))


def _token_pool(tokens: int, hidden: int) -> nn.Sequential:
    """Conv1d(tokens -> 1, k=1) over the token axis -> GELU -> LayerNorm, the official ``conv1d_*`` heads."""
    return nn.Sequential(nn.Conv1d(tokens, 1, kernel_size=1), nn.GELU(), nn.LayerNorm(hidden, eps=1e-12))


class XMDPT(nn.Module):
    """X-MDPT without masking or the unused source stream; ``forward`` returns the raw output (N, C_out, H, W).

    Weights come from a checkpoint; construction only sets the position tables to the official sin-cos start.
    """

    def __init__(self, config: XMDPTConfig):
        super().__init__()
        self.config = config
        d, grid = config.hidden_size, config.grid
        self.x_embedder = PatchEmbed(config.patch_size, config.in_channels, d)
        self.t_embedder = TimestepEmbedder(d, config.frequency_embedding_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid, d))
        self.blocks = nn.ModuleList(MDTBlock(d, config.num_heads, config.mlp_ratio, grid, skip=False)
                                    for _ in range(config.depth))
        self.final_layer = FinalLayer(d, config.patch_size, config.out_channels)
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, grid * grid, d))
        self.mlp_dino_pose = _projection(config.pose_dim, d)
        self.mlp_dino_img = _projection(config.source_dim, d)
        self.conv1d_pose = _token_pool(config.feature_tokens, d)
        self.conv1d_global = _token_pool(config.feature_tokens, d)
        self.conv1d_local = _token_pool(grid * grid, d)
        self.mlp_final = _projection(d, d)
        table = torch.from_numpy(sincos_pos_embed_2d(d, grid)).float()[None]  # (1, T, D)
        self.pos_embed.data.copy_(table)
        self.decoder_pos_embed.data.copy_(table)

    @property
    def decoder_start(self) -> int:
        """Index of the first decoder block, before which ``decoder_pos_embed`` is added."""
        return self.config.depth - self.config.decode_layer

    def condition_embedding(self, pose_features: torch.Tensor, source_features: torch.Tensor,
                            source_latent: torch.Tensor) -> torch.Tensor:
        """The condition part y of c for N pairs (before the guidance mask): (N, 257, 768), (N, 257, 1536),
        (N, 4, H, W) -> (N, D)."""
        pose = self.conv1d_pose(self.mlp_dino_pose(pose_features))  # (N, 1, D)
        appearance = self.conv1d_global(self.mlp_dino_img(source_features))  # (N, 1, D)
        local = self.conv1d_local(self.x_embedder(source_latent) + self.pos_embed)  # (N, 1, D)
        return self.mlp_final((pose + appearance + local)[:, 0])  # (N, D)

    def embed_parts(self, t: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The timestep part and the condition part of c, each (N, D); y is already the condition part."""
        return self.t_embedder(t), y

    conditional_vector = DiT.conditional_vector  # c = t_part + y, as ``hook`` rewrites it
    unpatchify = DiT.unpatchify  # (N, T, p*p*C) -> (N, C, H, W)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor,
                hook: Optional[EmbeddingHook] = None) -> torch.Tensor:
        """x (N, C, H, W), t (N,), y (N, D) condition parts (zero rows: null) -> (N, C_out, H, W)."""
        tokens = self.x_embedder(x) + self.pos_embed  # (N, T, D)
        c = self.conditional_vector(t, y, hook)  # (N, D)
        for i, block in enumerate(self.blocks):
            if i == self.decoder_start:
                tokens = tokens + self.decoder_pos_embed
            tokens = block(tokens, c)
        return self.unpatchify(self.final_layer(tokens, c))
