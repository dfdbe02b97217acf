"""Video-to-audio metrics as hkchengrex/av-benchmark computes them: FD_VGG, FD_PANNs, KL(ground truth || generated), IS.

Clips are read the way av-benchmark's ``AudioDataset`` reads them (mono = mean of channels, the clip's mean
removed, resampled to 16 kHz with torchaudio's windowed sinc, cut to the first ``seconds`` and never padded),
then turned into per-clip features (:class:`AudioFeatures`) so a runner can resample clips for intervals, and
scored by :func:`audio_scores`:

- FD_VGG: Frechet distance between the VGGish embeddings of every 0.96 s patch of every clip (patches, not
  clips, are the samples; PCA off, last ReLU removed);
- FD_PANNs: Frechet distance between the Cnn14 16 kHz 2048-d embeddings, one per clip;
- KL: mean over clips of KL(softmax(gt logits) || softmax(generated logits)) on Cnn14's 527 AudioSet logits,
  generated clip i paired with ground-truth clip i (av-benchmark's reported ``KL-PANNS-softmax``);
- IS: Inception Score of the softmax of the generated clips' Cnn14 logits, clips in name order shuffled with
  ``RandomState(2020)``, 10 splits at ``i * N // 10``; mean and std over splits.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .classification import inception_score
from .frechet import feature_statistics, frechet_distance
from .panns import Cnn14, load_cnn14
from .resample import resample
from .vggish import VGGish, load_vggish

AV_BENCHMARK = "hkchengrex/av-benchmark@050a5cdb9bbd1a6f8cbb9fdde076992a695e2501"
SAMPLE_RATE = 16000
CLIP_SECONDS = 8.0  # av-benchmark's --audio_length for VGGSound (MMAudio's evaluation); clips are cut, never padded
IS_SPLITS = 10
IS_SEED = 2020

AUDIO_PROTOCOL: dict = {
    "reference": AV_BENCHMARK,
    "sample_rate": SAMPLE_RATE,
    "clip_seconds": CLIP_SECONDS,
    "reading": "mono = mean of channels; the whole clip's mean subtracted, before resampling; resampled to 16 kHz "
               "with torchaudio's Resample defaults (Hann-windowed sinc, 6 zero crossings, rolloff 0.99); first "
               "clip_seconds kept, shorter clips not padded",
    "fd_vgg": "Frechet distance of VGGish embeddings (vggish-10086976.pth, PCA off, last ReLU removed), one 128-d "
              "sample per non-overlapping 0.96 s patch of every clip",
    "fd_panns": "Frechet distance of PANNs Cnn14 16 kHz embeddings (Cnn14_16k_mAP=0.438.pth, ReLU(fc1), 2048-d), "
                "one per clip",
    "kl": "mean over clips of KL(softmax(ground-truth logits) || softmax(generated logits)), Cnn14's 527 logits, "
          "paired by clip",
    "is": f"Inception Score of softmax(Cnn14 logits) of the generated clips in clip-id order (av-benchmark reads "
          f"files sorted by name), shuffled with "
          f"numpy RandomState({IS_SEED}), {IS_SPLITS} splits at i*N//{IS_SPLITS}; mean (is) and std (is_std)",
    "frechet": "float64 mean and unbiased covariance; ||mu1-mu2||^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2))",
}


def prepare_waveform(audio: torch.Tensor | np.ndarray, sample_rate: int,
                     seconds: Optional[float] = CLIP_SECONDS) -> torch.Tensor:
    """One clip as av-benchmark reads it: (L,) or channels-first (C, L) audio -> (L',) float32 mono at 16 kHz."""
    wave = torch.as_tensor(audio)
    if not wave.is_floating_point() or wave.ndim not in (1, 2) or wave.shape[-1] == 0:
        raise ValueError(f"expected float audio of shape (L,) or (channels, L), got {wave.dtype} {tuple(wave.shape)}")
    if not torch.isfinite(wave).all():
        raise ValueError("the audio contains NaN or infinity")
    wave = wave.to(torch.float32)
    if wave.ndim == 2:
        wave = wave.mean(dim=0)  # (L,)
    wave = resample(wave - wave.mean(), int(sample_rate), SAMPLE_RATE)
    return wave if seconds is None else wave[:int(SAMPLE_RATE * seconds)]


def read_audio(path: str | Path) -> tuple[torch.Tensor, int]:
    """(C, L) float32 samples of an audio file (integer PCM scaled to [-1, 1) as torchaudio.load does) and its rate."""
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path.resolve()}")
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # (L, C)
    except Exception as error:  # soundfile raises its own LibsndfileError for unreadable files
        raise ValueError(f"cannot read audio file {path}: {error}") from None
    if len(data) == 0:
        raise ValueError(f"audio file {path} has no samples")
    return torch.from_numpy(data.T.copy()), int(rate)


def load_clip(path: str | Path, seconds: Optional[float] = CLIP_SECONDS) -> torch.Tensor:
    """An audio file read and prepared like av-benchmark's ``AudioDataset``: (L,) float32 at 16 kHz."""
    return prepare_waveform(*read_audio(path), seconds=seconds)


@dataclass
class AudioFeatures:
    """Per-clip features of N clips, in clip order (row i of generated features pairs with row i of the ground truth)."""

    vggish: list[np.ndarray]  # N arrays (P_i, 128): one embedding per 0.96 s patch
    panns_embedding: np.ndarray  # (N, 2048)
    panns_logits: np.ndarray  # (N, 527)
    clip_ids: Optional[list[str]] = None

    def __post_init__(self):
        n = len(self.vggish)
        if len(self.panns_embedding) != n or len(self.panns_logits) != n or \
                (self.clip_ids is not None and len(self.clip_ids) != n):
            raise ValueError(f"features disagree on the number of clips: {n} VGGish, {len(self.panns_embedding)} "
                             f"PANNs embeddings, {len(self.panns_logits)} PANNs logits"
                             + ("" if self.clip_ids is None else f", {len(self.clip_ids)} clip ids"))

    def __len__(self) -> int:
        return len(self.vggish)

    def subset(self, index: Sequence[int] | np.ndarray) -> "AudioFeatures":
        """The features of clips ``index`` (e.g. a bootstrap resample; repeats allowed)."""
        index = np.asarray(index, dtype=np.int64)
        return AudioFeatures([self.vggish[i] for i in index], self.panns_embedding[index], self.panns_logits[index],
                             None if self.clip_ids is None else [self.clip_ids[i] for i in index])

    @staticmethod
    def concatenate(parts: Sequence["AudioFeatures"]) -> "AudioFeatures":
        """Batches of features joined in order."""
        ids = None if any(p.clip_ids is None for p in parts) else [i for p in parts for i in p.clip_ids]
        return AudioFeatures([v for p in parts for v in p.vggish],
                             np.concatenate([p.panns_embedding for p in parts]),
                             np.concatenate([p.panns_logits for p in parts]), ids)


class AudioFeatureExtractor:
    """VGGish and Cnn14 16 kHz together: 16 kHz waveforms -> :class:`AudioFeatures`."""

    def __init__(self, vggish: VGGish, cnn14: Cnn14):
        self.vggish = vggish.eval()
        self.cnn14 = cnn14.eval()

    @classmethod
    def from_weights(cls, vggish_path: Optional[str | Path] = None, panns_path: Optional[str | Path] = None,
                     device: str | torch.device = "cpu", download: bool = True) -> "AudioFeatureExtractor":
        """Both networks with their published weights (local paths, else the cache, else downloaded once)."""
        return cls(load_vggish(vggish_path, device, download), load_cnn14(panns_path, device, download))

    def __call__(self, waveforms: torch.Tensor | Sequence[torch.Tensor],
                 clip_ids: Optional[Sequence[str]] = None) -> AudioFeatures:
        """Features of 16 kHz clips: a batch (N, L), or a list of (L_i,) clips of any lengths (batched by length)."""
        clips = list(waveforms) if not isinstance(waveforms, torch.Tensor) else None
        if clips is None:
            if waveforms.ndim != 2:
                raise ValueError(f"expected 16 kHz waveforms (N, L) or a list of (L,), got {tuple(waveforms.shape)}")
            parts = [self._batch(waveforms)]
            order = np.arange(len(waveforms))
        else:
            by_length: dict[int, list[int]] = {}
            for i, clip in enumerate(clips):
                if clip.ndim != 1:
                    raise ValueError(f"clip {i} has shape {tuple(clip.shape)}; expected (L,) at 16 kHz")
                by_length.setdefault(clip.shape[0], []).append(i)
            groups = list(by_length.values())
            parts = [self._batch(torch.stack([clips[i] for i in group])) for group in groups]
            order = np.argsort(np.concatenate([np.asarray(g) for g in groups]), kind="stable")
        features = AudioFeatures.concatenate(parts).subset(order)
        if clip_ids is None:
            return features
        return AudioFeatures(features.vggish, features.panns_embedding, features.panns_logits, list(clip_ids))

    def _batch(self, waveforms: torch.Tensor) -> AudioFeatures:
        waveforms = waveforms.to(torch.float32)
        patches = self.vggish.embed(waveforms).cpu().numpy()  # (N, P, 128)
        panns = self.cnn14.embed(waveforms)
        return AudioFeatures(list(patches), panns.embedding.cpu().numpy(), panns.logits.cpu().numpy())


def kl_per_clip(generated_logits: np.ndarray | torch.Tensor, ground_truth_logits: np.ndarray | torch.Tensor) -> np.ndarray:
    """(N,) KL(softmax(ground truth) || softmax(generated)) of paired logits (N, K), in float64."""
    gen = torch.as_tensor(np.asarray(generated_logits), dtype=torch.float64)
    gt = torch.as_tensor(np.asarray(ground_truth_logits), dtype=torch.float64)
    if gen.shape != gt.shape or gen.ndim != 2:
        raise ValueError(f"paired logits must have the same shape (N, K), got {tuple(gen.shape)} and {tuple(gt.shape)}")
    log_p, log_q = torch.log_softmax(gt, dim=1), torch.log_softmax(gen, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1).numpy()


def panns_inception_score(logits: np.ndarray | torch.Tensor, splits: int = IS_SPLITS,
                          seed: int = IS_SEED) -> tuple[float, float]:
    """(mean, std) IS of logits (N, K) as av-benchmark's ``compute_isc``: a seeded shuffle, then ``splits`` parts."""
    logits = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    n = len(logits)
    if n < splits:
        raise ValueError(f"IS over {splits} splits needs at least {splits} clips, got {n}")
    shuffled = logits[torch.from_numpy(np.random.RandomState(seed).permutation(n))]
    scores = [inception_score(shuffled[i * n // splits:(i + 1) * n // splits])[0] for i in range(splits)]
    return float(np.mean(scores)), float(np.std(scores))


def audio_scores(generated: AudioFeatures, ground_truth: AudioFeatures, is_splits: int = IS_SPLITS,
                 clip_seconds: Optional[float] = CLIP_SECONDS) -> dict:
    """{fd_vgg, fd_panns, kl, is, is_std, clips, vggish_patches, protocol} of generated clips paired with their
    ground truth (same order; clip ids, when both carry them, must agree).

    ``clip_seconds`` is recorded in the protocol: pass the cut the clips were prepared with. With clip ids, IS
    takes the clips sorted by id, the order in which av-benchmark reads its folder of files (its shuffle and
    splits depend on it); without, the order given.
    """
    if len(generated) != len(ground_truth):
        raise ValueError(f"{len(generated)} generated clips cannot be paired with {len(ground_truth)} ground-truth clips")
    if generated.clip_ids is not None and ground_truth.clip_ids is not None and \
            generated.clip_ids != ground_truth.clip_ids:
        wrong = next(i for i, (a, b) in enumerate(zip(generated.clip_ids, ground_truth.clip_ids)) if a != b)
        raise ValueError(f"generated and ground-truth clips are not in the same order: position {wrong} is "
                         f"{generated.clip_ids[wrong]!r} vs {ground_truth.clip_ids[wrong]!r}")
    gen_patches, gt_patches = np.concatenate(generated.vggish), np.concatenate(ground_truth.vggish)
    by_name = np.arange(len(generated)) if generated.clip_ids is None else np.argsort(generated.clip_ids, kind="stable")
    is_mean, is_std = panns_inception_score(generated.panns_logits[by_name], is_splits)
    return {
        "fd_vgg": frechet_distance(*feature_statistics(gen_patches), *feature_statistics(gt_patches)),
        "fd_panns": frechet_distance(*feature_statistics(generated.panns_embedding),
                                     *feature_statistics(ground_truth.panns_embedding)),
        "kl": float(kl_per_clip(generated.panns_logits, ground_truth.panns_logits).mean()),
        "is": is_mean,
        "is_std": is_std,
        "clips": len(generated),
        "vggish_patches": len(gen_patches),
        "protocol": dict(AUDIO_PROTOCOL, clip_seconds=clip_seconds, is_splits=is_splits),
    }
