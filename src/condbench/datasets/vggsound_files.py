"""Where the VGGSound clips of a split and their files are (torch-free: the run's preflight lists every missing
file before torch is imported). The files and the reading of frames, audio and features: :mod:`.vggsound`."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..textfiles import read_user_text

CSV_URL = "https://www.robots.ox.ac.uk/~vgg/data/vggsound/vggsound.csv"
FRAMES = 32  # what MDSGen reads: int(4 * 130560 / 16000)
FEATURE_DIM = 512
NAME_FORMAT = "{youtube_id}_{start:06d}"


class ClipError(ValueError):
    """A clip, audio or feature file that cannot be used; the message names the file and the remedy."""


@dataclass(frozen=True)
class VGGSoundClip:
    """One row of the split: a YouTube video, the second its 10 s clip starts at, its label and split."""

    youtube_id: str
    start: int
    label: str
    split: str

    @property
    def name(self) -> str:
        """The clip's file stem, ``{youtube_id}_{start:06d}``."""
        return NAME_FORMAT.format(youtube_id=self.youtube_id, start=self.start)


def read_split(csv_path: str | Path, split: Optional[str] = "test") -> list[VGGSoundClip]:
    """The clips of ``split`` (None: all) listed in the published csv, in file order."""
    path = Path(csv_path)
    if not path.is_file():
        raise ClipError(f"VGGSound split file not found at {path.resolve()}; download it from {CSV_URL}")
    clips = []
    rows = csv.reader(io.StringIO(read_user_text(path, "VGGSound split file"), newline=""))
    for line, row in enumerate(rows, start=1):
        if not row:
            continue
        if len(row) != 4 or not row[1].strip().isdigit() or row[3].strip() not in ("train", "test"):
            raise ClipError(f"{path}:{line}: expected 'youtube_id,start_seconds,label,split' with split train "
                            f"or test (the published vggsound.csv, no header), got {row!r}")
        clip = VGGSoundClip(row[0].strip(), int(row[1]), row[2].strip(), row[3].strip())
        if split is None or clip.split == split:
            clips.append(clip)
    return clips


class VGGSoundClipFiles:
    """The clips of a split over a folder of clip files (and optionally feature and audio folders): where each
    clip's files are and which are missing (:class:`condbench.datasets.vggsound.VGGSoundClips` reads them)."""

    def __init__(self, clip_dir: str | Path, clips: list[VGGSoundClip], feature_dir: Optional[str | Path] = None,
                 audio_dir: Optional[str | Path] = None):
        self.clip_dir = Path(clip_dir)
        self.clips = clips
        self.feature_dir = Path(feature_dir) if feature_dir is not None else None
        self.audio_dir = Path(audio_dir) if audio_dir is not None else None

    @classmethod
    def from_csv(cls, csv_path: str | Path, clip_dir: str | Path, split: str = "test", **folders) -> "VGGSoundClipFiles":
        return cls(clip_dir, read_split(csv_path, split), **folders)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> VGGSoundClip:
        return self.clips[index]

    def video_path(self, index: int) -> Path:
        return self.clip_dir / f"{self.clips[index].name}.mp4"

    def feature_path(self, index: int) -> Optional[Path]:
        return self.feature_dir / f"{self.clips[index].name}.npz" if self.feature_dir is not None else None

    def audio_path(self, index: int) -> Path:
        """``{name}.wav`` in the audio folder when it exists, else the clip itself."""
        if self.audio_dir is not None and (self.audio_dir / f"{self.clips[index].name}.wav").is_file():
            return self.audio_dir / f"{self.clips[index].name}.wav"
        return self.video_path(index)

    def missing(self) -> list[Path]:
        """Files the task needs that are absent: each clip's video unless its features are precomputed, and its
        audio; empty when everything is there."""
        absent = []
        for i in range(len(self)):
            feature = self.feature_path(i)
            if (feature is None or not feature.is_file()) and not self.video_path(i).is_file():
                absent.append(self.video_path(i))
            if not self.audio_path(i).is_file():
                absent.append(self.audio_path(i))
        return absent
