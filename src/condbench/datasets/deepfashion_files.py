"""Where the DeepFashion pairs, images and keypoint files of the PIDM/GFLA split are, and which are missing.

Torch-free: the run's preflight lists every missing file with :func:`missing_files` before torch is imported;
:mod:`.deepfashion` reads the same files into tensors. The layout and the pairs-file format are described there.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from ..seeding import sample_seed
from ..textfiles import read_user_text

PAIRS_FILES = {"test": "test_pairs.txt", "train": "train_pairs.txt"}
LMDB_FOLDER = "256-256"  # PIDM prepare_data.py: os.path.join(out, '-'.join(size)) for size (256, 256)
PAIRS_URL = "https://drive.google.com/drive/folders/1PhnaFNg9zxMZM-ccJAzLIt2iqWFRzXSw"
POSE_URL = "https://drive.google.com/file/d/1waNzq-deGBKATXMU9JzMDWdGsF4YkcW_/view"
HOW_TO_GET = (f"download train_pairs.txt / test_pairs.txt by hand from {PAIRS_URL} and the keypoints pose.rar from "
              f"{POSE_URL} (unpack to ROOT/pose), get the DeepFashion In-shop images (ROOT/img), then run PIDM's "
              f"data/prepare_data.py --root ROOT --out ROOT (github.com/ankanbhunia/PIDM), which writes ROOT/256-256")


class DeepFashionError(ValueError):
    """Dataset files that cannot be used; the message names the file (and line) and the remedy."""


@dataclass(frozen=True)
class PosePair:
    """One line of a pairs file: the target image, its candidate sources, and the source this run uses."""

    index: int  # 0-based position among the pairs (the dataset index)
    line: int  # 1-based line in the pairs file
    target: str  # image key, e.g. "img/WOMEN/Dresses/id_00000002/02_1_front.png"
    sources: tuple[str, ...]
    source: str  # the one of ``sources`` chosen from (seed, index)

    @property
    def target_pose(self) -> str:
        return pose_key(self.target)


def image_key(field: str) -> str:
    """An image's key from its pairs-file field: ``.jpg`` -> ``.png`` wherever it occurs, as the official code does."""
    return field.replace(".jpg", ".png")


def pose_key(key: str) -> str:
    """The keypoint file of an image key, relative to ROOT (``img/`` -> ``pose/``, ``.png`` -> ``.txt``)."""
    return key.replace("img/", "pose/").replace(".png", ".txt")


def choose_source(sources: tuple[str, ...], seed: int, index: int) -> str:
    """The source of pair ``index``: a function of (seed, index) only."""
    return sources[sample_seed(seed, index) % len(sources)]


def missing_pairs_message(path: str | Path, root_option: str = "the pose task option root") -> str:
    """What to say when a pairs file is absent: which file, where it was looked for, what else waits on it, and how
    to provide it (with the rest of the split)."""
    path = Path(path)
    return (f"DeepFashion pairs file {path.name} not found: looked for it at {path.resolve()} (ROOT = {root_option}; "
            f"unset: $CONDBENCH_CACHE/deepfashion). It names every image and keypoint file of the split, so those "
            f"are checked once it exists.\nHow to provide it: download {path.name} (the PIDM/GFLA split, Google Drive "
            f"only: download it by hand) from {PAIRS_URL} and place it at {path.resolve()}, or set {root_option} to "
            f"the folder that holds it; the rest of the split: {HOW_TO_GET}.")


def read_pairs(path: str | Path, seed: int = 0) -> list[PosePair]:
    """Every pair of a ``*_pairs.txt`` file, in file order; blank lines at the end are ignored, a file without
    any pair is an error (a run over it would measure nothing)."""
    path = Path(path)
    if not path.is_file():
        raise DeepFashionError(missing_pairs_message(path))
    lines = read_user_text(path, "DeepFashion pairs file").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DeepFashionError(f"{path}: the pairs file holds no pairs (it is empty); expected one "
                               f"'target,source[,source...]' line per pair. Download it again: {PAIRS_URL}")
    pairs = []
    for number, line in enumerate(lines, start=1):
        fields = line.strip().split(",")
        if len(fields) < 2 or not all(fields):
            raise DeepFashionError(f"{path}, line {number}: expected 'target,source[,source...]' (comma-separated "
                                   f"image paths, no empty field), got {line!r}")
        keys = [image_key(field) for field in fields]
        index = len(pairs)
        sources = tuple(keys[1:])
        pairs.append(PosePair(index, number, keys[0], sources, choose_source(sources, seed, index)))
    return pairs


_OPEN_LMDBS: dict[tuple[str, int], object] = {}  # LMDB allows one environment per file and process


class LmdbImages:
    """The LMDB of PIDM's ``prepare_data.py``; opened read-only on first use, once per process."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __str__(self) -> str:
        return f"the LMDB {self.path}"

    def _open(self):
        import os

        slot = (str(self.path.resolve()), os.getpid())
        if slot not in _OPEN_LMDBS:
            try:
                import lmdb
            except ImportError:
                raise ImportError("reading the DeepFashion LMDB needs the 'lmdb' package: pip install lmdb "
                                  "(or point the images option at a folder of PNGs)") from None
            _OPEN_LMDBS[slot] = lmdb.open(slot[0], readonly=True, lock=False, readahead=False, meminit=False,
                                          max_readers=32)
        return _OPEN_LMDBS[slot]

    def get(self, key: str) -> Optional[bytes]:
        with self._open().begin(write=False) as txn:
            value = txn.get(key.encode("utf-8"))
        return None if value is None else bytes(value)

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None


class FolderImages:
    """A folder holding each 256x256 PNG at its key's relative path (``img/<...>.png``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __str__(self) -> str:
        return f"the folder {self.path}"

    def get(self, key: str) -> Optional[bytes]:
        file = self.path / key
        return file.read_bytes() if file.is_file() else None

    def __contains__(self, key: str) -> bool:
        return (self.path / key).is_file()


ImageStore = Union[LmdbImages, FolderImages]


def open_images(path: str | Path) -> ImageStore:
    """The LMDB at ``path`` (a folder with ``data.mdb``) or else the PNG folder ``path``."""
    path = Path(path)
    if (path / "data.mdb").is_file():
        return LmdbImages(path)
    if path.is_dir():
        return FolderImages(path)
    raise DeepFashionError(f"DeepFashion images not found: {path.resolve()} is neither an LMDB folder (with data.mdb) "
                           f"nor a folder of PNGs.\nHow to provide them: {HOW_TO_GET}.")


def missing_files(root: str | Path, split: str = "test", images: Optional[str | Path] = None) -> list[str]:
    """Every file the split needs and lacks, one line each (pairs-file line included); empty when complete.
    A pairs file that is there but damaged raises its :class:`DeepFashionError`."""
    root = Path(root)
    if not (root / PAIRS_FILES[split]).is_file():
        return [missing_pairs_message(root / PAIRS_FILES[split]).splitlines()[0]]
    pairs = read_pairs(root / PAIRS_FILES[split])  # a damaged file is not a missing one: its error stops the run
    try:
        store = open_images(images if images is not None else root / LMDB_FOLDER)
    except DeepFashionError as error:
        return [str(error).splitlines()[0]]
    pairs_file = root / PAIRS_FILES[split]
    missing, seen = [], set()
    for pair in pairs:
        for key in (pair.target, *pair.sources):
            if key not in seen and key not in store:
                missing.append(f"{pairs_file}, line {pair.line}: image {key!r} is not in {store}")
            seen.add(key)
        pose = root / pair.target_pose
        if pose not in seen and not pose.is_file():
            missing.append(f"{pairs_file}, line {pair.line}: keypoint file {pose} does not exist")
        seen.add(pose)
    return missing
