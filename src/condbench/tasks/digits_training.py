"""``condbench train digits``: trains the digits classifier and the tiny DiT that ship with the package.

Deterministic for a given seed, torch version and thread count. ``track_every`` records the mean pairwise
cosine and nPR of c (over the 10 classes, at the sampler's first timestep) during training, the curve of
the study's Fig. 12 (bottom).
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..adapters.ddpm import GaussianDiffusion
from ..adapters.dit_model import DiT, DiTConfig
from ..analysis import embedding_statistics
from ..checkpoints import save_safetensors
from .digits import (ASSET_CLASSIFIER, ASSET_DIT, ASSET_TRACK, DIGITS_DIT_CONFIG, NUM_CLASSES, DigitsClassifier,
                     classifier_split, load_digits_images, run_classifier)
from .training_loop import log_progress, step_with_ema

Log = Callable[[str], None]


@dataclass
class DiTTraining:
    """Settings of the tiny DiT's training run."""

    steps: int = 10000
    batch_size: int = 128
    lr: float = 1e-3
    ema_decay: float = 0.999
    seed: int = 0
    track_every: int = 0  # 0: no tracking
    config: DiTConfig = field(default_factory=lambda: DIGITS_DIT_CONFIG)


CLASSIFIER_EPOCHS = 40  # the shipped classifier's; `condbench train digits --steps` does not change them


def train_classifier(seed: int = 0, epochs: int = CLASSIFIER_EPOCHS, log: Log = print) -> tuple[DigitsClassifier, dict]:
    """Train the CNN on a fixed 80% split; returns it and its held-out accuracy."""
    torch.manual_seed(seed)
    images, labels = load_digits_images()
    train_idx, test_idx = classifier_split(len(images), seed)
    model = DigitsClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        order = train_idx[torch.randperm(len(train_idx), generator=generator)]
        for start in range(0, len(order), 64):
            batch = order[start:start + 64]
            # light augmentation (1-pixel shifts) so generated digits off-centre by a pixel are still read
            shift = torch.randint(-1, 2, (2,), generator=generator).tolist()
            x = torch.roll(images[batch], shifts=shift, dims=(2, 3))
            _, logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits, labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if (epoch + 1) % 10 == 0 or epoch + 1 == epochs:
            log(f"classifier: epoch {epoch + 1}/{epochs} loss {float(loss.detach()):.4f}")
    model.eval()
    _, logits = run_classifier(model, images[test_idx])
    accuracy = float((logits.argmax(1) == labels[test_idx]).double().mean())
    log(f"classifier: held-out accuracy {accuracy:.4f} on {len(test_idx)} digits")
    return model, {"heldout_accuracy": accuracy, "epochs": epochs, "seed": seed}


@torch.no_grad()
def _track_point(model: DiT, step: int, loss: float) -> dict:
    t = torch.full((NUM_CLASSES,), 999)
    t_part, y_part = model.embed_parts(t, torch.arange(NUM_CLASSES))
    stats = embedding_statistics(t_part + y_part, keep_matrix=False).summary
    return {"step": step, "loss": loss, "cosine_mean": stats["cosine"]["mean"], "npr_mean": stats["npr"]["mean"],
            "pr_mean": stats["pr"]["mean"]}


def train_dit(settings: DiTTraining, log: Log = print) -> tuple[DiT, list[dict]]:
    """Train the tiny DiT on all 1,797 digits with DiT's hybrid loss; returns the EMA model and the track."""
    torch.manual_seed(settings.seed)
    images, labels = load_digits_images()
    model = DiT(settings.config)
    ema = copy.deepcopy(model).requires_grad_(False)
    diffusion = GaussianDiffusion.dit(1000)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0)
    generator = torch.Generator().manual_seed(settings.seed)
    track: list[dict] = []
    started = time.time()
    for step in range(1, settings.steps + 1):
        model.train()
        batch = torch.randint(0, len(images), (settings.batch_size,), generator=generator)
        x0, y = images[batch], model.y_embedder.drop_labels(labels[batch], generator)
        steps = torch.randint(0, diffusion.num_steps, (settings.batch_size,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        xt = diffusion.q_sample(x0, steps, noise)
        loss = diffusion.hybrid_loss(model(xt, steps, y), x0, xt, steps, noise).mean()
        step_with_ema(loss, optimizer, model, ema, settings.ema_decay)
        if settings.track_every and (step % settings.track_every == 0 or step == 1):
            track.append(_track_point(model, step, float(loss.detach())))
        if step % 500 == 0 or step == settings.steps:
            log_progress(log, "dit", step, settings.steps, loss, started)
    return ema.eval(), track


def train_digits(out_dir: str | Path, settings: DiTTraining, log: Log = print) -> dict[str, Path]:
    """Train both networks and write them (and the track) to ``out_dir``; returns the written paths."""
    out = Path(out_dir)
    classifier, classifier_info = train_classifier(settings.seed, log=log)
    model, track = train_dit(settings, log=log)
    recipe = {"steps": settings.steps, "batch_size": settings.batch_size, "lr": settings.lr,
              "ema_decay": settings.ema_decay, "seed": settings.seed, "torch": torch.__version__}
    paths = {"dit": out / ASSET_DIT, "classifier": out / ASSET_CLASSIFIER}
    save_safetensors(model.state_dict(), paths["dit"],
                     {"format": "condbench-dit", "config": settings.config.to_dict(), "recipe": recipe})
    save_safetensors(classifier.state_dict(), paths["classifier"],
                     {"format": "condbench-digits-classifier", **classifier_info})
    if track:
        paths["track"] = out / ASSET_TRACK
        paths["track"].write_text(json.dumps({"recipe": recipe, "every": settings.track_every, "points": track}, indent=1))
    for kind, path in paths.items():
        log(f"wrote {kind}: {path}")
    return paths
