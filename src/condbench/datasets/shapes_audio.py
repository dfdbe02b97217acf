"""Synthetic video-to-audio clips for the built-in ``audio-shapes`` task: a square whose look sets a sound.

Clip i of seed s is drawn from ``numpy.random.default_rng([GENERATOR_VERSION, s, i])``, so the same (version,
seed, i) always gives the same clip. A 2 s, 8 fps, 32x32 black video shows nothing until the onset frame, then
a white square; the sound (16 kHz mono, the first 1.984 s) is a plucked tone starting at that same instant:

- height on screen sets the pitch (higher = higher; 4 pitch buckets, each +-1 semitone around its centre),
- the frame the square appears on sets the onset (3 onset buckets of 3 frames each),
- its size sets the loudness, its horizontal speed the decay (fast = short).

The class a clip's sound belongs to (pitch bucket x onset bucket, 12 classes) is what the task's classifier
learns. Videos are written as mp4 (H.264, lossless ``-qp 0``) with imageio-ffmpeg and read back through the
VGGSound reader's decord path (:func:`condbench.datasets.vggsound.read_frames`); the sound is a 32-bit float wav
beside each video. The condition of a clip is :func:`video_features` of its decoded frames.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .vggsound import read_audio, read_frames

GENERATOR_VERSION = 1  # bump whenever a clip's video or sound changes: cached clips are keyed by it
FPS = 8
FRAMES = 16  # 2 s of video
FRAME_SIZE = 32
SAMPLE_RATE = 16000
AUDIO_SAMPLES = 31 * 1024  # 1.984 s: exactly 32 frames of the task's 1024-sample hop (center=True)
PITCHES_HZ = (300.0, 475.0, 750.0, 1190.0)  # bucket centres, 8 semitones apart
ONSET_FIRST_FRAMES = (1, 5, 9)  # onset bucket k: the square appears on frame first + 0, 1 or 2
NUM_CLASSES = len(PITCHES_HZ) * len(ONSET_FIRST_FRAMES)
ROW_BANDS = 8  # the row profile of a frame: bright pixels in each band of 4 rows
FEATURE_DIM = 4 + ROW_BANDS  # per frame: present, area x 10, centre x, centre y, row profile
MAX_SPEED = 12.0  # pixels per second
ROWS = (6.0, 26.0)  # centre row of the highest and the lowest pitch


@dataclass(frozen=True)
class ShapeClip:
    """What one clip shows and sounds like."""

    pitch_class: int
    onset_class: int
    pitch_hz: float
    onset_frame: int
    size_px: int
    x0: float  # centre column when the square appears
    speed: float  # pixels per second, signed
    decay_s: float

    @property
    def label(self) -> int:
        """Class id of the sound: pitch bucket x onset bucket, in [0, 12)."""
        return self.pitch_class * len(ONSET_FIRST_FRAMES) + self.onset_class

    @property
    def onset_s(self) -> float:
        return self.onset_frame / FPS

    @property
    def amplitude(self) -> float:
        return 0.15 + 0.05 * (self.size_px - 5)  # 0.15 .. 0.35

    @property
    def row(self) -> float:
        """Centre row: log-pitch mapped linearly onto ROWS, high pitches at the top."""
        low, high = np.log2(PITCHES_HZ[0] / 2 ** (1 / 12)), np.log2(PITCHES_HZ[-1] * 2 ** (1 / 12))
        return ROWS[1] + (np.log2(self.pitch_hz) - low) / (high - low) * (ROWS[0] - ROWS[1])


def draw_clip(seed: int, index: int) -> ShapeClip:
    """Clip ``index`` of ``seed``: its parameters drawn from a generator seeded by (version, seed, index)."""
    rng = np.random.default_rng([GENERATOR_VERSION, seed, index])
    pitch_class, onset_class = int(rng.integers(len(PITCHES_HZ))), int(rng.integers(len(ONSET_FIRST_FRAMES)))
    pitch = PITCHES_HZ[pitch_class] * 2 ** (rng.uniform(-1, 1) / 12)
    onset = ONSET_FIRST_FRAMES[onset_class] + int(rng.integers(3))
    size = int(rng.integers(5, 10))
    speed = float(rng.uniform(-MAX_SPEED, MAX_SPEED))
    x0 = float(rng.uniform(size, FRAME_SIZE - size))
    decay = 0.15 + 0.6 * (1 - abs(speed) / MAX_SPEED)  # 0.15 s (fast) .. 0.75 s (still)
    return ShapeClip(pitch_class, onset_class, float(pitch), onset, size, x0, speed, decay)


def render_frames(clip: ShapeClip) -> np.ndarray:
    """The clip's video: (FRAMES, 32, 32, 3) uint8 RGB, black before the onset frame, then the white square."""
    frames = np.zeros((FRAMES, FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    half = clip.size_px / 2
    top = int(round(clip.row - half))
    for k in range(clip.onset_frame, FRAMES):
        centre = np.clip(clip.x0 + clip.speed * (k - clip.onset_frame) / FPS, half, FRAME_SIZE - half)
        left = int(round(centre - half))
        frames[k, top:top + clip.size_px, left:left + clip.size_px] = 255
    return frames


def synthesize(clip: ShapeClip) -> np.ndarray:
    """The clip's sound (AUDIO_SAMPLES,) float32 at 16 kHz: silence, then from the onset a tone with its octave
    (0.3 of its amplitude), a 5 ms linear attack and an exponential decay."""
    t = np.arange(AUDIO_SAMPLES) / SAMPLE_RATE - clip.onset_s  # seconds since the onset
    after = np.maximum(t, 0.0)
    envelope = (t >= 0) * np.minimum(after / 0.005, 1.0) * np.exp(-after / clip.decay_s)
    tone = np.sin(2 * np.pi * clip.pitch_hz * after) + 0.3 * np.sin(4 * np.pi * clip.pitch_hz * after)
    return (clip.amplitude / 1.3 * envelope * tone).astype(np.float32)


def video_features(frames: torch.Tensor) -> torch.Tensor:
    """The task's condition, parameter-free: frames (T, 3, H, W) in [0, 1] -> (T, 12) per frame
    [present (0/1), area fraction x 10, centre x, centre y, row profile (8)] of the pixels brighter than 0.5
    (x, y in [-1, 1], all 0 on an empty frame; the row profile is the fraction of bright pixels in each band of
    H / 8 rows, x 4: where the square is, as a code a linear layer reads directly)."""
    mask = (frames.float().mean(dim=1) > 0.5).float()  # (T, H, W)
    t, h, w = mask.shape
    count = mask.sum(dim=(1, 2))  # (T,)
    present = (count > 0).float()
    safe = count.clamp(min=1)
    ys = torch.linspace(-1, 1, h).view(1, h, 1)
    xs = torch.linspace(-1, 1, w).view(1, 1, w)
    cx = (mask * xs).sum(dim=(1, 2)) / safe
    cy = (mask * ys).sum(dim=(1, 2)) / safe
    rows = mask.reshape(t, ROW_BANDS, h // ROW_BANDS, w).mean(dim=(2, 3)) * 4  # (T, 8)
    return torch.cat([torch.stack([present, count / (h * w) * 10, cx, cy], dim=1), rows], dim=1)  # (T, 12)


def write_clip(clip: ShapeClip, video: Path, sound: Path) -> None:
    """Write the clip's mp4 (lossless H.264) and wav, each through a temporary file renamed into place."""
    import imageio_ffmpeg
    import soundfile

    tmp_video = video.with_name(f".{video.stem}.tmp.mp4")
    writer = imageio_ffmpeg.write_frames(str(tmp_video), (FRAME_SIZE, FRAME_SIZE), fps=FPS, codec="libx264",
                                         pix_fmt_in="rgb24", output_params=["-qp", "0"], macro_block_size=1,
                                         ffmpeg_log_level="error")
    writer.send(None)
    for frame in render_frames(clip):
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    os.replace(tmp_video, video)
    tmp_sound = sound.with_name(f".{sound.stem}.tmp.wav")
    soundfile.write(str(tmp_sound), synthesize(clip), SAMPLE_RATE, subtype="FLOAT")
    os.replace(tmp_sound, sound)


class ShapeClips:
    """The first ``count`` clips of ``seed`` as files in ``folder`` (written on first use, then reused)."""

    def __init__(self, folder: str | Path, seed: int, count: int):
        if count < 1:
            raise ValueError(f"the audio-shapes task needs at least 1 clip, got {count}")
        self.folder, self.seed = Path(folder), seed
        self.clips = [draw_clip(seed, i) for i in range(count)]

    def __len__(self) -> int:
        return len(self.clips)

    def name(self, index: int) -> str:
        return f"clip_{index:05d}"

    def video_path(self, index: int) -> Path:
        return self.folder / f"{self.name(index)}.mp4"

    def audio_path(self, index: int) -> Path:
        return self.folder / f"{self.name(index)}.wav"

    def ensure_written(self) -> "ShapeClips":
        """Write every clip whose mp4 or wav is absent; returns self."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for i, clip in enumerate(self.clips):
            if not (self.video_path(i).is_file() and self.audio_path(i).is_file()):
                write_clip(clip, self.video_path(i), self.audio_path(i))
        return self

    def frames(self, index: int) -> torch.Tensor:
        """(16, 3, 32, 32) in [0, 1], decoded through decord at 8 fps."""
        return read_frames(self.video_path(index), max_frames=FRAMES, min_frames=FRAMES,
                           min_seconds=FRAMES / FPS, fps=FPS, size=FRAME_SIZE)

    def features(self, index: int) -> torch.Tensor:
        """The clip's condition (16, 12), from its decoded frames."""
        return video_features(self.frames(index))

    def audio(self, index: int) -> torch.Tensor:
        """The ground-truth sound (AUDIO_SAMPLES,) at 16 kHz."""
        return read_audio(self.audio_path(index), samples=AUDIO_SAMPLES)

    def labels(self) -> torch.Tensor:
        """Sound class of every clip (N,)."""
        return torch.tensor([clip.label for clip in self.clips])
