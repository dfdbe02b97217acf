"""The files the pose task reads, from its task options, each checked without torch: the run's preflight names
every missing one (with the suite key that provides it) before torch is imported. :class:`~.pose.PoseTask` is
built on these and loads what they find."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from ..checkpoints import CheckpointNotFoundError, FileSetting
from ..datasets.deepfashion_files import HOW_TO_GET, PAIRS_FILES, missing_files, missing_pairs_message
from ..datasets.image_folders import pidm_image_files
from ..hub import cache_root
from ..metrics.weight_files import (ALEXNET_WEIGHTS, DINOV2_VITB14_WEIGHTS, DINOV2_VITG14_WEIGHTS,
                                    PIDM_INCEPTION_WEIGHTS, task_option_weights, xmdpt_vae_folder)
from . import input_checks

TRAIN_IMAGES_FOLDER = "train_256x256_pngs"  # PIDM's name for the FID real set


def default_root() -> Path:
    return cache_root() / "deepfashion"


class PoseFiles:
    """Where the DeepFashion split, the FID real set, X-MDPT's VAE and the encoder and metric weights are.

    Options (those of the pose task that name files): ``root``, ``images``, ``train_images``, ``vae``,
    ``dinov2_pose``, ``dinov2_source``, ``alexnet_weights``, ``inception_weights``; ``fid`` / ``lpips`` False
    leave out the files only that metric reads.
    """

    def __init__(self, root: Optional[str] = None, images: Optional[str] = None, train_images: Optional[str] = None,
                 vae: Optional[str] = None, dinov2_pose: Optional[str] = None, dinov2_source: Optional[str] = None,
                 alexnet_weights: Optional[str] = None, inception_weights: Optional[str] = None, fid: bool = True,
                 lpips: bool = True):
        self.root = Path(root).expanduser() if root else default_root()
        self.images = Path(images).expanduser() if images else None
        self.train_images = Path(train_images).expanduser() if train_images else self.root / TRAIN_IMAGES_FOLDER
        self.vae_folder, self.dinov2_pose, self.dinov2_source = vae, dinov2_pose, dinov2_source
        self.alexnet_weights, self.inception_weights = alexnet_weights, inception_weights
        self.use_fid, self.use_lpips = fid, lpips

    def check_pairs(self) -> None:
        """The test pairs file, and every image and keypoint file it names."""
        setting = FileSetting(("task_options", "root"), "/path/to/deepfashion",
                              note=f"holding {PAIRS_FILES['test']}, pose/ and 256-256/")
        pairs = self.root / PAIRS_FILES["test"]
        if not pairs.is_file():  # it names every other file of the split: nothing else can be listed yet
            raise CheckpointNotFoundError(missing_pairs_message(pairs), (setting,))
        problems = missing_files(self.root, "test", self.images)
        if problems:
            shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
            raise CheckpointNotFoundError(f"DeepFashion test split (root {self.root}): {len(problems)} file(s) "
                                          f"missing:\n  {shown}\nHow to provide them: {HOW_TO_GET}.", (setting,))

    def check_train_images(self) -> None:
        try:
            pidm_image_files(self.train_images)
        except (FileNotFoundError, ValueError) as error:
            raise CheckpointNotFoundError(
                f"{error}.\nHow to provide it: a folder of the DeepFashion TRAIN images at 256x256 as PNGs (PIDM's "
                f"{TRAIN_IMAGES_FOLDER}, e.g. the images of train_pairs.txt written out of ROOT/256-256), given as the "
                f"pose task option train_images or placed at {self.root / TRAIN_IMAGES_FOLDER}.",
                (FileSetting(("task_options", "train_images"), f"/path/to/{TRAIN_IMAGES_FOLDER}",
                             note="the TRAIN images, 256x256 PNGs"),)) from None

    def vae_path(self) -> Path:
        return xmdpt_vae_folder(self.vae_folder, option="the pose task option vae (suite task_options)",
                                keys=("task_options", "vae"))

    def dinov2_pose_path(self) -> Path:
        return task_option_weights(DINOV2_VITB14_WEIGHTS, self.dinov2_pose, task="pose", option="dinov2_pose",
                                   what="DINOv2 ViT-B/14 weights (X-MDPT's pose encoder)")

    def dinov2_source_path(self) -> Path:
        return task_option_weights(DINOV2_VITG14_WEIGHTS, self.dinov2_source, task="pose", option="dinov2_source",
                                   what="DINOv2 ViT-g/14 weights (X-MDPT's source encoder)")

    def alexnet_path(self) -> Path:
        return task_option_weights(ALEXNET_WEIGHTS, self.alexnet_weights, task="pose", option="alexnet_weights",
                                   what="AlexNet weights for LPIPS")

    def inception_path(self) -> Path:
        return task_option_weights(PIDM_INCEPTION_WEIGHTS, self.inception_weights, task="pose",
                                   option="inception_weights", what="Inception-v3 weights for the pose FID")

    def file_checks(self) -> list[Callable[[], object]]:
        """One check per file (or set of files) the task reads; each raises CheckpointNotFoundError when absent."""
        checks: list[Callable[[], object]] = [self.check_pairs, self.vae_path, self.dinov2_pose_path,
                                              self.dinov2_source_path]
        if self.use_fid:
            checks += [self.check_train_images, self.inception_path]
        if self.use_lpips:
            checks.append(self.alexnet_path)
        return checks


def pose_inputs(**task_options: Any) -> list[Callable[[], object]]:
    """The registry's torch-free file checks of the pose task (the options that name no file are the task's)."""
    return input_checks(PoseFiles, task_options)
