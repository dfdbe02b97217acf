"""The video-to-audio metric set, split into per-clip features (cached with each shard) and set metrics.

``features`` turns a chunk of generated waveforms into what the runner caches per clip: the VGGish embeddings
of the clip's 0.96 s patches, flattened, then its PANNs Cnn14 embedding (2048), and as per-clip outputs the 527
Cnn14 logits. ``score`` rebuilds :class:`~condbench.metrics.audio.AudioFeatures` from them and computes, with
:func:`~condbench.metrics.audio.audio_scores`, FD_VGG (patches of every clip pooled, as av-benchmark does),
FD_PANNs, KL against the ground-truth clip of the same index and IS. The runner's labels are clip indices, so a
bootstrap resample of clips carries the ground truth of each resampled clip with it.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from ..cache import content_problem
from ..metrics.audio import (AUDIO_PROTOCOL, IS_SPLITS, SAMPLE_RATE, AudioFeatureExtractor, AudioFeatures,
                             audio_scores, kl_per_clip, panns_inception_score, prepare_waveform)
from ..metrics.frechet import FrechetToReference
from ..metrics.vggish import EMBEDDING_DIM

PANNS_DIM = 2048


def pack(features: AudioFeatures) -> tuple[torch.Tensor, torch.Tensor]:
    """AudioFeatures of N clips with P patches each -> (N, P * 128 + 2048) features, (N, 527) logits."""
    patches = np.stack(features.vggish)  # (N, P, 128): clips of one length have the same number of patches
    flat = np.concatenate([patches.reshape(len(patches), -1), features.panns_embedding], axis=1)
    return torch.from_numpy(flat.astype(np.float32)), torch.from_numpy(features.panns_logits.astype(np.float32))


def unpack(features, logits, clip_ids: Optional[Sequence[str]] = None) -> AudioFeatures:
    """The inverse of :func:`pack` (float64)."""
    features, logits = np.asarray(features, dtype=np.float64), np.asarray(logits, dtype=np.float64)
    patches = (features.shape[1] - PANNS_DIM) // EMBEDDING_DIM
    vggish = features[:, :patches * EMBEDDING_DIM].reshape(len(features), patches, EMBEDDING_DIM)
    return AudioFeatures(list(vggish), features[:, patches * EMBEDDING_DIM:], logits,
                         None if clip_ids is None else list(clip_ids))


def truth_arrays(features: AudioFeatures) -> dict[str, np.ndarray]:
    """Ground-truth features as the arrays of one cache file: clips may differ in length (av-benchmark keeps clips
    shorter than the cut unpadded), so their VGGish patches are stored end to end with each clip's patch count
    (float32)."""
    return {"vggish": np.concatenate(features.vggish).astype(np.float32),  # (sum P_i, 128)
            "patches": np.array([len(v) for v in features.vggish], dtype=np.int64),  # (N,)
            "panns_embedding": features.panns_embedding.astype(np.float32),  # (N, 2048)
            "logits": features.panns_logits.astype(np.float32)}  # (N, 527)


def truth_from_arrays(arrays: dict[str, np.ndarray]) -> AudioFeatures:
    """The inverse of :func:`truth_arrays` (float64)."""
    vggish = np.split(arrays["vggish"].astype(np.float64), np.cumsum(arrays["patches"])[:-1])
    return AudioFeatures(vggish, arrays["panns_embedding"].astype(np.float64), arrays["logits"].astype(np.float64))


def truth_problem(arrays: dict[str, np.ndarray], clips: int) -> Optional[str]:
    """What is wrong with cached :func:`truth_arrays` of ``clips`` clips, or None: a row per clip, as many VGGish
    rows as the patch counts add up to, all finite."""
    problem = content_problem(arrays, {"patches": clips, "panns_embedding": clips, "logits": clips},
                              finite=("vggish", "panns_embedding", "logits"))
    if problem is None:
        problem = content_problem(arrays, {"vggish": int(arrays["patches"].sum())})
    return problem


class AudioEvaluator:
    """FD_VGG, FD_PANNs, KL and IS of generated clips against the ground truth of the same clips (av-benchmark)."""

    def __init__(self, extractor: AudioFeatureExtractor, ground_truth: AudioFeatures, clip_ids: Sequence[str],
                 clip_seconds: float, *, truth_reading: str, sample_rate: int = SAMPLE_RATE,
                 is_splits: int = IS_SPLITS, batch_size: int = 16, weights: Optional[dict] = None):
        if len(ground_truth) != len(clip_ids):
            raise ValueError(f"{len(ground_truth)} ground-truth clips for {len(clip_ids)} clip ids")
        self.extractor = extractor
        self.ground_truth = ground_truth  # in clip-index order
        self.clip_ids = list(clip_ids)
        self.clip_seconds = clip_seconds
        self.truth_reading = truth_reading  # how the ground truth was read, for the protocol
        self.sample_rate = sample_rate
        self.is_splits = is_splits
        self.batch_size = batch_size
        self.weights = weights or {}
        self._fast: Optional[tuple[FrechetToReference, FrechetToReference]] = None

    @torch.no_grad()
    def features(self, waveforms: torch.Tensor, conditions=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Generated waveforms (N, L) at ``sample_rate`` -> features (N, P * 128 + 2048) and logits (N, 527).

        Each clip is read as av-benchmark reads a file (mean removed, 16 kHz, the first ``clip_seconds``)."""
        if waveforms.ndim != 2:
            raise ValueError(f"the audio task scores waveforms (N, L), got {tuple(waveforms.shape)}")
        feats, logits = [], []
        for chunk in waveforms.split(self.batch_size):
            clips = torch.stack([prepare_waveform(w, self.sample_rate, self.clip_seconds) for w in chunk])  # (n, L')
            f, l = pack(self.extractor(clips))
            feats.append(f)
            logits.append(l)
        return torch.cat(feats), torch.cat(logits)

    def _pair(self, features, logits, labels) -> tuple[AudioFeatures, AudioFeatures]:
        index = np.asarray(labels, dtype=np.int64)
        ids = [self.clip_ids[i] for i in index]
        generated = unpack(features, logits, ids)
        truth = self.ground_truth.subset(index)
        return generated, AudioFeatures(truth.vggish, truth.panns_embedding, truth.panns_logits, ids)

    def score(self, features, logits, labels) -> dict[str, float]:
        """Every metric of the clips ``labels`` (clip indices): :func:`audio_scores`, its protocol left to
        :meth:`protocol_line` (records carry it once)."""
        scores = audio_scores(*self._pair(features, logits, labels), is_splits=self.is_splits,
                              clip_seconds=self.clip_seconds)
        scores.pop("protocol")
        return scores

    def bootstrap_score(self, features, logits, labels) -> dict[str, float]:
        """The resampled metrics: FD_VGG and FD_PANNs against the whole ground-truth set (a fixed reference, as
        the ImageNet task's FID; the eigenvalue form), KL paired by resampled clip, IS of the resampled clips."""
        if self._fast is None:
            from ..metrics.frechet import feature_statistics

            self._fast = (FrechetToReference(*feature_statistics(np.concatenate(self.ground_truth.vggish))),
                          FrechetToReference(*feature_statistics(self.ground_truth.panns_embedding)))
        generated, truth = self._pair(features, logits, labels)
        by_name = np.argsort(generated.clip_ids, kind="stable")
        return {"fd_vgg": self._fast[0].distance(np.concatenate(generated.vggish)),
                "fd_panns": self._fast[1].distance(generated.panns_embedding),
                "kl": float(kl_per_clip(generated.panns_logits, truth.panns_logits).mean()),
                "is": panns_inception_score(generated.panns_logits[by_name], self.is_splits)[0]}

    def protocol(self) -> dict:
        return dict(AUDIO_PROTOCOL, clip_seconds=self.clip_seconds, is_splits=self.is_splits, weights=self.weights,
                    truth_reading=self.truth_reading)

    def protocol_line(self) -> str:
        """How every number was computed, in one line for each result record."""
        p = self.protocol()
        weights = ", ".join(f"{k} sha256 {v[:16]}" for k, v in self.weights.items())
        return (f"av-benchmark protocol ({p['reference']}), our VGGish/Cnn14 ports ({weights}); clips cut to "
                f"{self.clip_seconds:g} s at {p['sample_rate']} Hz; generated clips: the decoder's "
                f"{self.sample_rate} Hz waveform read as av-benchmark reads a file ({p['reading']}); ground truth: "
                f"{p['truth_reading']}; FD_VGG: {p['fd_vgg']}; FD_PANNs: {p['fd_panns']}; "
                f"KL: {p['kl']}; IS: {p['is']}; generated clip i paired with ground-truth clip i; paired-bootstrap "
                "intervals resample clips with FD against the whole ground-truth set (eigenvalue form)")
