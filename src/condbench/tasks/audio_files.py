"""The files the audio task reads, from its task options, each checked without torch: the run's preflight names
every missing one (with the suite key that provides it) before torch is imported. :class:`~.audio.AudioTask` is
built on these and reads what they find."""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Optional

from ..checkpoints import CheckpointNotFoundError, FileSetting
from ..datasets.vggsound_files import CSV_URL, FEATURE_DIM, FRAMES, VGGSoundClipFiles, read_split
from ..hub import cache_root
from ..metrics.weight_files import CAVP_WEIGHTS, CNN14_16K_WEIGHTS, VGGISH_WEIGHTS, task_option_weights
from . import input_checks

MISSING_SHOWN = 5  # missing clip files named in the preflight message; the rest are counted


def vggsound_root() -> Path:
    return cache_root() / "vggsound"


class AudioFiles:
    """Where the VGGSound split, its clips (or their CAVP features and sound), CAVP and the metric weights are.

    Options (those of the audio task that name files): ``csv``, ``clip_dir``, ``feature_dir``, ``audio_dir``,
    ``split``, ``num_clips`` (the first N clips of the split), ``cavp_weights``, ``vggish_weights``,
    ``panns_weights``.
    """

    clip_files = VGGSoundClipFiles  # what ``clips`` is; the task's reads the files too

    def __init__(self, csv: Optional[str] = None, clip_dir: Optional[str] = None, feature_dir: Optional[str] = None,
                 audio_dir: Optional[str] = None, split: str = "test", num_clips: Optional[int] = None,
                 cavp_weights: Optional[str] = None, vggish_weights: Optional[str] = None,
                 panns_weights: Optional[str] = None):
        if num_clips is not None and num_clips < 1:
            raise ValueError(f"num_clips must be >= 1 (or left out for the whole split), got {num_clips}")
        self.csv = Path(csv).expanduser() if csv else vggsound_root() / "vggsound.csv"
        self.clip_dir = Path(clip_dir).expanduser() if clip_dir else vggsound_root() / "clips"
        self.feature_dir, self.audio_dir = feature_dir, audio_dir
        self.split, self.num_clips = split, num_clips
        self.cavp_weights, self.vggish_weights, self.panns_weights = cavp_weights, vggish_weights, panns_weights

    @cached_property
    def clips(self) -> VGGSoundClipFiles:
        """The first ``num_clips`` clips of the split, over the clip, feature and audio folders."""
        if not self.csv.is_file():
            raise CheckpointNotFoundError(
                f"VGGSound split file not found: {self.csv.resolve()}.\nHow to provide it: download {CSV_URL} "
                "and pass it with the task option csv (suite task_options), or place it there",
                (FileSetting(("task_options", "csv"), "/path/to/vggsound.csv"),))
        rows = read_split(self.csv, self.split)
        if not rows:
            raise ValueError(f"{self.csv} lists no clip of split {self.split!r}")
        return self.clip_files(self.clip_dir, rows[:self.num_clips], self.feature_dir, self.audio_dir)

    def check_clips(self) -> None:
        """Every clip's video (or its precomputed features) and its sound."""
        if not self.csv.is_file():
            return  # the split file's own check reports it; without it the clips cannot be listed
        missing = self.clips.missing()
        if missing:
            shown = "\n  ".join(str(p) for p in missing[:MISSING_SHOWN])
            more = f"\n  ... and {len(missing) - MISSING_SHOWN} more" if len(missing) > MISSING_SHOWN else ""
            raise CheckpointNotFoundError(
                f"{len(missing)} VGGSound clip file(s) missing (of {len(self.clips)} {self.split} clips in "
                f"{self.csv}):\n  {shown}{more}\nHow to provide them: put the clips as {{youtube_id}}_{{start:06d}}.mp4 "
                f"in {self.clip_dir} (task option clip_dir), or CAVP features {{name}}.npz (arr_0 (T>={FRAMES}, "
                f"{FEATURE_DIM})) in the task option feature_dir and the sound {{name}}.wav in audio_dir; "
                "num_clips: N uses the first N clips only",
                (FileSetting(("task_options", "clip_dir"), "/path/to/clips", note="{youtube_id}_{start:06d}.mp4"),))

    def needs_encoder(self) -> bool:
        """True when some clip has no precomputed feature file (its features come from CAVP or its cache)."""
        return any(p is None or not p.is_file() for p in map(self.clips.feature_path, range(len(self.clips))))

    def cavp_checkpoint(self) -> Path:
        return task_option_weights(CAVP_WEIGHTS, self.cavp_weights, task="audio", option="cavp_weights",
                                   what="CAVP video encoder checkpoint (the clips' conditions)")

    def check_cavp(self) -> None:
        """CAVP's checkpoint, unless every clip has precomputed features."""
        try:
            needed = self.needs_encoder()
        except FileNotFoundError:
            needed = self.feature_dir is None  # without the split, only a feature folder can spare the encoder
        if needed:
            self.cavp_checkpoint()

    def vggish_path(self) -> Path:
        return task_option_weights(VGGISH_WEIGHTS, self.vggish_weights, task="audio", option="vggish_weights",
                                   what="VGGish weights (FD_VGG)")

    def panns_path(self) -> Path:
        return task_option_weights(CNN14_16K_WEIGHTS, self.panns_weights, task="audio", option="panns_weights",
                                   what="PANNs Cnn14 16 kHz weights (FD_PANNs, KL, IS)")

    def file_checks(self) -> list[Callable[[], object]]:
        """One check per file (or set of files) the task reads; each raises CheckpointNotFoundError when absent."""
        return [lambda: self.clips, self.check_clips, self.check_cavp, self.vggish_path, self.panns_path]


def audio_inputs(**task_options: Any) -> list[Callable[[], object]]:
    """The registry's torch-free file checks of the audio task (the options that name no file are the task's)."""
    return input_checks(AudioFiles, task_options)
