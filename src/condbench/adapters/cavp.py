"""Diff-Foley's CAVP video encoder (luosiallen/Diff-Foley ``inference/model/cavp_model.py``), the condition MDSGen reads.

``CAVP_Inference.encode_video(video, normalize=True, pool=False)`` as ``inference/demo_util.py``
(``Extract_CAVP_Features``) calls it: frames (N, T, 3, 224, 224) in [0, 1] (PIL bilinear resize, ``ToTensor``,
no mean/std) -> a SlowOnly ResNet3d-50 (mmaction2's ``ResNet3dSlowOnly``: stem conv 1x7x7, max-pool, bottleneck
stages (3, 4, 6, 3), kernels inflated to 3x1x1 in stages 3 and 4, no temporal stride, so one output per frame)
-> spatial mean -> ``video_project_head`` Linear(2048, 512) -> L2 normalised per frame: (N, T, 512).

The temporal 3x1x1 kernels see neighbouring frames (and zero padding at both ends), so a frame's feature
depends on the frames around it: MDSGen's shipped features were computed over a whole 10 s clip (40 frames),
of which it keeps the first 32. :meth:`CAVPEncoder.encode` takes all the frames it is given and returns the
first 32.

Keys are the official ones under ``video_encoder.`` and ``video_project_head.`` (mmcv ``ConvModule``: ``conv``,
``bn``); the audio tower of the checkpoint (``spec_encoder.``, ``logit_scale``) is dropped by name.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import file_sha256, load_state_dict, load_strict
from ..hub import resolve_weights
from ..metrics.weight_files import CAVP_WEIGHTS

# The audio tower and contrastive temperature of the CAVP checkpoint; the video encoder never uses them.
CAVP_AUDIO_PREFIXES = ("spec_encoder.", "spec_project_head.", "logit_scale")
CAVP_FRAMES = 32  # the frames MDSGen keeps: 4 fps x 8 s


@dataclass(frozen=True)
class CAVPConfig:
    """The SlowOnly ResNet3d's sizes; the defaults are CAVP's (depth 50, Stage1_CAVP.yaml embed_dim 512)."""

    base_channels: int = 64
    stage_blocks: tuple[int, ...] = (3, 4, 6, 3)
    inflate: tuple[int, ...] = (0, 0, 1, 1)  # stages whose first conv is 3x1x1 (temporal)
    embed_dim: int = 512

    @property
    def feature_dim(self) -> int:
        return 4 * self.base_channels * 2 ** (len(self.stage_blocks) - 1)

    def to_dict(self) -> dict:
        return asdict(self)


class ConvBN(nn.Module):
    """Conv3d (no bias) -> BatchNorm3d -> optional ReLU, in mmcv ``ConvModule``'s key layout (``conv``, ``bn``)."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0, relu: bool = True):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm3d(cout)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class Bottleneck3d(nn.Module):
    """1x1x1 (or 3x1x1 when inflated) -> 1x3x3 with the spatial stride -> 1x1x1 (x4 channels), plus the shortcut."""

    expansion = 4

    def __init__(self, cin: int, planes: int, spatial_stride: int, inflate: bool):
        super().__init__()
        t = 3 if inflate else 1
        self.conv1 = ConvBN(cin, planes, (t, 1, 1), padding=(t // 2, 0, 0))
        self.conv2 = ConvBN(planes, planes, (1, 3, 3), stride=(1, spatial_stride, spatial_stride), padding=(0, 1, 1))
        self.conv3 = ConvBN(planes, planes * self.expansion, 1, relu=False)
        needs_projection = spatial_stride != 1 or cin != planes * self.expansion
        self.downsample = (ConvBN(cin, planes * self.expansion, 1, stride=(1, spatial_stride, spatial_stride),
                                  relu=False) if needs_projection else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(self.conv3(self.conv2(self.conv1(x))) + identity)


class SlowOnlyResNet3d(nn.Module):
    """Video (N, 3, T, H, W) -> per-frame features (N, T, C) (the official ``adaptive_pool`` is a spatial mean)."""

    def __init__(self, config: CAVPConfig):
        super().__init__()
        base = config.base_channels
        self.conv1 = ConvBN(3, base, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3))
        self.maxpool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        cin, self.res_layers = base, []
        for i, blocks in enumerate(config.stage_blocks):
            planes = base * 2 ** i
            stride = 1 if i == 0 else 2
            layer = [Bottleneck3d(cin, planes, stride, bool(config.inflate[i]))]
            cin = planes * Bottleneck3d.expansion
            layer += [Bottleneck3d(cin, planes, 1, bool(config.inflate[i])) for _ in range(1, blocks)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
            self.res_layers.append(f"layer{i + 1}")

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(video))  # (N, C0, T, H/4, W/4)
        for name in self.res_layers:
            x = getattr(self, name)(x)
        return x.mean(dim=(-2, -1)).transpose(1, 2)  # (N, C, T) -> (N, T, C)


class CAVPEncoder(nn.Module):
    """CAVP's video tower: frames (N, T, 3, H, W) in [0, 1] -> L2-normalised features (N, T, embed_dim)."""

    def __init__(self, config: CAVPConfig = CAVPConfig()):
        super().__init__()
        self.config = config
        self.video_encoder = SlowOnlyResNet3d(config)
        self.video_project_head = nn.Linear(config.feature_dim, config.embed_dim)
        self.checkpoint: dict = {}

    @classmethod
    def from_checkpoint(cls, path: Optional[str | Path] = None, config: CAVPConfig = CAVPConfig()) -> "CAVPEncoder":
        """The encoder with ``cavp_epoch66.ckpt`` (``path``, the cache, or a one-time download from Hugging Face).

        The file is a training checkpoint (``state_dict``, keys maybe prefixed ``module.``); the video tower
        loads strictly, the audio tower is dropped by name.
        """
        path = resolve_weights(CAVP_WEIGHTS, path, what="CAVP video encoder checkpoint", option="cavp=PATH")
        state = load_state_dict(path, key="state_dict")
        state = {k.removeprefix("module."): v for k, v in state.items()}
        encoder = cls(config)
        load_strict(encoder, state, str(path), ignore_prefixes=CAVP_AUDIO_PREFIXES)
        encoder.checkpoint = {"path": str(Path(path).resolve()), "sha256": file_sha256(path)}
        return encoder.eval()

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``encode_video(normalize=True, pool=False)``: (N, T, 3, H, W) -> (N, T, embed_dim)."""
        features = self.video_encoder(frames.permute(0, 2, 1, 3, 4))  # (N, T, C)
        return F.normalize(self.video_project_head(features), dim=-1)

    @torch.no_grad()
    def encode(self, frames: torch.Tensor, keep: int = CAVP_FRAMES) -> torch.Tensor:
        """MDSGen's condition: frames (N, T >= keep, 3, 224, 224) in [0, 1], all of them encoded together (the
        temporal kernels see the neighbours), the first ``keep`` returned: (N, keep, 512)."""
        if frames.dim() != 5 or frames.shape[2] != 3 or frames.shape[1] < keep:
            raise ValueError(f"CAVP encodes frames (N, T, 3, H, W) with T >= {keep} (4 fps from the clip start), "
                             f"got {tuple(frames.shape)}")
        if frames.dtype == torch.uint8 or float(frames.max()) > 1.0 or float(frames.min()) < 0.0:
            raise ValueError("CAVP takes frames as floats in [0, 1] (ToTensor of RGB images, no mean/std)")
        weight = self.video_project_head.weight
        return self(frames.to(weight.device, weight.dtype))[:, :keep]

    def describe(self) -> dict:
        return {"encoder": "CAVP video tower (Diff-Foley, SlowOnly ResNet3d-50)", "config": self.config.to_dict(),
                "input": "RGB frames at 4 fps from the clip start, 224x224 PIL bilinear, [0, 1]",
                "checkpoint": self.checkpoint}
