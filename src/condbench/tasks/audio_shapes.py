"""The built-in video-to-audio task ``audio-shapes``: synthetic clips, a tiny MDSGen, Griffin-Lim, its own metrics.

Sample i is synthetic clip i (:mod:`condbench.datasets.shapes_audio`, written once into
``$CONDBENCH_CACHE/audio-shapes/v{version}-seed{seed}/`` and read back through decord); its condition is the
parameter-free per-frame description of its video (16, 12). ``mdsgen-shapes`` (MDSGen's network at a tiny size,
its DPM-Solver++ sampler with power-cosine guidance) generates the normalised log-mel (1, 32, 16), decoded with
Griffin-Lim. A small CNN trained on the task's sounds scores them in ITS OWN feature space: ``fd_shapes_cnn``
(Frechet distance of its 32-d penultimate features, generated vs the ground-truth clips), ``kl_shapes_cnn``
(KL(ground truth || generated) of its 12-way softmax, paired by clip) and ``is_shapes_cnn``. These are NOT
FD_VGG / FD_PANNs / PANNs KL / IS and are not comparable with them. Both networks ship in the package and are
reproduced by ``condbench train audio-shapes``.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from ..adapters.griffin_lim import SHAPES_MEL, LogMel
from ..adapters.mdsgen_model import MDSGenConfig
from ..cache import ShardCache, cache_key, content_problem
from ..checkpoints import file_sha256, load_state_dict, load_strict, require_file
from ..datasets.shapes_audio import (AUDIO_SAMPLES, FEATURE_DIM, FRAMES, GENERATOR_VERSION, NUM_CLASSES, SAMPLE_RATE,
                                     ShapeClips)
from ..datasets.vggsound_files import ClipError
from ..hub import cache_root
from ..metrics import feature_statistics, inception_score
from ..metrics.audio import kl_per_clip
from ..metrics.frechet import FrechetToReference
from ..storage import move_aside
from . import asset_path
from .shipped import SHAPES_MDSGEN

# MDSGen's network at a tiny size on the task's log-mel "latent" (1, 32 frames, 16 bands): 8x4 tokens of 4x4
# patches, D = 64, eps prediction only (the sampler reads the first in_channels outputs). D must stay well above
# the 16 values of a patch: at high noise eps is nearly the input itself, and the data prediction of
# DPM-Solver++ divides its error by alpha (0.0064 at t = 999); 8x8 patches at D = 64 diverged.
SHAPES_MDSGEN_CONFIG = MDSGenConfig(latent_size=(32, 16), patch_size=4, in_channels=1,
                                    hidden_size=SHAPES_MDSGEN.hidden_size, depth=4,
                                    num_heads=4, learn_sigma=False, decode_layer=1, frequency_embedding_size=64,
                                    num_frames=FRAMES, feature_dim=FEATURE_DIM)
SHAPES_SAMPLER = SHAPES_MDSGEN.sampler

ASSET_MDSGEN = SHAPES_MDSGEN.asset
ASSET_CLASSIFIER = "shapes_audio_classifier.safetensors"
FEATURE_SIZE = 32
METRIC_PROTOCOL = ("shapes-cnn (the project's own audio classifier trained on the task's synthetic sounds; NOT "
                   "comparable with FD_VGG / FD_PANNs / PANNs KL / IS): fd_shapes_cnn = Frechet distance of its "
                   "32-d penultimate features (unbiased covariance; eigenvalue form, exact for these PSD matrices and "
                   "defined with fewer clips than features), generated clips vs all ground-truth clips; "
                   "kl_shapes_cnn = mean KL(softmax(ground truth) || softmax(generated)) over its 12 classes, clip i "
                   "paired with clip i; is_shapes_cnn = IS of its softmax, one split. Input: the log-mel front end "
                   "of the task (16 kHz, 2048-point STFT, hop 1024, 16 Slaney bands to 4 kHz) of the first 1.984 s; "
                   "generated sound decoded with Griffin-Lim; paired-bootstrap intervals resample clips")


class ShapesAudioClassifier(nn.Module):
    """conv(1->8) -> pool -> conv(8->16) -> pool -> fc(512->32) = features -> fc(32->12) = logits."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(16 * 8 * 4, FEATURE_SIZE), nn.ReLU())
        self.head = nn.Linear(FEATURE_SIZE, NUM_CLASSES)

    def forward(self, mels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised log-mels (N, 1, 32, 16) -> features (N, 32), logits (N, 12)."""
        features = self.features(self.conv(mels))
        return features, self.head(features)


def load_classifier(path: Optional[str | Path] = None) -> tuple[ShapesAudioClassifier, dict]:
    """The task's audio classifier (the shipped one unless ``path`` is given)."""
    path = require_file(path or asset_path(ASSET_CLASSIFIER), "audio-shapes classifier",
                        "run `condbench train audio-shapes --out DIR` and pass the task option classifier: "
                        f"DIR/{ASSET_CLASSIFIER}")
    model = ShapesAudioClassifier()
    load_strict(model, load_state_dict(path), source=str(path))
    return model.eval(), {"path": str(path), "sha256": file_sha256(path)}


@torch.no_grad()
def classify(model: ShapesAudioClassifier, waveforms: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (N, 32) and logits (N, 12) of 16 kHz waveforms (N, L >= 31744), through the task's log-mel."""
    mel = LogMel(SHAPES_MEL)
    feats, logits = [], []
    for chunk in waveforms.split(batch_size):
        f, l = model(mel(chunk.float()[:, :AUDIO_SAMPLES]))
        feats.append(f)
        logits.append(l)
    return torch.cat(feats), torch.cat(logits)


class ShapesAudioEvaluator:
    """fd / kl / is in the shapes classifier's space, generated clip i against ground-truth clip i."""

    def __init__(self, classifier: ShapesAudioClassifier, info: dict, truth_features: np.ndarray,
                 truth_logits: np.ndarray):
        self.classifier, self.classifier_info = classifier, info
        self.truth_features, self.truth_logits = truth_features, truth_logits  # (N, 32), (N, 12), clip order
        self.reference = FrechetToReference(*feature_statistics(truth_features))  # all ground-truth clips

    def features(self, waveforms: torch.Tensor, conditions=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Generated waveforms (N, L) at 16 kHz -> features (N, 32), logits (N, 12)."""
        if waveforms.ndim != 2:
            raise ValueError(f"the audio-shapes task scores waveforms (N, L), got {tuple(waveforms.shape)}")
        return classify(self.classifier, waveforms)

    def bootstrap_score(self, features, logits, labels) -> dict[str, float]:
        """The metrics of the clips ``labels`` (clip indices; a bootstrap resample repeats some): FD against all
        ground-truth clips (a fixed reference, as the audio task's resamples), KL paired by clip, IS."""
        index = np.asarray(labels, dtype=np.int64)
        logits = torch.as_tensor(np.asarray(logits, dtype=np.float64))
        return {"fd_shapes_cnn": self.reference.distance(np.asarray(features, dtype=np.float64)),
                "kl_shapes_cnn": float(kl_per_clip(logits, self.truth_logits[index]).mean()),
                "is_shapes_cnn": inception_score(logits)[0]}

    def score(self, features, logits, labels) -> dict[str, float]:
        """:meth:`bootstrap_score` and the number of clips."""
        return {**self.bootstrap_score(features, logits, labels), "clips": len(labels)}


class ShapesAudioTask:
    """Synthetic moving-square clips and their sounds; the conditions are per-frame video features (N, 16, 12).

    Options: ``num_clips`` (the first N clips of ``seed``), ``seed`` (of the test clips; the shipped networks were
    trained on another one), ``classifier`` (a classifier file other than the shipped one), ``clip_dir`` (where the
    clips are written; default ``$CONDBENCH_CACHE/audio-shapes/v{version}-seed{seed}``).
    """
    headline_metrics = ("fd_shapes_cnn", "kl_shapes_cnn", "is_shapes_cnn")  # the report's across-tasks columns

    name = "audio-shapes"
    condition_kind = "video"
    default_model = "mdsgen-shapes"
    grid_count = 8  # clips kept for the report's players, the same for every policy

    def __init__(self, num_clips: int = 64, seed: int = 0, classifier: Optional[str] = None,
                 clip_dir: Optional[str] = None):
        if num_clips < 2:
            raise ValueError(f"num_clips must be >= 2 (the Frechet distance needs two clips), got {num_clips}")
        self.num_clips, self.seed, self.classifier_path = num_clips, seed, classifier
        self.clip_dir = Path(clip_dir).expanduser() if clip_dir else clip_folder(seed)
        self._evaluator: Optional[ShapesAudioEvaluator] = None

    @cached_property
    def clips(self) -> ShapeClips:
        return ShapeClips(self.clip_dir, self.seed, self.num_clips).ensure_written()

    @property
    def num_samples(self) -> int:
        return self.num_clips

    @cached_property
    def _conditions(self) -> torch.Tensor:
        return torch.stack([self._read_clip(self.clips.features, i) for i in range(self.num_clips)])  # (N, 16, 12)

    def conditions(self) -> torch.Tensor:
        """Video features of every clip, decoded from its mp4 through decord: (N, 16, 12)."""
        return self._conditions

    def analysis_conditions(self) -> torch.Tensor:
        return self._conditions

    def labels(self) -> torch.Tensor:
        """Clip index of every sample (N,): what the metrics pair it with."""
        return torch.arange(self.num_clips)

    def prepare_adapter(self, adapter) -> None:
        """Give the adapter the clips' conditions for ``mask=fixed`` policies (the mean video part of c)."""
        if hasattr(adapter, "set_reference_conditions"):
            adapter.set_reference_conditions(self._conditions)

    def required_inputs(self) -> list:
        return [lambda: load_classifier(self.classifier_path)]

    @property
    def evaluator(self) -> ShapesAudioEvaluator:
        if self._evaluator is None:
            classifier, info = load_classifier(self.classifier_path)
            self._evaluator = ShapesAudioEvaluator(classifier, info, *self.truth_features(classifier, info))
        return self._evaluator

    def truth_features(self, classifier: ShapesAudioClassifier, info: dict) -> tuple[np.ndarray, np.ndarray]:
        """The ground-truth clips' classifier features (N, 32) and logits (N, 12), computed once and cached beside
        the clips with the shard cache's guarantees (:mod:`condbench.cache`): keyed by the classifier's sha256 and
        the clips, checked on read (checksum, a finite row per clip); a bad file is moved aside and computed again."""
        cache = ShardCache(self.clip_dir / "truth_features")
        key = cache_key(kind="audio-shapes truth features", classifier=info["sha256"], clips=self.num_clips,
                        seed=self.seed, generator_version=GENERATOR_VERSION)
        rows = {"features": self.num_clips, "logits": self.num_clips}
        found = cache.get(key, lambda arrays: content_problem(arrays, rows, finite=tuple(rows)))
        if found is not None:
            return found["features"], found["logits"]
        truth = torch.stack([self._read_clip(self.clips.audio, i) for i in range(self.num_clips)])  # (N, L)
        features, logits = (t.numpy().astype(np.float64) for t in classify(classifier, truth))
        cache.put(key, {"features": features, "logits": logits})
        return features, logits

    def _read_clip(self, read: Callable[[int], torch.Tensor], index: int) -> torch.Tensor:
        """``read(index)`` of a clip this task wrote itself: an unreadable one is moved aside and written again."""
        try:
            return read(index)
        except ClipError as error:
            self._write_clip_again(index, str(error).split(". ")[0])
        try:
            return read(index)
        except ClipError as error:
            raise ClipError(f"audio-shapes clip {index} in {self.clip_dir} cannot be read even just after writing it "
                            f"({str(error).split('. ')[0]}): the clip writer (imageio-ffmpeg) or reader (decord) "
                            "fails on this machine") from None

    def _write_clip_again(self, index: int, why: str) -> None:
        """Move clip ``index``'s files to ``clip_dir/quarantine`` and write the clip again from its seed."""
        quarantine = self.clip_dir / "quarantine"
        for path in (self.clips.video_path(index), self.clips.audio_path(index)):
            if path.exists():
                move_aside(path, quarantine, f"audio-shapes clip {path}", why)
        print(f"audio-shapes clip {index} is not used ({why}); moved to {quarantine} and written again from "
              f"seed {self.seed}")
        self.clips.ensure_written()

    def describe(self) -> dict:
        return {"task": self.name, "num_samples": self.num_clips, "seed": self.seed,
                "generator_version": GENERATOR_VERSION, "clip_dir": str(self.clip_dir), "sample_rate": SAMPLE_RATE,
                "clip_seconds": AUDIO_SAMPLES / SAMPLE_RATE, "metric_protocol": METRIC_PROTOCOL,
                "classifier": self.evaluator.classifier_info}


def clip_folder(seed: int) -> Path:
    """Where the clips of ``seed`` are written: keyed by the generator's version and the seed."""
    return cache_root() / "audio-shapes" / f"v{GENERATOR_VERSION}-seed{seed}"
