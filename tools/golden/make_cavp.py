"""Golden fixture for the CAVP video encoder: Diff-Foley's official ``ResNet3dSlowOnly`` and ``encode_video``.

Usage: PYTHONPATH=src:/path/to/mmcv-lite python tools/golden/make_cavp.py --official /path/to/Diff-Foley

The official module (``inference/model/cavp_modules.py``) is written against mmcv 1.x; mmcv 1.x needs
compiling, so the script runs on mmcv-lite 2.2 + mmengine (pure Python; e.g.
``pip install --target DIR --no-deps mmcv-lite==2.2.0 mmengine addict yapf termcolor``), whose ``ConvModule``,
``build_activation_layer`` and ``NonLocal3d`` are the real mmcv classes. Only names mmcv 2 moved are aliased
from mmengine (``mmcv.runner`` checkpoint loaders, ``mmcv.utils._BatchNorm`` and ``print_log``,
``mmcv.cnn.kaiming_init``/``constant_init``); none of them takes part in the forward pass.

The network is CAVP's (``ResNet3dSlowOnly(depth=50)``, inflate (0, 0, 1, 1)) made tiny through the official
arguments ``base_channels=4, stage_blocks=(2, 1, 1, 2)``, with its projection head, every parameter and every
BatchNorm statistic redrawn; ``CAVP_Inference.encode_video(normalize=True, pool=False)`` (the official function,
on an object holding the tiny tower) runs on 6 frames of 32x40. Writes ``tests/fixtures/cavp/golden.safetensors``
(weights in the official key layout, prefixed as in the checkpoint, inputs and outputs).
"""
from __future__ import annotations

import sys
import types

import torch
from torch import nn

from condbench.checkpoints import save_safetensors
from official import official_checkout  # tools/golden/, beside this script

TINY = dict(base_channels=4, stage_blocks=(2, 1, 1, 2))
EMBED_DIM, FRAMES, HEIGHT, WIDTH = 16, 6, 32, 40


def alias_moved_mmcv_names() -> None:
    """mmcv 1.x names the official file imports that mmcv 2 moved to mmengine (none is in the forward pass)."""
    import mmcv.cnn
    import mmcv.utils
    from mmengine.logging import print_log
    from mmengine.model import constant_init, kaiming_init
    from mmengine.runner.checkpoint import _load_checkpoint, load_checkpoint
    from mmengine.utils.dl_utils.parrots_wrapper import _BatchNorm

    mmcv.cnn.kaiming_init, mmcv.cnn.constant_init = kaiming_init, constant_init
    mmcv.utils._BatchNorm, mmcv.utils.print_log = _BatchNorm, print_log
    runner = types.ModuleType("mmcv.runner")
    runner._load_checkpoint, runner.load_checkpoint = _load_checkpoint, load_checkpoint
    sys.modules["mmcv.runner"] = runner


def randomize(module: nn.Module, seed: int) -> None:
    """Every parameter and BatchNorm statistic redrawn (fan-in scaled so 20 layers stay finite)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if p.dim() > 1:
                p.copy_(noise / p[0].numel() ** 0.5)
            else:
                p.copy_((1.0 if name.endswith("bn.weight") else 0.0) + 0.2 * noise)
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.2 * torch.randn(b.shape, generator=gen))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen))


def main() -> None:
    args, commit = official_checkout(__doc__, "github.com/luosiallen/Diff-Foley", "tests/fixtures/cavp")
    alias_moved_mmcv_names()
    sys.path.insert(0, str(args.official / "inference"))
    from model.cavp_model import CAVP_Inference
    from model.cavp_modules import ResNet3dSlowOnly

    torch.set_grad_enabled(False)
    tower = types.SimpleNamespace(video_encode="Slowonly_pool",
                                  video_encoder=ResNet3dSlowOnly(depth=50, pretrained=None, **TINY))
    tower.video_encoder.eval()  # the official train() override returns None, so no chaining
    tower.video_project_head = nn.Linear(tower.video_encoder.feat_dim, EMBED_DIM)
    modules = nn.ModuleDict({"video_encoder": tower.video_encoder, "video_project_head": tower.video_project_head})
    randomize(modules, seed=3)
    video = torch.rand(2, FRAMES, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(4))
    features = CAVP_Inference.encode_video(tower, video, normalize=True, pool=False)
    state = {f"module.{k}": v for k, v in modules.state_dict().items()}  # as the training checkpoint names them
    meta = {"repo": "github.com/luosiallen/Diff-Foley", "commit": commit, "config": TINY, "embed_dim": EMBED_DIM,
            "command": "PYTHONPATH=src:<mmcv-lite dir> python tools/golden/make_cavp.py --official <Diff-Foley checkout>"}
    save_safetensors({**state, "input.video": video, "output.features": features}, args.out / "golden.safetensors", meta)


if __name__ == "__main__":
    main()
