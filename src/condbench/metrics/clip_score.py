"""CLIP score of class-conditional samples: 100 * cos(image, "a photo of a {class name}"), as torchmetrics.

The paper that motivates the study reports a CLIP score without naming the model or prompt; condbench uses
``openai/clip-vit-base-patch16`` (configurable) with the prompt above, the CLIPProcessor's preprocessing, and
torchmetrics' reduction: the mean of the per-sample scores, clipped at 0. Both choices go into the protocol.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..hub import local_files_only
from .inception import as_uint8_images
from .weight_files import CLIP_MODEL as DEFAULT_MODEL, clip_model_not_found
PROMPT = "a photo of a {}"


def class_prompts(labels: Sequence[int] | torch.Tensor, class_names: Sequence[str]) -> list[str]:
    """The CLIP prompt of every label: "a photo of a {class name}"."""
    return [PROMPT.format(class_names[int(y)]) for y in labels]


def _embedding(output) -> torch.Tensor:
    """get_*_features returns a tensor (transformers 4) or an output whose pooler_output is projected (5)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class ClipScore:
    """Accumulates per-sample CLIP scores; :meth:`compute` gives the torchmetrics-style mean."""

    def __init__(self, model_name_or_path: str | Path = DEFAULT_MODEL, device: str | torch.device = "cpu",
                 cache_dir: Optional[str | Path] = None, batch_size: int = 64):
        from transformers import CLIPModel, CLIPProcessor

        self.model_name = str(model_name_or_path)
        self.batch_size = batch_size
        local_only = local_files_only()
        try:
            self.model = CLIPModel.from_pretrained(self.model_name, cache_dir=cache_dir, local_files_only=local_only)
            self.processor = CLIPProcessor.from_pretrained(self.model_name, cache_dir=cache_dir,
                                                           local_files_only=local_only)
        except (OSError, ValueError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else error.__class__.__name__
            raise clip_model_not_found(self.model_name, reason, cache_dir, local_only) from None
        self.model = self.model.to(device).eval()
        self.device = torch.device(device)
        self._scores: list[torch.Tensor] = []

    @torch.no_grad()
    def score(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """100 * cos(image, prompt) per sample (N,), unclipped; images uint8 (N, 3, H, W) or float in [0, 1]."""
        images = as_uint8_images(images)
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        pixels = self.processor(images=[img.cpu() for img in images], return_tensors="pt")["pixel_values"]
        image = _embedding(self.model.get_image_features(pixel_values=pixels.to(self.device)))  # (N, P)
        max_length = self.model.config.text_config.max_position_embeddings
        text_inputs = self.processor(text=list(prompts), return_tensors="pt", padding=True, truncation=True,
                                     max_length=max_length)
        text = _embedding(self.model.get_text_features(input_ids=text_inputs["input_ids"].to(self.device),
                                                       attention_mask=text_inputs["attention_mask"].to(self.device)))
        image = image / image.norm(p=2, dim=-1, keepdim=True)
        text = text / text.norm(p=2, dim=-1, keepdim=True)
        return (100 * (image * text).sum(dim=-1)).float().cpu()  # (N,)

    def update(self, images: torch.Tensor, prompts: Sequence[str]) -> None:
        for start in range(0, len(images), self.batch_size):
            self._scores.append(self.score(images[start:start + self.batch_size],
                                           prompts[start:start + self.batch_size]))

    def scores(self) -> np.ndarray:
        """Every sample's score (N,), in order (for paired bootstraps)."""
        if not self._scores:
            raise ValueError("no images were added")
        return torch.cat(self._scores).numpy()

    def compute(self) -> dict:
        return {"clip_score": clip_score_of(self.scores()), "protocol": self.protocol()}

    def protocol(self) -> dict:
        return {"model": self.model_name, "prompt": PROMPT.format("{class name}"),
                "preprocessing": "CLIPProcessor of the model (resize, centre crop, normalise) on uint8 images",
                "score": "100 * cosine(image embedding, text embedding) per sample",
                "reduction": "max(mean over samples, 0) (torchmetrics CLIPScore.compute)",
                "sample_count": int(sum(len(s) for s in self._scores))}


def clip_score_of(scores: np.ndarray | torch.Tensor) -> float:
    """torchmetrics' reduction of per-sample scores: the mean, clipped at 0."""
    return max(float(np.mean(np.asarray(scores, dtype=np.float64))), 0.0)
