"""``condbench train pose-digits``: trains the tiny X-MDPT that ships with the package (``xmdpt-digits``).

The network learns to generate each TRAIN-split target from its condition: a random other digit of the same
class as the source (drawn afresh every step) and the target's ink mask as the pose. The condition part of c is
zeroed with probability ``cond_dropout`` (X-MDPT's ``cond_mask``), so the null condition that guidance needs
exists. Loss: DiT's hybrid loss (eps MSE + the VB term for the learned sigma) on 1000 linear-beta steps; the
EMA weights are saved. Training runs on one CPU thread (a tiny network gains nothing from more, and the result
then does not depend on the core count): deterministic for a given seed, torch version and CPU. The shipped
file took 3,000 steps: 15.5 minutes on a 2-core machine shared with other jobs (load average about 10).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..adapters.ddpm import GaussianDiffusion
from ..adapters.xmdpt_model import XMDPT, XMDPTConfig
from ..checkpoints import save_safetensors
from ..datasets.digit_pairs import DigitPairs, pose_map
from .pose_digits import ASSET_XMDPT, XMDPT_DIGITS_CONFIG, digit_conditions
from .training_loop import log_progress, step_with_ema

Log = Callable[[str], None]
TRAIN_THREADS = 1


@dataclass
class PoseDigitsTraining:
    """Settings of the tiny X-MDPT's training run."""

    steps: int = 4000
    batch_size: int = 128
    lr: float = 1e-3
    ema_decay: float = 0.999
    cond_dropout: float = 0.1
    seed: int = 0
    config: XMDPTConfig = field(default_factory=lambda: XMDPT_DIGITS_CONFIG)

    def recipe(self) -> dict:
        return {"steps": self.steps, "batch_size": self.batch_size, "lr": self.lr, "ema_decay": self.ema_decay,
                "cond_dropout": self.cond_dropout, "seed": self.seed, "torch": torch.__version__, "threads": TRAIN_THREADS}


def random_sources(pairs: DigitPairs, targets: list[int], generator: torch.Generator) -> list[int]:
    """For each target digit, another digit of its class in the split, drawn from ``generator``."""
    sources = []
    for target in targets:
        candidates = pairs.candidates(target)
        sources.append(candidates[int(torch.randint(len(candidates), (1,), generator=generator))])
    return sources


def train_pose_digits(settings: PoseDigitsTraining, log: Log = print) -> XMDPT:
    """Train the tiny X-MDPT on the train split's pairs (on one thread); returns the EMA network."""
    threads = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    try:
        return _train(settings, log)
    finally:
        torch.set_num_threads(threads)


def _train(settings: PoseDigitsTraining, log: Log) -> XMDPT:
    torch.manual_seed(settings.seed)
    pairs = DigitPairs("train", settings.seed)
    model = XMDPT(settings.config)
    ema = copy.deepcopy(model).requires_grad_(False)
    diffusion = GaussianDiffusion.dit(1000)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0)
    generator = torch.Generator().manual_seed(settings.seed)
    members = torch.tensor(pairs.members)
    started = time.time()
    for step in range(1, settings.steps + 1):
        model.train()
        targets = members[torch.randint(len(members), (settings.batch_size,), generator=generator)].tolist()
        sources = random_sources(pairs, targets, generator)
        x0, source = pairs.images[targets], pairs.images[sources]  # (B, 1, 8, 8) in [-1, 1]
        cond = digit_conditions(source, pose_map(x0))
        keep = (torch.rand(settings.batch_size, generator=generator) >= settings.cond_dropout).float()  # (B,)
        y = model.condition_embedding(cond["pose_features"], cond["source_features"], cond["source_latent"])
        t = torch.randint(0, diffusion.num_steps, (settings.batch_size,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        xt = diffusion.q_sample(x0, t, noise)
        loss = diffusion.hybrid_loss(model(xt, t, y * keep[:, None]), x0, xt, t, noise).mean()
        step_with_ema(loss, optimizer, model, ema, settings.ema_decay)
        if step % 250 == 0 or step == settings.steps:
            log_progress(log, "xmdpt-digits", step, settings.steps, loss, started)
    return ema.eval()


def write_pose_digits(out_dir: str | Path, settings: PoseDigitsTraining, log: Log = print) -> Path:
    """Train the network and write it to ``out_dir/digits_xmdpt.safetensors``; returns the path."""
    model = train_pose_digits(settings, log)
    path = Path(out_dir) / ASSET_XMDPT
    save_safetensors(model.state_dict(), path, {"format": "condbench-xmdpt", "config": settings.config.to_dict(),
                                                "recipe": settings.recipe()})
    log(f"wrote xmdpt-digits: {path}")
    return path
