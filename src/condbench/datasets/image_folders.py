"""The image files a metric's reference folder holds, listed without reading them (torch-free: the run's
preflight checks the folders before torch is imported, and the metrics read the same lists)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..checkpoints import CheckpointNotFoundError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def list_images(folder: str | Path) -> list[Path]:
    """Every image file under ``folder`` (recursively), sorted; a clear error if there is none."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise CheckpointNotFoundError(f"reference image folder not found: {folder.resolve()} is not a directory")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise CheckpointNotFoundError(f"reference image folder {folder.resolve()} holds no images "
                                      f"({', '.join(IMAGE_EXTENSIONS)})")
    return files


def reference_files(folder: str | Path, names: Optional[list[str]] = None) -> list[Path]:
    """The files ``names`` (relative to ``folder``), or every image in it; a clear error for any that is missing."""
    folder = Path(folder).expanduser()
    if names is None:
        return list_images(folder)
    files = [folder / name for name in names]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise CheckpointNotFoundError(f"{len(missing)} of the {len(files)} reference images are not in "
                                      f"{folder.resolve()} (e.g. {', '.join(missing[:3])})")
    return files


def pidm_image_files(folder: str | Path) -> list[Path]:
    """The images PIDM reads from a folder: ``*.jpg`` and ``*.png`` directly in it, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"FID reference folder not found: {folder.resolve()} (the TRAIN images at 256x256, "
                                f"PIDM's train_256x256_pngs)")
    files = sorted(p for p in folder.iterdir() if p.suffix in (".jpg", ".png") and p.is_file())
    if len(files) < 2:
        raise ValueError(f"FID reference folder {folder} holds {len(files)} *.jpg/*.png image(s); need at least 2")
    return files
