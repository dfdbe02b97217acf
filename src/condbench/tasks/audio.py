"""Video-to-audio on the VGGSound test split (MDSGen), scored with av-benchmark's FD_VGG / FD_PANNs / KL / IS.

Sample i is clip i of the split (csv order; ``num_clips`` keeps the first N). Its condition is the clip's CAVP
features (32, 512): a precomputed ``{name}.npz`` in ``feature_dir`` when there is one, else CAVP run on the
clip's frames, saved once per clip in the shard cache ``$CONDBENCH_CACHE/vggsound/cavp/`` (keyed by the
checkpoint's sha256 and the clip; features do not depend on the policy). The Table-1 statistics of c run over the
same clips. Generated sound is compared with the clip's own sound (``{name}.wav`` in ``audio_dir``, else the
clip's audio stream), both read as av-benchmark reads a file (:data:`TRUTH_READING`) and cut to ``clip_seconds``
(8 s: av-benchmark's VGGSound length; 8.16 s, MDSGen's full output, is the other choice). The ground truth's
metric features are computed once and cached (keyed by the sound files, the reading, the cut and the weights).
Both caches are checked on read (checksum, a finite row per frame or clip); a damaged file is moved to
``quarantine/`` and computed again.
"""
from __future__ import annotations

from functools import cached_property
from typing import Callable, Optional

import torch

from ..cache import ShardCache, cache_key, content_problem
from ..checkpoints import file_sha256
from ..datasets.vggsound import FRAMES, VIDEO_SOUND_READING, VGGSoundClips
from ..hub import offline
from ..metrics.audio import AUDIO_PROTOCOL, CLIP_SECONDS, IS_SPLITS, SAMPLE_RATE, AudioFeatures, prepare_waveform
from .audio_files import AudioFiles, vggsound_root
from .audio_metrics import AudioEvaluator, truth_arrays, truth_from_arrays, truth_problem

TRUTH_READING = ("{name}.wav of audio_dir read exactly as av-benchmark reads a file (condbench's load_clip, checked "
                 "bit-exact against av-benchmark's reader: soundfile as torchaudio.load, then the steps above; a clip "
                 "shorter than the cut is scored as it is, unpadded); a clip without a wav: "
                 f"{VIDEO_SOUND_READING}, then the same steps from the mean removal on (the whole stream's mean, the "
                 "first clip_seconds): close to, not bit-exact with, av-benchmark on a wav extracted from the clip, "
                 "which it would resample with torchaudio's resampler")


class AudioTask(AudioFiles):
    """VGGSound test clips, their CAVP conditions, their ground-truth sound and the audio metric set.

    Options: ``csv`` (the published vggsound.csv; default ``$CONDBENCH_CACHE/vggsound/vggsound.csv``),
    ``clip_dir`` (the mp4 clips; default ``$CONDBENCH_CACHE/vggsound/clips``), ``feature_dir`` (precomputed CAVP
    ``.npz``), ``audio_dir`` (ground-truth ``.wav``), ``num_clips`` (the first N test clips; None: all),
    ``clip_seconds`` (the cut of both sides; default 8), ``cavp_weights``, ``vggish_weights``, ``panns_weights``
    (local files; else the cache or a one-time download), ``device`` (of CAVP and the metric networks).
    """
    headline_metrics = ("fd_vgg", "fd_panns", "kl", "is")  # the report's across-tasks columns

    name = "audio"
    condition_kind = "video"
    default_model = "mdsgen-b-2"
    grid_count = 8  # clips kept for the report's players, the same for every policy
    clip_files = VGGSoundClips  # the clips with their frames, sound and features

    def __init__(self, csv: Optional[str] = None, clip_dir: Optional[str] = None, feature_dir: Optional[str] = None,
                 audio_dir: Optional[str] = None, split: str = "test", num_clips: Optional[int] = None,
                 clip_seconds: float = CLIP_SECONDS, is_splits: int = IS_SPLITS, cavp_weights: Optional[str] = None,
                 vggish_weights: Optional[str] = None, panns_weights: Optional[str] = None,
                 device: Optional[str] = None):
        if not 0 < clip_seconds <= 8.16:
            raise ValueError(f"clip_seconds must be in (0, 8.16] (MDSGen generates 8.16 s), got {clip_seconds}")
        super().__init__(csv=csv, clip_dir=clip_dir, feature_dir=feature_dir, audio_dir=audio_dir, split=split,
                         num_clips=num_clips, cavp_weights=cavp_weights, vggish_weights=vggish_weights,
                         panns_weights=panns_weights)
        self.clip_seconds, self.is_splits = clip_seconds, is_splits
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._evaluator: Optional[AudioEvaluator] = None

    # --- clips and conditions

    @property
    def num_samples(self) -> int:
        return len(self.clips)

    def clip_ids(self) -> list[str]:
        return [clip.name for clip in self.clips.clips]

    @cached_property
    def _encoder(self):
        from ..adapters.cavp import CAVPEncoder

        return CAVPEncoder.from_checkpoint(self.cavp_checkpoint()).to(self.device)

    @cached_property
    def _feature_cache(self) -> ShardCache:
        """The per-clip CAVP feature cache (:mod:`condbench.cache`: checksum, a finite row per frame, a damaged file
        moved aside and computed again)."""
        return ShardCache(vggsound_root() / "cavp")

    def _cached_features(self, index: int) -> torch.Tensor:
        """CAVP features of a clip without a feature file: from the per-clip cache, else encoded and saved."""
        key = cache_key(kind="CAVP features", checkpoint=self._encoder.checkpoint["sha256"],
                        clip=self.clips[index].name)
        found = self._feature_cache.get(key, lambda arrays: content_problem(arrays, {"features": FRAMES},
                                                                            finite=("features",)))
        if found is not None:
            return torch.from_numpy(found["features"])
        feats = self.clips.features(index, self._encoder).cpu()  # (32, 512)
        self._feature_cache.put(key, {"features": feats.numpy()})
        return feats

    @cached_property
    def _conditions(self) -> torch.Tensor:
        feats = []
        for i in range(len(self.clips)):
            path = self.clips.feature_path(i)
            feats.append(self.clips.features(i) if path is not None and path.is_file() else self._cached_features(i))
        return torch.stack(feats)  # (N, 32, 512)

    def conditions(self) -> torch.Tensor:
        """CAVP features of every clip, in split order: (N, 32, 512)."""
        return self._conditions

    def analysis_conditions(self) -> torch.Tensor:
        """The Table-1 statistics run over the same clips (the study's Table 1 uses the test clips)."""
        return self._conditions

    def labels(self) -> torch.Tensor:
        """What the metrics pair each sample with: its clip index (N,), so resampled clips keep their ground truth."""
        return torch.arange(len(self.clips))

    def prepare_adapter(self, adapter) -> None:
        """Give the adapter the clips' conditions for ``mask=fixed`` policies (the mean video part of c)."""
        if hasattr(adapter, "set_reference_conditions"):
            adapter.set_reference_conditions(self._conditions)

    # --- files the run needs

    def required_inputs(self) -> list[Callable[[], object]]:
        """Every file the run needs, found (the metric networks load when scoring starts); the preflight calls each
        and lists every failure at once."""
        return self.file_checks()

    # --- metrics

    @property
    def evaluator(self) -> AudioEvaluator:
        """The metric set with the ground-truth clips' features (read at 16 kHz, then prepared as av-benchmark
        reads a file), built on first use."""
        if self._evaluator is None:
            from ..metrics.audio import AudioFeatureExtractor

            vggish, panns = self.vggish_path(), self.panns_path()
            extractor = AudioFeatureExtractor.from_weights(vggish, panns, self.device, download=not offline())
            weights = {"vggish": file_sha256(vggish), "panns": file_sha256(panns)}
            self._evaluator = AudioEvaluator(extractor, self._truth_features(extractor, weights), self.clip_ids(),
                                             self.clip_seconds, truth_reading=TRUTH_READING,
                                             is_splits=self.is_splits, weights=weights)
        return self._evaluator

    def truth_waveform(self, index: int) -> torch.Tensor:
        """Clip ``index``'s ground truth as av-benchmark reads a file (a wav: exactly
        :func:`~condbench.metrics.audio.load_clip`): (L,) float32 at 16 kHz, L <= 16000 * clip_seconds."""
        return prepare_waveform(*self.clips.sound(index), seconds=self.clip_seconds)

    def _truth_features(self, extractor, weights: dict) -> AudioFeatures:
        """The ground-truth clips' VGGish / Cnn14 features, computed once and cached under
        ``$CONDBENCH_CACHE/vggsound/truth_features/`` with the shard cache's guarantees (:mod:`condbench.cache`),
        keyed by every clip's sound file (path, size, modification time), how it is read, the cut and the weights'
        sha256 (they do not depend on the model or the policy)."""
        files = [self.clips.audio_path(i) for i in range(len(self.clips))]
        cache = ShardCache(vggsound_root() / "truth_features")
        key = cache_key(kind="VGGSound truth features",
                        files=[[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files],
                        reading=[AUDIO_PROTOCOL["reading"], TRUTH_READING], clip_seconds=self.clip_seconds,
                        sample_rate=SAMPLE_RATE, weights=weights)
        arrays = cache.get(key, lambda found: truth_problem(found, len(files)))
        if arrays is None:
            arrays = truth_arrays(extractor([self.truth_waveform(i) for i in range(len(files))]))
            cache.put(key, arrays)
        return truth_from_arrays(arrays)  # the same float32 values whether just computed or cached

    def describe(self) -> dict:
        return {"task": self.name, "split": self.split, "num_samples": self.num_samples, "csv": str(self.csv),
                "clip_seconds": self.clip_seconds, "sample_rate": SAMPLE_RATE,
                "metric_options": {"is_splits": self.is_splits, "feature_dir": self.feature_dir,
                                   "audio_dir": self.audio_dir},
                "metric_protocol": self.evaluator.protocol_line()}
