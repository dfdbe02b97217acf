"""The U-ViT network in the official state-dict layout (baofff/U-ViT ``libs/uvit.py``).

U-ViT has no AdaLN: the label embedding and the timestep embedding enter as two extra tokens in front of the
patch tokens, in the order [label, time, patches], and a ViT with long skips (``in_blocks``, ``mid_block``,
``out_blocks``) processes them. The study's conditional vector for U-ViT is the sum of those two tokens,
``c = time_token + label_token`` (with ``mlp_time_embed=False`` the time token is the raw D-dim sinusoid).

The hook rewrites c; since the network consumes the two tokens and not their sum, :func:`tokens_from_c`
maps the rewritten c back onto them (see its docstring for the rule).

Key layout (strict): ``patch_embed.proj``, ``time_embed.{0,2}`` (only with ``mlp_time_embed``),
``label_emb.weight`` (num_classes, D; the last row is the null class), ``pos_embed`` (1, 2 + T, D),
``{in_blocks.N, mid_block, out_blocks.N}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``,
``out_blocks.N.skip_linear``, ``norm``, ``decoder_pred``, ``final_layer`` (only with ``conv``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import torch
from torch import nn

from ..precision import outside_autocast
from .dit_model import Attention, DiT, EmbeddingHook, Mlp, PatchEmbed, timestep_sinusoid


@dataclass(frozen=True)
class UViTConfig:
    """The official ``UViT`` constructor arguments; defaults are ``configs/imagenet256_uvit_huge.py``."""

    img_size: int = 32
    patch_size: int = 2
    in_chans: int = 4
    embed_dim: int = 1152
    depth: int = 28
    num_heads: int = 16
    mlp_ratio: float = 4.0
    qkv_bias: bool = False
    mlp_time_embed: bool = False
    num_classes: int = 1001  # label_emb rows, the null class (row num_classes - 1) included
    conv: bool = False
    skip: bool = True

    # Names the class-conditional adapter reads (DiT's vocabulary).
    @property
    def hidden_size(self) -> int:
        return self.embed_dim

    @property
    def input_size(self) -> int:
        return self.img_size

    @property
    def in_channels(self) -> int:
        return self.in_chans

    @property
    def out_channels(self) -> int:
        return self.in_chans  # noise prediction only

    @property
    def class_dropout_prob(self) -> float:
        """U-ViT trains with p_uncond 0.1 (``config.dataset.p_uncond``); its table always has the null row."""
        return 0.1

    def to_dict(self) -> dict:
        return asdict(self)


class UViTAttention(Attention):
    """DiT's fused-qkv attention with U-ViT's optional qkv bias (off in the released models)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool):
        super().__init__(dim, num_heads)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)


class UViTMlp(Mlp):
    """fc1 -> exact GELU -> fc2 (U-ViT uses nn.GELU(), not DiT's tanh approximation)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__(dim, hidden)
        self.act = nn.GELU()


class UViTBlock(nn.Module):
    """Pre-norm transformer block; an ``out_blocks`` block first merges [x, skip] with ``skip_linear`` (2D -> D)."""

    def __init__(self, config: UViTConfig, skip: bool):
        super().__init__()
        d = config.embed_dim
        self.norm1 = nn.LayerNorm(d)
        self.attn = UViTAttention(d, config.num_heads, config.qkv_bias)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = UViTMlp(d, int(d * config.mlp_ratio))
        self.skip_linear = nn.Linear(2 * d, d) if skip else None

    def forward(self, x: torch.Tensor, skip: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))  # (N, L, D)
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def tokens_from_c(c_new: torch.Tensor, c: torch.Tensor, time_token: torch.Tensor,
                  label_token: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Map a rewritten c (N, D) back onto the two tokens it is the sum of; returns (time, label), each (N, D).

    The rule, per row: a row equal to c is left as is (bit-identical tokens); a row equal to the label token
    (``drop-t``) keeps the label token and zeroes the time token; a row equal to the time token
    (``drop-cond``) keeps the time token and zeroes the label token; any other row is a mask (tail, head,
    topk, random): every dimension where c_new differs from c must be 0 and is zeroed in BOTH tokens.
    Anything else cannot be expressed on the tokens and raises ValueError.
    """
    same = c_new == c  # (N, D)
    changed = ~same.all(dim=1, keepdim=True)  # (N, 1)
    only_label = changed & (c_new == label_token).all(dim=1, keepdim=True)
    only_time = changed & ~only_label & (c_new == time_token).all(dim=1, keepdim=True)
    masked = ~(only_label | only_time)
    if bool((masked & ~same & (c_new != 0)).any()):
        raise ValueError("the hook's c is neither c with some dimensions zeroed nor one of its two parts; "
                         "U-ViT cannot map it onto its time and label tokens")
    keep_time = torch.where(masked, same, only_time)  # (N, D)
    keep_label = torch.where(masked, same, only_label)
    zero = torch.zeros((), dtype=c.dtype, device=c.device)
    return torch.where(keep_time, time_token, zero), torch.where(keep_label, label_token, zero)


class UViT(nn.Module):
    """Class-conditional U-ViT; ``forward`` returns the predicted noise (N, C, H, W)."""

    extras = 2  # the label token and the time token in front of the patches

    def __init__(self, config: UViTConfig):
        super().__init__()
        if config.num_classes <= 0:
            raise ValueError("condbench's U-ViT is class-conditional: num_classes must be positive")
        self.config = config
        d = config.embed_dim
        self.patch_embed = PatchEmbed(config.patch_size, config.in_chans, d)
        self.time_embed = (nn.Sequential(nn.Linear(d, 4 * d), nn.SiLU(), nn.Linear(4 * d, d))
                           if config.mlp_time_embed else nn.Identity())
        self.label_emb = nn.Embedding(config.num_classes, d)
        num_patches = (config.img_size // config.patch_size) ** 2
        self.pos_embed = nn.Parameter(torch.zeros(1, self.extras + num_patches, d))
        self.in_blocks = nn.ModuleList(UViTBlock(config, skip=False) for _ in range(config.depth // 2))
        self.mid_block = UViTBlock(config, skip=False)
        self.out_blocks = nn.ModuleList(UViTBlock(config, skip=config.skip) for _ in range(config.depth // 2))
        self.norm = nn.LayerNorm(d)
        self.decoder_pred = nn.Linear(d, config.patch_size ** 2 * config.in_chans)
        self.final_layer = (nn.Conv2d(config.in_chans, config.in_chans, 3, padding=1) if config.conv
                            else nn.Identity())

    def time_token(self, t: torch.Tensor) -> torch.Tensor:
        """(N,) in the model's units (t_continuous * 1000) -> (N, D): the sinusoid, through the MLP if any."""
        return self.time_embed(timestep_sinusoid(t, self.config.embed_dim))

    def embed_parts(self, t: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The time token and the label token, each (N, D)."""
        return self.time_token(t), self.label_emb(y)

    unpatchify = DiT.unpatchify  # (N, T, p*p*C), features ordered (p1, p2, C) -> (N, C, H, W)

    @outside_autocast
    def condition_tokens(self, t: torch.Tensor, y: torch.Tensor,
                         hook: Optional[EmbeddingHook] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The time and label tokens (N, D) each, as ``hook`` rewrites their sum c; float32 even under autocast."""
        time_token, label_token = self.embed_parts(t, y)
        if hook is None:
            return time_token, label_token
        c = time_token + label_token  # (N, D): the conditional vector the study measures
        return tokens_from_c(hook(c, time_token, label_token), c, time_token, label_token)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, hook: Optional[EmbeddingHook] = None
    ) -> torch.Tensor:
        """x (N, C, H, W), t (N,), y (N,) -> (N, C, H, W); ``hook`` may rewrite c = time + label token."""
        patches = self.patch_embed(x)  # (N, T, D)
        time_token, label_token = self.condition_tokens(t, y, hook)  # each (N, D)
        tokens = torch.cat([label_token[:, None], time_token[:, None], patches], dim=1) + self.pos_embed  # (N, 2+T, D)
        skips = []
        for block in self.in_blocks:
            tokens = block(tokens)
            skips.append(tokens)
        tokens = self.mid_block(tokens)
        for block in self.out_blocks:
            tokens = block(tokens, skips.pop())  # last in, first out: the long skips
        out = self.decoder_pred(self.norm(tokens))[:, self.extras:]  # (N, T, p*p*C)
        return self.final_layer(self.unpatchify(out))
