"""What every shipped tiny model's training loop shares: one optimizer step with an EMA update, and progress."""
from __future__ import annotations

import time
from typing import Callable

import torch


def step_with_ema(loss: torch.Tensor, optimizer: torch.optim.Optimizer, model: torch.nn.Module,
                  ema: torch.nn.Module, decay: float) -> None:
    """Back-propagate ``loss``, step ``optimizer``, then move ``ema``'s parameters towards ``model``'s."""
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        for p_ema, p in zip(ema.parameters(), model.parameters()):
            p_ema.lerp_(p, 1 - decay)


def log_progress(log: Callable[[str], None], name: str, step: int, steps: int, loss: torch.Tensor,
                 started: float) -> None:
    """One progress line: step, loss, elapsed seconds and the estimated seconds left."""
    elapsed = time.time() - started
    log(f"{name}: step {step}/{steps} loss {float(loss.detach()):.4f} "
        f"({elapsed:.0f}s, eta {elapsed / step * (steps - step):.0f}s)")
