"""Paired digits: the built-in, offline stand-in for DeepFashion's (source, target pose) -> target pairs.

Images are scikit-learn's bundled 8x8 digits (no download), split once into train / test as the digits
classifier is (:func:`condbench.tasks.digits.classifier_split`, seed 0: 1,438 / 359). Pair i of a split has

- target: the split's i-th digit (the ground truth of the paired metrics),
- source: another digit of the SAME class in the same split, chosen from (seed, i) alone, as the DeepFashion
  reader picks a source (so every policy sees the same pair),
- pose: the target's ink mask (pixels >= :data:`INK_THRESHOLD` of 16 set to 1, the rest 0). It carries where the
  target's strokes are but not their intensity; the source, of another writer, carries the class's look.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from ..seeding import sample_seed

SPLITS = ("train", "test")
INK_THRESHOLD = 6  # of the digits' 0..16 intensities: what counts as ink in the pose map


def pose_map(images: torch.Tensor) -> torch.Tensor:
    """Digits (N, 1, 8, 8) in [-1, 1] -> their ink masks (N, 1, 8, 8) in {0, 1} (float32)."""
    intensity = (images + 1) * 8  # back to the dataset's 0..16
    return (intensity >= INK_THRESHOLD - 1e-4).float()


@dataclass(frozen=True)
class DigitPair:
    index: int  # position in the split
    target: int  # index into the 1,797 digits
    source: int  # index into the 1,797 digits: same class, never the target
    label: int  # the class of both


class DigitPairs:
    """The pairs of one split of the digits; ``tensors(indices)`` gives their images, ink masks and classes."""

    def __init__(self, split: str = "test", seed: int = 0):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        from ..tasks.digits import classifier_split, load_digits_images

        self.split, self.seed = split, seed
        self.images, self.labels = load_digits_images()  # (1797, 1, 8, 8) in [-1, 1], (1797,)
        train, test = classifier_split(len(self.images))
        self.members = (train if split == "train" else test).tolist()  # digit indices of the split, in split order

    def __len__(self) -> int:
        return len(self.members)

    @cached_property
    def _same_class(self) -> dict[int, list[int]]:
        """Split members of each class, in split order."""
        groups: dict[int, list[int]] = {}
        for digit in self.members:
            groups.setdefault(int(self.labels[digit]), []).append(digit)
        return groups

    def candidates(self, target: int) -> list[int]:
        """The split's other digits of the target's class: its possible sources."""
        return [d for d in self._same_class[int(self.labels[target])] if d != target]

    def pair(self, index: int) -> DigitPair:
        if not 0 <= index < len(self):
            raise IndexError(f"pair {index} of the {self.split} split, which has {len(self)} pairs")
        target = self.members[index]
        candidates = self.candidates(target)
        source = candidates[sample_seed(self.seed, index) % len(candidates)]
        return DigitPair(index, target, source, int(self.labels[target]))

    def tensors(self, indices) -> dict[str, torch.Tensor]:
        """``source``, ``pose``, ``target`` (each (N, 1, 8, 8): images in [-1, 1], the pose in {0, 1}) and
        ``label`` (N,) of pairs ``indices``."""
        pairs = [self.pair(i) for i in indices]
        targets = self.images[[p.target for p in pairs]]
        return {"source": self.images[[p.source for p in pairs]], "pose": pose_map(targets), "target": targets,
                "label": torch.tensor([p.label for p in pairs], dtype=torch.long)}
