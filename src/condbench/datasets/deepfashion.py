"""DeepFashion pairs of the PIDM/GFLA split, read the way X-MDPT and PIDM read them.

Files (PIDM's README layout; X-MDPT uses the same): ``ROOT/test_pairs.txt`` and ``ROOT/train_pairs.txt``,
``ROOT/pose/<...>.txt`` (OpenPose keypoints, see :mod:`.openpose`) and the images, 256x256 PNGs, either in
the LMDB that PIDM's ``data/prepare_data.py`` writes (``ROOT/256-256``: key = the pair file's path with
``.jpg`` -> ``.png``, UTF-8; value = PNG bytes; plus a ``length`` key) or in a folder holding each PNG at
that same relative path.

A pairs line is ``target,source[,source...]`` (``FashionDataset.get_paths``: the FIRST field is the target,
although PIDM's README says ``<src>,<tgt>``). Where the official loader draws one source with
``np.random.choice``, :func:`choose_source` takes it from (seed, pair index), so every policy sees the same pair.

Tensors follow ``FashionDataset.__getitem__`` at test time: images ``ToTensor`` + ``Normalize(0.5, 0.5)``
(float32 in [-1, 1]); the skeleton ``ToTensor`` then ``pose /= pose.max()`` (float32 in [0, 1]).
:func:`dinov2_inputs` is the step to the DINOv2 encoders (224 px, bicubic, no antialias).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..textfiles import TextFileError
from .deepfashion_files import (HOW_TO_GET, LMDB_FOLDER, PAIRS_FILES, DeepFashionError, PosePair, missing_files,
                                open_images, read_pairs)
from .openpose import KeypointFileError, SKELETON_SIZE, skeleton_from_file

IMAGE_SIZE = 256
DINOV2_SIZE = 224


def decode_image(data: bytes, where: str) -> np.ndarray:
    """PNG (or JPEG) bytes -> (256, 256, 3) uint8 RGB; ``where`` names the image in errors."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            mode, size = image.mode, image.size
            array = np.array(image)  # (H, W, 3) uint8, writable
    except OSError as error:
        raise DeepFashionError(f"{where} is not a readable image ({error})") from None
    if mode != "RGB" or size != (IMAGE_SIZE, IMAGE_SIZE):
        raise DeepFashionError(f"{where} is a {size[0]}x{size[1]} {mode} image; expected {IMAGE_SIZE}x{IMAGE_SIZE} "
                               f"RGB (the images PIDM's prepare_data.py writes)")
    return array


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [-1, 1], as ``ToTensor`` + ``Normalize(0.5, 0.5)``."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255)  # (3, H, W)
    return x.sub(0.5).div(0.5)


def skeleton_to_tensor(skeleton: np.ndarray, where: str = "skeleton image") -> torch.Tensor:
    """(256, 256, 3) uint8 skeleton -> (3, 256, 256) float32 in [0, 1] scaled so its maximum is 1 (``pose /= pose.max()``).

    An empty skeleton (no keypoint detected) is an error: the official code would divide by zero.
    """
    if skeleton.shape != (*SKELETON_SIZE, 3) or skeleton.dtype != np.uint8:
        raise DeepFashionError(f"{where}: expected a {SKELETON_SIZE[0]}x{SKELETON_SIZE[1]} RGB uint8 pose image, "
                               f"got {skeleton.dtype} of shape {skeleton.shape}")
    pose = torch.from_numpy(np.ascontiguousarray(skeleton)).permute(2, 0, 1).float().div(255)  # (3, H, W)
    peak = pose.max()
    if peak == 0:
        raise DeepFashionError(f"{where}: no keypoint is present, so the skeleton is empty (X-MDPT divides the pose "
                               f"image by its maximum)")
    return pose / peak


def dinov2_inputs(source: torch.Tensor, pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """X-MDPT's DINOv2 inputs: source (N, 3, 256, 256) in [-1, 1] and pose (N, 3, 256, 256) in [0, 1] ->
    both (N, 3, 224, 224), bicubic, no antialias, no ImageNet normalisation.

    ``transforms.Resize(224, BICUBIC)`` on tensors under torchvision 0.13.1 (X-MDPT's pin) had no antialias.
    Bicubic overshoots, so the outputs reach slightly beyond [-1, 1] and [0, 1], as in the official code.
    The source goes to ViT-g/14, the pose to ViT-B/14.
    """
    outputs = []
    for name, x in (("source", source), ("pose", pose)):
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, IMAGE_SIZE, IMAGE_SIZE) or not x.is_floating_point():
            raise DeepFashionError(f"{name} images for DINOv2: expected float (N, 3, {IMAGE_SIZE}, {IMAGE_SIZE}), got "
                                   f"{x.dtype} {tuple(x.shape)}")
        outputs.append(torch.nn.functional.interpolate(x, size=(DINOV2_SIZE, DINOV2_SIZE), mode="bicubic",
                                                       align_corners=False, antialias=False))
    return outputs[0], outputs[1]


@dataclass
class PoseSample:
    """One test pair, ready for X-MDPT and for the metrics."""

    pair: PosePair
    source: torch.Tensor  # (3, 256, 256) float32 in [-1, 1]: VAE encoder and ViT-g/14 input
    pose: torch.Tensor  # (3, 256, 256) float32 in [0, 1], max 1: the target skeleton, ViT-B/14 input
    source_image: torch.Tensor  # (3, 256, 256) uint8, as stored
    target_image: torch.Tensor  # (3, 256, 256) uint8, as stored: the ground truth of the paired metrics
    skeleton_image: torch.Tensor  # (3, 256, 256) uint8 RGB, the drawn skeleton (for pair grids)


class DeepFashionPairs:
    """The pairs of one split, indexable; each item is a :class:`PoseSample`.

    ``images`` is the LMDB folder or the PNG folder (default ``ROOT/256-256``); keypoint files are read
    from ``ROOT/pose``.
    """

    def __init__(self, root: str | Path, split: str = "test", images: Optional[str | Path] = None, seed: int = 0):
        if split not in PAIRS_FILES:
            raise ValueError(f"split must be one of {sorted(PAIRS_FILES)}, got {split!r}")
        self.root = Path(root)
        self.split = split
        self.pairs_file = self.root / PAIRS_FILES[split]
        self.pairs = read_pairs(self.pairs_file, seed)
        self.images = open_images(images if images is not None else self.root / LMDB_FOLDER)

    def __len__(self) -> int:
        return len(self.pairs)

    def verify(self) -> None:
        """Raise one error listing every missing image and keypoint file (with its pairs-file line)."""
        problems = missing_files(self.root, self.split, self.images.path)
        if problems:
            shown = "\n".join(problems[:20]) + (f"\n... and {len(problems) - 20} more" if len(problems) > 20 else "")
            raise DeepFashionError(f"{len(problems)} DeepFashion file(s) missing:\n{shown}\nHow to provide them: "
                                   f"{HOW_TO_GET}.")

    def read_image(self, pair: PosePair, key: str) -> np.ndarray:
        """The (256, 256, 3) uint8 image ``key`` of ``pair``; a missing one names the pairs file and line."""
        data = self.images.get(key)
        where = f"image {key!r} ({self.pairs_file}, line {pair.line})"
        if data is None:
            raise DeepFashionError(f"{where} is not in {self.images}.\nHow to provide it: {HOW_TO_GET}.")
        return decode_image(data, f"{where} in {self.images}")

    def read_skeleton(self, pair: PosePair) -> np.ndarray:
        """The target's skeleton (256, 256, 3) uint8 RGB drawn from its keypoint file."""
        path = self.root / pair.target_pose
        if not path.is_file():
            raise DeepFashionError(f"keypoint file {path} of {self.pairs_file}, line {pair.line}, does not exist.\n"
                                   f"How to provide it: {HOW_TO_GET}.")
        try:
            return skeleton_from_file(path)
        except (KeypointFileError, TextFileError) as error:
            raise DeepFashionError(f"{error} (target of {self.pairs_file}, line {pair.line})") from None

    def __getitem__(self, index: int) -> PoseSample:
        pair = self.pairs[index]
        source = self.read_image(pair, pair.source)
        target = self.read_image(pair, pair.target)
        skeleton = self.read_skeleton(pair)

        def chw(image: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()  # (3, H, W)

        return PoseSample(pair=pair, source=image_to_tensor(source),
                          pose=skeleton_to_tensor(skeleton, f"keypoint file {self.root / pair.target_pose}"),
                          source_image=chw(source), target_image=chw(target), skeleton_image=chw(skeleton))
