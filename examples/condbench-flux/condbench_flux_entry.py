"""The condbench-flux plugin's registry entry, torch-free: ``condbench list`` imports only this module (the entry
point names it); the adapter module ``condbench_flux`` (torch, diffusers) is imported when the model is built or
its contract is checked."""
from __future__ import annotations

from condbench.registry import LazyFactory, ModelEntry

REPO = "black-forest-labs/FLUX.1-schnell"


def entry() -> ModelEntry:
    """The registry entry the ``condbench.adapters`` entry point names."""
    return ModelEntry("flux-schnell", "text", 3072, "flow-match Euler 4 steps (FluxPipeline schedule), no CFG",
                      f"https://huggingface.co/{REPO}", LazyFactory("condbench_flux", "load_flux"), 4, 1.0,
                      contract_case=LazyFactory("condbench_flux", "contract_case"))
