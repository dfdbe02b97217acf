"""VGGSound test clips for video-to-audio (MDSGen): the published split, clip files, frames, audio, CAVP features.

Files: the published ``vggsound.csv`` (https://www.robots.ox.ac.uk/~vgg/data/vggsound/vggsound.csv): no header,
one clip per row ``youtube_id,start_seconds,label,split`` (labels holding commas are quoted; split is ``train``
or ``test``). Clips are 10 s mp4 files named ``{youtube_id}_{start:06d}.mp4`` (as MDSGen names its example,
``__2MwJ2uHu0_000004``) in one folder; optional precomputed CAVP features ``{name}.npz`` (``arr_0`` (T, 512), MDSGen
``inference.py`` reads them) and ground-truth audio ``{name}.wav``.

Frames follow Diff-Foley's ``Extract_CAVP_Features`` (which MDSGen's README points to): 4 fps from the clip start,
RGB, resized to 224x224 with PIL bilinear, ``ToTensor`` to [0, 1], no mean/std. Diff-Foley re-encodes with
ffmpeg's ``fps=4`` filter; here frames come through decord, each picked as the decoded frame whose timestamp is
nearest k / 4 s (decord has no fps argument), indices clamped to the clip's last frame (decord can hang when
asked for frames past the real end, dmlc/decord#373). The encoder sees up to 40 frames (the whole 10 s clip, as
MDSGen's shipped features were computed) and MDSGen keeps the first 32 (8 s). Sound (:func:`read_sound`):
``{name}.wav`` when present, read as stored (soundfile, as ``torchaudio.load`` reads it; the metrics prepare it as
av-benchmark does), else the clip's audio stream through decord's ``AudioReader`` (:data:`VIDEO_SOUND_READING`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..metrics.audio import read_audio as read_audio_file
from ..metrics.resample import resample
from .vggsound_files import FEATURE_DIM, FRAMES, ClipError, VGGSoundClipFiles

FPS = 4
CONTEXT_FRAMES = 40  # what the encoder sees: the whole 10 s clip
FRAME_SIZE = 224
SAMPLE_RATE = 16000
AUDIO_SAMPLES = 130560  # 8.16 s, MDSGen's ``truncate``
CLIP_SECONDS = AUDIO_SAMPLES / SAMPLE_RATE
SOUND_FILE_SUFFIXES = (".wav", ".flac")  # read as stored; any other file is a video whose audio stream decord reads
VIDEO_SOUND_READING = ("the mp4's audio stream decoded by decord 0.6 (its bundled FFmpeg), downmixed and "
                       "resampled to 16 kHz mono by FFmpeg's swresample (decord does not report a stream's own "
                       "rate), as float")


def _open_video(path: Path):
    """A decord VideoReader on ``path``, or a ClipError saying why the clip is unusable."""
    if not path.is_file():
        raise ClipError(f"clip not found: {path.resolve()}")
    from decord import VideoReader, cpu

    try:
        reader = VideoReader(str(path), ctx=cpu(0), num_threads=1)
    except Exception as error:  # decord raises its own DECORDError (and RuntimeError) for unreadable files
        raise ClipError(f"cannot read video from {path}: {str(error).splitlines()[0] if str(error) else error}. "
                        "The file is truncated, not a video, or has no video stream; download the clip again") from None
    if len(reader) == 0:
        raise ClipError(f"{path} holds no video frames; download the clip again")
    return reader


def frame_indices(starts: np.ndarray, count: int, fps: float = FPS) -> np.ndarray:
    """For targets k / fps (k < count), the index of the frame whose start time is nearest: (count,) int64.

    ``starts`` (L,) are the decoded frames' start times, increasing; indices never pass L - 1.
    """
    targets = np.arange(count) / fps
    right = np.clip(np.searchsorted(starts, targets), 0, len(starts) - 1)
    left = np.clip(right - 1, 0, len(starts) - 1)
    nearer_left = np.abs(starts[left] - targets) <= np.abs(starts[right] - targets)
    return np.where(nearer_left, left, right).astype(np.int64)


def read_frames(path: str | Path, max_frames: int = CONTEXT_FRAMES, min_frames: int = FRAMES,
                min_seconds: float = CLIP_SECONDS, fps: float = FPS, size: int = FRAME_SIZE) -> torch.Tensor:
    """RGB frames at ``fps`` from the start of the clip at ``path``: (T, 3, size, size) float in [0, 1], T in
    [min_frames, max_frames] (as many instants as the clip lasts). The defaults are MDSGen's: 4 fps, 224x224,
    at least 8.16 s; the built-in audio-shapes task reads its own clips here with its own settings."""
    from PIL import Image

    path = Path(path)
    reader = _open_video(path)
    stamps = np.asarray(reader.get_frame_timestamp(np.arange(len(reader))), dtype=np.float64)  # (L, 2) start, end
    duration = float(stamps[-1, 1])
    if duration < min_seconds - 1e-3:
        raise ClipError(f"{path} lasts {duration:.2f} s, shorter than the {min_seconds:.2f} s the task generates")
    count = min(max_frames, int(np.ceil(duration * fps - 1e-6)))
    if count < min_frames:
        raise ClipError(f"{path} gives {count} frames at {fps:g} fps, fewer than {min_frames}")
    indices = frame_indices(stamps[:, 0], count, fps)
    try:
        batch = reader.get_batch(indices.tolist()).asnumpy()  # (T, H, W, 3) uint8
    except Exception as error:
        raise ClipError(f"cannot decode frames {indices.min()}..{indices.max()} of {path}: {error}. The file is "
                        "truncated or damaged; download the clip again") from None
    if batch.shape[1:3] != (size, size):
        batch = np.stack([np.asarray(Image.fromarray(frame).resize((size, size), Image.BILINEAR)) for frame in batch])
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255.0  # (T, 3, size, size)


def read_sound(path: str | Path) -> tuple[torch.Tensor, int]:
    """A clip's sound as stored, for the metrics to prepare: (C, L) float32 and its sample rate.

    ``.wav``/``.flac`` files are read with soundfile as ``torchaudio.load`` reads them (integer PCM scaled to
    [-1, 1)); any other file is a video whose audio stream decord reads (:data:`VIDEO_SOUND_READING`).
    """
    path = Path(path)
    if not path.is_file():
        raise ClipError(f"audio not found: {path.resolve()}")
    if path.suffix.lower() in SOUND_FILE_SUFFIXES:
        try:
            sound, rate = read_audio_file(path)
        except ValueError as error:  # the message names the file
            raise ClipError(f"{error}; write the sound again as a .wav") from None
    else:
        sound, rate = _read_video_sound(path), SAMPLE_RATE
    if not torch.isfinite(sound).all():
        raise ClipError(f"{path} holds NaN or infinite samples; write the sound again")
    return sound, rate


def _read_video_sound(path: Path) -> torch.Tensor:
    """The audio stream of a video file at 16 kHz mono through decord: (1, L) float32."""
    from decord import AudioReader, cpu

    try:
        audio = AudioReader(str(path), ctx=cpu(0), sample_rate=SAMPLE_RATE, mono=True)[:].asnumpy()  # (1, L)
    except Exception as error:  # decord's DECORDError for a clip without sound or a damaged one
        raise ClipError(f"cannot read the audio stream of {path}: {str(error).splitlines()[0]}. The clip has no "
                        "sound or is damaged; download it again, or put the sound beside it as a .wav") from None
    return torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))


def read_audio(path: str | Path, samples: int = AUDIO_SAMPLES) -> torch.Tensor:
    """The first ``samples`` of a clip's sound at 16 kHz mono: (samples,) float32 (mean of the channels,
    resampled with torchaudio's defaults if stored at another rate); a shorter sound is refused."""
    sound, rate = read_sound(path)
    audio = resample(sound.mean(dim=0), rate, SAMPLE_RATE)  # (L,)
    if len(audio) < samples:
        raise ClipError(f"{path} holds {len(audio) / SAMPLE_RATE:.2f} s of sound, shorter than the "
                        f"{samples / SAMPLE_RATE:.2f} s compared with MDSGen's output")
    return audio[:samples].contiguous()


def read_features(path: str | Path, frames: int = FRAMES) -> torch.Tensor:
    """Precomputed CAVP features: ``arr_0`` (T >= frames, 512) of an ``.npz`` -> the first frames (frames, 512)."""
    path = Path(path)
    if not path.is_file():
        raise ClipError(f"CAVP feature file not found: {path.resolve()}")
    try:
        with np.load(path) as archive:
            feats = archive["arr_0"]
    except Exception as error:
        raise ClipError(f"cannot read CAVP features from {path} ({error.__class__.__name__}: {error}); expected an "
                        ".npz holding arr_0 of shape (T, 512) (np.savez(path, features))") from None
    if feats.ndim != 2 or feats.shape[1] != FEATURE_DIM or feats.shape[0] < frames:
        raise ClipError(f"{path}: arr_0 has shape {feats.shape}, expected (T, {FEATURE_DIM}) with T >= {frames} "
                        f"(CAVP features at 4 fps)")
    if not np.isfinite(feats[:frames]).all():
        raise ClipError(f"{path}: arr_0 holds NaN or infinite values in its first {frames} frames (the file is "
                        "damaged); compute the CAVP features of the clip again")
    return torch.from_numpy(np.ascontiguousarray(feats[:frames], dtype=np.float32))


class VGGSoundClips(VGGSoundClipFiles):
    """The clips of a split with their frames, ground-truth audio and CAVP features."""

    def frames(self, index: int) -> torch.Tensor:
        """(T, 3, 224, 224) in [0, 1], 4 fps from the clip start, 32 <= T <= 40."""
        return read_frames(self.video_path(index))

    def sound(self, index: int) -> tuple[torch.Tensor, int]:
        """The clip's ground-truth sound as stored, (C, L) float32, and its rate (:func:`read_sound`)."""
        return read_sound(self.audio_path(index))

    def features(self, index: int, encoder=None) -> torch.Tensor:
        """CAVP features (32, 512): the precomputed file when there is one, else ``encoder.encode`` of the frames."""
        path = self.feature_path(index)
        if path is not None and path.is_file():
            return read_features(path)
        if encoder is None:
            where = f"{path} does not exist and " if path is not None else ""
            raise ClipError(f"no CAVP features for clip {self.clips[index].name}: {where}no encoder was given to "
                            "compute them from the video")
        return encoder.encode(self.frames(index)[None])[0]
