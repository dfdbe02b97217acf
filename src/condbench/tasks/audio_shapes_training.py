"""``condbench train audio-shapes``: trains the audio classifier and the tiny MDSGen that ship with the package.

Both learn from ``train_clips`` synthetic clips of a seed the test clips never use (:data:`TRAIN_SEED`), taken
straight from the generator (rendered frames: their features equal the decoded mp4's, which a test checks; the
synthesised sound). The MDSGen network learns eps prediction on the DDPM linear-beta schedule its sampler
assumes (1e-4..0.02, 1000 steps, the float step index as time input), with conditioning dropout 0.1 (the null
condition: the video part of c zeroed, as MDSGen's ``cond_mask``). Deterministic for a given seed, torch
version and thread count.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..adapters.ddpm import GaussianDiffusion
from ..adapters.griffin_lim import SHAPES_MEL, LogMel
from ..adapters.mdsgen_model import MDSGen, MDSGenConfig
from ..checkpoints import save_safetensors
from ..datasets.shapes_audio import draw_clip, render_frames, synthesize, video_features
from .audio_shapes import ASSET_CLASSIFIER, ASSET_MDSGEN, SHAPES_MDSGEN_CONFIG, ShapesAudioClassifier
from .training_loop import log_progress, step_with_ema

Log = Callable[[str], None]
TRAIN_SEED = 1_000_003  # the training clips' seed; test clips use the task's seed (0 by default)


@dataclass
class ShapesTraining:
    """Settings of both training runs."""

    train_clips: int = 4096
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    ema_decay: float = 0.995
    cond_dropout: float = 0.1
    classifier_epochs: int = 10
    seed: int = 0
    config: MDSGenConfig = field(default_factory=lambda: SHAPES_MDSGEN_CONFIG)


def training_data(count: int, log: Log = print) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Conditions (N, 16, 12), normalised log-mels (N, 1, 32, 16) and sound classes (N,) of the training clips."""
    started = time.time()
    clips = [draw_clip(TRAIN_SEED, i) for i in range(count)]
    frames = torch.from_numpy(np.stack([render_frames(c) for c in clips]))  # (N, 16, 32, 32, 3) uint8
    conditions = torch.stack([video_features(f.permute(0, 3, 1, 2).float() / 255.0) for f in frames])
    sounds = torch.stack([torch.from_numpy(synthesize(c)) for c in clips])  # (N, L)
    mel = LogMel(SHAPES_MEL)
    mels = torch.cat([mel(chunk) for chunk in sounds.split(256)])  # (N, 1, 32, 16), in chunks: float64 STFTs
    log(f"data: {count} training clips ({time.time() - started:.0f}s)")
    return conditions, mels, torch.tensor([c.label for c in clips])


def train_classifier(mels: torch.Tensor, labels: torch.Tensor, settings: ShapesTraining,
                     log: Log = print) -> tuple[ShapesAudioClassifier, dict]:
    """The CNN on 90% of the training clips (noise in the log-mel and +-1 frame shifts as augmentation, so that
    Griffin-Lim's artefacts do not move its answer); returns it and its held-out accuracy on the other 10%."""
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    order = torch.randperm(len(mels), generator=generator)
    held = order[:len(mels) // 10]
    train = order[len(mels) // 10:]
    model = ShapesAudioClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(settings.classifier_epochs):
        model.train()
        shuffled = train[torch.randperm(len(train), generator=generator)]
        for start in range(0, len(shuffled), 128):
            batch = shuffled[start:start + 128]
            shift = int(torch.randint(-1, 2, (), generator=generator))
            x = torch.roll(mels[batch], shifts=shift, dims=2)  # (B, 1, T, M): time shift
            x = x + 0.1 * torch.randn(x.shape, generator=generator)
            _, logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits, labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(mels[held])[1].argmax(1) == labels[held]).double().mean())
    log(f"classifier: held-out accuracy {accuracy:.4f} on {len(held)} clips")
    return model, {"heldout_accuracy": accuracy, "epochs": settings.classifier_epochs, "seed": settings.seed}


def train_mdsgen(conditions: torch.Tensor, mels: torch.Tensor, settings: ShapesTraining,
                 log: Log = print) -> MDSGen:
    """eps-prediction training of the tiny MDSGen with conditioning dropout; returns the EMA network."""
    torch.manual_seed(settings.seed)
    model = MDSGen(settings.config)
    ema = copy.deepcopy(model).requires_grad_(False)
    diffusion = GaussianDiffusion.dit(1000)  # linear betas 1e-4..0.02 over 1000 steps, MDSGen's schedule
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0)
    generator = torch.Generator().manual_seed(settings.seed)
    started = time.time()
    for step in range(1, settings.steps + 1):
        model.train()
        batch = torch.randint(0, len(mels), (settings.batch_size,), generator=generator)
        x0, feats = mels[batch], conditions[batch]  # (B, 1, 32, 16), (B, 16, 12)
        keep = (torch.rand(settings.batch_size, generator=generator) >= settings.cond_dropout).float()
        # half the batch at t >= 800: there eps is nearly the input, and the sampler's data prediction divides
        # its error by alpha (0.0064 at t = 999), so the high-noise end needs the most accuracy
        low = torch.where(torch.arange(settings.batch_size) % 2 == 0, 0, 800)
        steps = low + (torch.rand(settings.batch_size, generator=generator) * (diffusion.num_steps - low)).long()
        noise = torch.randn(x0.shape, generator=generator)
        eps = model(diffusion.q_sample(x0, steps, noise), steps.float(), feats, keep)
        loss = torch.nn.functional.mse_loss(eps, noise)
        step_with_ema(loss, optimizer, model, ema, settings.ema_decay)
        if step % 250 == 0 or step == settings.steps:
            log_progress(log, "mdsgen", step, settings.steps, loss, started)
    return ema.eval()


def train_audio_shapes(out_dir: str | Path, settings: ShapesTraining, log: Log = print) -> dict[str, Path]:
    """Train both networks and write them to ``out_dir``; returns the written paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    conditions, mels, labels = training_data(settings.train_clips, log)
    classifier, classifier_info = train_classifier(mels, labels, settings, log)
    model = train_mdsgen(conditions, mels, settings, log)
    recipe = {"train_clips": settings.train_clips, "train_seed": TRAIN_SEED, "steps": settings.steps,
              "batch_size": settings.batch_size, "lr": settings.lr, "ema_decay": settings.ema_decay,
              "cond_dropout": settings.cond_dropout, "seed": settings.seed, "torch": torch.__version__}
    paths = {"mdsgen": out / ASSET_MDSGEN, "classifier": out / ASSET_CLASSIFIER}
    save_safetensors(model.state_dict(), paths["mdsgen"],
                     {"format": "condbench-mdsgen-shapes", "config": settings.config.to_dict(), "recipe": recipe})
    save_safetensors(classifier.state_dict(), paths["classifier"],
                     {"format": "condbench-shapes-audio-classifier", **classifier_info})
    for kind, path in paths.items():
        log(f"wrote {kind}: {path}")
    return paths
