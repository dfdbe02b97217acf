"""Pose-guided person images (X-MDPT on DeepFashion), scored with the PIDM protocol.

Sample i is test pair i of ``test_pairs.txt`` (the source chosen from (seed, i)); its condition is X-MDPT's
``cond`` dict: the DINOv2 features of the source image and of the target's skeleton, and a posterior sample of
the source's VAE latent seeded by (seed, i). None of it depends on the model size or the policy, so it is
computed once per pair and cached on disk under a key of the pair's files, the seed, the encoders' weights and
the VAE (``condition_cache``, default ``<cache>/pose_conditions``). Table-1 statistics run over the pairs.

Conditions are not class ids: :class:`PairConditions` has a length and slices into ``cond`` dicts, so the
runner's ``conditions[b0:b1]`` works unchanged; the slice also carries its pair indices for the evaluator.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch

from ..cache import ShardCache, cache_key
from ..checkpoints import file_sha256
from ..hub import cache_root
from .pose_files import PoseFiles
from .pose_metrics import PoseEvaluator

TEST_PAIRS = 8570  # pairs in the PIDM/GFLA test_pairs.txt
ENCODE_BATCH = 16  # pairs per encoder call when conditions are computed
CONDITION_FORMAT = 1


class PairBatch(Mapping):
    """X-MDPT's ``cond`` dict for consecutive pairs, with their pair indices (``indices``) for the evaluator.

    Built from tensors, or from a reader called on first access: the evaluator needs only ``indices``, and an adapter
    that has embedded the whole set (``source``, the :class:`PairConditions` it was sliced from) only takes its
    rows, so neither reads the per-pair condition files again.
    """

    def __init__(self, tensors: dict[str, torch.Tensor] | Callable[[], Mapping[str, torch.Tensor]], indices: Sequence[int],
                 source: Optional["PairConditions"] = None):
        self._tensors = dict(tensors) if isinstance(tensors, Mapping) else None
        self._read = None if isinstance(tensors, Mapping) else tensors
        self.indices, self.source = indices, source

    def _loaded(self) -> dict[str, torch.Tensor]:
        if self._tensors is None:
            self._tensors = dict(self._read())
        return self._tensors

    def __getitem__(self, key: str) -> torch.Tensor:
        return self._loaded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaded())

    def __len__(self) -> int:
        return len(self._loaded())

    def tile(self, times: int) -> "PairBatch":
        """The same pairs repeated ``times`` times (one copy per policy sampled together), still read lazily."""
        tiled = (lambda: {key: value.repeat(times, *([1] * (value.ndim - 1))) for key, value in self._loaded().items()})
        return PairBatch(tiled, list(self.indices) * times, source=self.source)


class PairConditions:
    """The conditions of ``count`` pairs, read (or computed) when used: ``conditions[a:b]`` -> :class:`PairBatch`."""

    def __init__(self, load: Callable[[range], Mapping[str, torch.Tensor]], count: int):
        self._load, self._count = load, count

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, key: slice) -> PairBatch:
        if not isinstance(key, slice):
            raise TypeError(f"pose conditions slice into cond dicts (conditions[a:b]), got index {key!r}")
        rows = range(self._count)[key]
        return PairBatch(lambda: self._load(rows), rows, source=self)

    def tile(self, times: int) -> PairBatch:
        """Every pair, repeated ``times`` times (one copy per policy sampled together)."""
        return self[:].tile(times)

    def batches(self, size: int) -> Iterator[PairBatch]:
        """Consecutive cond dicts of at most ``size`` pairs, for whole-set passes (the embedding analysis)."""
        for start in range(0, self._count, size):
            yield self[start:start + size]


class PairedConditionsMixin:
    """What a paired task's conditions are to the runner: pair i's ``cond`` dict on slicing, the same pairs for the
    Table-1 analysis (continuous conditions: statistics over pairs, not classes), the pair index as each sample's
    label, and the pairs' mean condition for ``mask=fixed`` policies. A task gives ``pair_batch`` and ``num_samples``."""

    @cached_property
    def _conditions(self) -> PairConditions:
        return PairConditions(self.pair_batch, self.num_samples)

    def conditions(self) -> PairConditions:
        """The condition of every sample index: pair i's ``cond`` dict, on slicing."""
        return self._conditions

    def analysis_conditions(self) -> PairConditions:
        """Every pair once."""
        return self._conditions

    def labels(self) -> torch.Tensor:
        """What each sample is scored against: its pair index (N,), indexable by the paired bootstrap."""
        return torch.arange(self.num_samples)

    def prepare_adapter(self, adapter) -> None:
        """The adapter's mean condition over the pairs, for ``mask=fixed`` policies."""
        adapter.set_condition_mean(self._conditions)


def folder_sha256(folder: Path) -> dict[str, str]:
    """sha256 of every file of a folder (the VAE's config and weights), by relative path."""
    return {str(p.relative_to(folder)): file_sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


class PoseTask(PoseFiles, PairedConditionsMixin):
    """DeepFashion test pairs, their X-MDPT conditions, and the PIDM metric set.

    Options: ``root`` (pairs files, ``pose/``, default ``<cache>/deepfashion``), ``images`` (the LMDB or PNG
    folder, default ``ROOT/256-256``), ``train_images`` (the FID real set: the TRAIN images as 256x256 PNGs in one
    folder, default ``ROOT/train_256x256_pngs``), ``num_pairs`` (the first N test pairs; None: all 8,570),
    ``seed`` (source choice and source-latent noise), ``vae`` (X-MDPT's fine-tuned VAE folder, to encode sources),
    ``dinov2_pose`` / ``dinov2_source`` (the official ViT-B/14 and ViT-g/14 files), ``dinov2_overrides`` (smaller
    DINOv2s, for tests), ``alexnet_weights``, ``inception_weights``, ``fid`` / ``lpips`` (False leaves it out),
    ``condition_cache``, ``encoder_device``.
    """
    headline_metrics = ("fid", "ssim", "lpips", "psnr")  # the report's across-tasks columns
    resampled_frechet_dims = {"fid": 2048}  # what each bootstrap resample recomputes (Inception pool features)

    name = "pose"
    condition_kind = "pose"
    default_model = "xmdpt-s-2"
    grid_count = 8  # pairs shown in the report's pair grids

    def __init__(self, root: Optional[str] = None, images: Optional[str] = None, train_images: Optional[str] = None,
                 num_pairs: Optional[int] = None, seed: int = 0, vae: Optional[str] = None,
                 dinov2_pose: Optional[str] = None, dinov2_source: Optional[str] = None,
                 dinov2_overrides: Optional[dict] = None, alexnet_weights: Optional[str] = None,
                 inception_weights: Optional[str] = None, fid: bool = True, lpips: bool = True, condition_cache: Optional[str] = None,
                 encoder_device: Optional[str] = None):
        if num_pairs is not None and num_pairs < 1:
            raise ValueError(f"num_pairs must be >= 1 (or None for every test pair), got {num_pairs}")
        super().__init__(root=root, images=images, train_images=train_images, vae=vae, dinov2_pose=dinov2_pose,
                         dinov2_source=dinov2_source, alexnet_weights=alexnet_weights,
                         inception_weights=inception_weights, fid=fid, lpips=lpips)
        self.num_pairs, self.seed = num_pairs, seed
        self.dinov2_overrides = dict(dinov2_overrides or {})
        self.condition_cache = Path(condition_cache) if condition_cache else cache_root() / "pose_conditions"
        self.encoder_device = encoder_device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._evaluator: Optional[PoseEvaluator] = None

    # --- pairs and conditions

    def prepare_adapter(self, adapter) -> None:
        """The mean condition (``mask=fixed``), and X-MDPT's one VAE: a model given no decoder folder decodes with
        the task's (task option ``vae``), as ``infer_xmdpt.py`` encodes sources and decodes samples with one VAE."""
        from ..adapters.xmdpt import XMDPTVAE

        super().prepare_adapter(adapter)
        if isinstance(getattr(adapter, "decoder", None), XMDPTVAE) and adapter.decoder.folder is None:
            adapter.decoder = XMDPTVAE(self.vae_path())  # its own copy: decoding may run beside the encoders

    @cached_property
    def dataset(self):
        from ..datasets.deepfashion import DeepFashionPairs

        return DeepFashionPairs(self.root, "test", self.images, seed=self.seed)

    @property
    def num_samples(self) -> int:
        if not (self.root / "test_pairs.txt").is_file():
            return self.num_pairs or TEST_PAIRS  # a plan before the files exist
        return min(len(self.dataset), self.num_pairs or len(self.dataset))

    def _dinov2_spec(self, spec):
        return dataclasses.replace(spec, **self.dinov2_overrides) if self.dinov2_overrides else spec

    @cached_property
    def encoders(self):
        from ..encoders.dinov2 import DINOV2_VITB14, DINOV2_VITG14, XMDPTEncoders, load_dinov2

        pose, source = self.dinov2_pose_path(), self.dinov2_source_path()
        return XMDPTEncoders(load_dinov2(self._dinov2_spec(DINOV2_VITB14), pose).to(self.encoder_device).eval(),
                             load_dinov2(self._dinov2_spec(DINOV2_VITG14), source).to(self.encoder_device).eval())

    @cached_property
    def vae(self):
        from ..adapters.xmdpt import XMDPTVAE

        return XMDPTVAE(self.vae_path())

    @cached_property
    def condition_identity(self) -> dict:
        """What the cached conditions depend on besides each pair: seed, encoder weights, VAE files."""
        pose, source = self.dinov2_pose_path(), self.dinov2_source_path()
        return {"format": CONDITION_FORMAT, "seed": self.seed, "dinov2_pose": file_sha256(pose),
                "dinov2_source": file_sha256(source), "dinov2_overrides": self.dinov2_overrides,
                "vae": folder_sha256(self.vae_path()), "encode_dtype": "float32"}

    def _pair_key(self, index: int) -> str:
        """The cache key of pair ``index``'s condition: the bytes of its source image and target keypoints."""
        import hashlib

        pair = self.dataset.pairs[index]
        source = self.dataset.images.get(pair.source) or b""
        keypoints = self.dataset.root / pair.target_pose
        return cache_key(kind="xmdpt-pair-condition", index=index, target=pair.target, source=pair.source,
                         source_sha256=hashlib.sha256(source).hexdigest(),
                         keypoints_sha256=file_sha256(keypoints) if keypoints.is_file() else None,
                         **self.condition_identity)

    def pair_batch(self, indices: range) -> PairBatch:
        """The ``cond`` dict of pairs ``indices``, from the condition cache or computed (and cached) now."""
        from ..adapters.xmdpt import COND_KEYS, pair_conditions

        store = ShardCache(self.condition_cache)
        keys = {i: self._pair_key(i) for i in indices}
        found = {i: store.get(keys[i]) for i in indices}
        todo = [i for i in indices if found[i] is None]
        for start in range(0, len(todo), ENCODE_BATCH):
            chunk = todo[start:start + ENCODE_BATCH]
            samples = [self.dataset[i] for i in chunk]
            sources = torch.stack([s.source_image for s in samples]).float().div(255)  # (B, 3, 256, 256) in [0, 1]
            skeletons = torch.stack([s.pose for s in samples])  # (B, 3, 256, 256) in [0, 1], max 1
            cond = pair_conditions(sources.to(self.encoder_device), skeletons.to(self.encoder_device),
                                   encoders=self.encoders, vae=self.vae, seed=self.seed, indices=chunk)
            for j, i in enumerate(chunk):
                found[i] = {k: cond[k][j].float().cpu().numpy() for k in COND_KEYS}
                store.put(keys[i], found[i])
        tensors = {k: torch.stack([torch.from_numpy(found[i][k]) for i in indices]) if len(indices)
                   else torch.empty(0) for k in COND_KEYS}
        return PairBatch(tensors, indices)

    # --- what the metrics compare against

    def targets(self, indices: Sequence[int]) -> torch.Tensor:
        """The ground-truth target images (N, 3, 256, 256) uint8 of pairs ``indices``."""
        pairs = [self.dataset.pairs[i] for i in indices]
        return torch.stack([torch.from_numpy(self.dataset.read_image(p, p.target)).permute(2, 0, 1).contiguous()
                            for p in pairs])

    def pair_images(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """Source, skeleton and target (each (N, 3, 256, 256) uint8) of pairs ``indices``: the report's pair grids."""
        samples = [self.dataset[i] for i in indices]
        return {"source": torch.stack([s.source_image for s in samples]),
                "pose": torch.stack([s.skeleton_image for s in samples]),
                "target": torch.stack([s.target_image for s in samples])}

    def grid_context(self, count: int) -> dict[str, np.ndarray]:
        """Source, skeleton and target of the first ``count`` pairs ((count, 3, 256, 256) float32 in [0, 1]), stored
        beside the sample grids so the report can show source | pose | target | each policy per pair."""
        images = self.pair_images(range(count))
        return {part: x.float().div(255).numpy() for part, x in images.items()}

    # --- preflight

    def required_inputs(self) -> list[Callable[[], object]]:
        """The file checks, with the metric networks loaded rather than only found (the evaluator then uses these
        loads); the run's preflight calls each before any sampling."""
        loads = {self.inception_path: lambda: self.inception, self.alexnet_path: lambda: self.lpips}
        return [loads.get(check, check) for check in self.file_checks()]

    # --- metric networks (loaded once; the preflight's check is the load the evaluator then uses)

    @cached_property
    def inception(self):
        from ..metrics.pidm_fid import PidmInception

        return PidmInception.load(self.inception_path(), device=self.encoder_device)

    @cached_property
    def lpips(self):
        from ..metrics.paired_image import LPIPSAlex

        return LPIPSAlex.load(self.alexnet_path(), device=self.encoder_device)

    @property
    def evaluator(self) -> PoseEvaluator:
        if self._evaluator is None:
            from ..metrics.pidm_fid import reference_statistics

            inception = reference = None
            if self.use_fid:
                self.check_train_images()
                inception = self.inception
                reference = reference_statistics(self.train_images, inception)
            self._evaluator = PoseEvaluator(self.targets, inception, reference, self.lpips if self.use_lpips else None)
        return self._evaluator

    def describe(self) -> dict:
        return {"task": self.name, "root": str(self.root), "pairs": str(self.root / "test_pairs.txt"),
                "num_samples": self.num_samples, "seed": self.seed, "train_images": str(self.train_images),
                "conditions": {k: v for k, v in self.condition_identity.items() if k != "vae"} | {
                    "vae_folder": str(self.vae_path())},
                "metric_options": {"fid": self.use_fid, "lpips": self.use_lpips, "inception_weights": self.inception_weights,
                                   "alexnet_weights": self.alexnet_weights},
                "metric_details": self.evaluator.protocol(), "metric_protocol": self.evaluator.protocol_line()}
