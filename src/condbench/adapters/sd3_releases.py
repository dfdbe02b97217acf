"""The released SD3-family pipelines and where their files are (torch-free: ``condbench list`` and the
missing-files preflight read them without importing torch; :mod:`condbench.adapters.sd3` runs them)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..checkpoints import CheckpointNotFoundError, FileSetting
from ..hub import local_files_only, offline


@dataclass(frozen=True)
class SD3Release:
    """A released SD3-family pipeline and its model card's sampling defaults."""

    name: str
    repo: str
    num_steps: int
    cfg_scale: float
    dtype: str  # the dtype of the model card's example
    c_dim: int
    defaults_source: str  # where num_steps / cfg_scale / dtype come from


SD3_RELEASES: tuple[SD3Release, ...] = (
    # Model card of stabilityai/stable-diffusion-3-medium-diffusers, diffusers example: torch.float16,
    # negative_prompt="", num_inference_steps=28, guidance_scale=7.0 (also the pipeline's __call__ defaults).
    SD3Release("sd3-medium", "stabilityai/stable-diffusion-3-medium-diffusers", 28, 7.0, "float16", 1536,
               "model card diffusers example (28 steps, guidance 7.0, float16); = StableDiffusion3Pipeline defaults"),
    # Model card of stabilityai/stable-diffusion-3.5-medium, diffusers example: torch.bfloat16,
    # num_inference_steps=40, guidance_scale=4.5 (read in a public copy of the card: the repo is gated).
    SD3Release("sd3.5-medium", "stabilityai/stable-diffusion-3.5-medium", 40, 4.5, "bfloat16", 1536,
               "model card diffusers example (40 steps, guidance 4.5, bfloat16)"),
    # Model card of stabilityai/stable-diffusion-3.5-large, diffusers example: torch.bfloat16,
    # num_inference_steps=28, guidance_scale=3.5 (read in public copies of the card's snippet: the repo is gated).
    SD3Release("sd3.5-large", "stabilityai/stable-diffusion-3.5-large", 28, 3.5, "bfloat16", 2432,
               "model card diffusers example (28 steps, guidance 3.5, bfloat16)"),
)

PIPELINE_PARTS = ("model_index.json", "scheduler", "transformer", "vae", "text_encoder", "tokenizer",
                  "text_encoder_2", "tokenizer_2")
T5_PARTS = ("text_encoder_3", "tokenizer_3")
TEXT_ENCODER_PARTS = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")


def _needed_parts(t5: bool) -> tuple[str, ...]:
    return PIPELINE_PARTS + (T5_PARTS if t5 else ())


def resolve_pipeline_folder(release: SD3Release, path: Optional[str | Path] = None, t5: bool = True) -> Path:
    """The local diffusers folder of ``release``: ``path``, else the Hugging Face cache, else a one-time download.

    Raises CheckpointNotFoundError naming the repository, that it is gated, and how to give a local folder.
    """
    how = (f"the repository is gated: accept its licence at https://huggingface.co/{release.repo} and log in "
           f"(`hf auth login`), then run once online or `hf download {release.repo}`; or give a local diffusers "
           f"folder (model_index.json, {', '.join(p for p in _needed_parts(t5) if p != 'model_index.json')}) as the "
           f"suite's model_options: {{{release.name}: {{path: DIR}}}}"
           + ("" if t5 else " (t5: false, so text_encoder_3/tokenizer_3 are not needed)"))
    settings = (FileSetting(("model_options", release.name, "path"), f"/path/to/{release.repo.split('/')[-1]}",
                            note="a local diffusers folder"),)
    if path is not None:
        folder = Path(path).expanduser()
        missing = [p for p in _needed_parts(t5) if not (folder / p).exists()]
        if missing:
            raise CheckpointNotFoundError(
                f"{release.name} pipeline not found: the folder {folder.resolve()} lacks {', '.join(missing)}.\n"
                f"How to provide it: {how}.", settings)
        return folder
    from huggingface_hub import snapshot_download
    from huggingface_hub.constants import HF_HUB_CACHE

    patterns = [p if p.endswith(".json") else f"{p}/*" for p in _needed_parts(t5)]
    try:
        return Path(snapshot_download(release.repo, allow_patterns=patterns, local_files_only=local_files_only()))
    except Exception as error:  # offline, gated (401/403), network: all end with the same remedy
        reason = str(error).strip().splitlines()[0] if str(error).strip() else error.__class__.__name__
        where = "offline: no download attempted" if offline() else f"download failed: {reason}"
        raise CheckpointNotFoundError(
            f"{release.name} pipeline not found: {release.repo} is not in the Hugging Face cache ({HF_HUB_CACHE}) "
            f"and no local folder was given ({where}).\nHow to provide it: {how}.", settings) from None
