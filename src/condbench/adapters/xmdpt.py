"""X-MDPT (trungpx/xmdpt) with its own sampler, as ``infer_xmdpt.py`` runs it.

Sampler: ``create_diffusion("50")`` (1000 linear betas respaced to 50 steps, learned-range sigma) and
``ddim_sample_loop(model.forward_with_cfg, ..., clip_denoised=False)`` with eta 0; guidance is MDT's power-cosine
schedule (cfg 2.0, pow 0.01: 1.989 at t=999, 2.0 from t~500 on) applied to all 8 output channels
``uncond + s * (cond - uncond)``. The official code runs the two branches as two forwards; here they run as one
batch ``[cond; uncond]`` (equal within float rounding, see ``tests/test_xmdpt_parity.py``), and the policy hook
is told each row's branch.

``cond`` for N (source image, target pose) pairs is a dict of tensors (:data:`COND_KEYS`):

- ``"pose_features"`` (N, 257, 768): DINOv2 ViT-B/14 CLS + patch tokens of the target pose skeleton,
- ``"source_features"`` (N, 257, 1536): DINOv2 ViT-g/14 CLS + patch tokens of the source image,
- ``"source_latent"`` (N, 4, 32, 32): a posterior sample of the source image's VAE latent, times 0.18215.

:func:`pair_conditions` computes that dict from images; none of it depends on the policy, so a task computes
it once per pair and caches it. c = t_embedder(t) + condition part; the null condition is the zero vector.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..metrics.weight_files import XMDPT_VAE, xmdpt_vae_folder
from ..policies import Policy
from ..seeding import PairedNoise
from .base import EmbeddingParts, ProgressCallback, SampleOutput, SamplerState
from .mdt import MDTAdapter
from .vae import SD_VAE_SCALE, SDVAEDecoder
from .xmdpt_model import XMDPT

COND_KEYS = ("pose_features", "source_features", "source_latent")
SET_EMBEDDING_BATCH = 64  # pairs per condition-embedding call over a whole set of pairs


def posterior_seed(seed: int) -> int:
    """The seed of the source-latent posterior noise of a run seeded with ``seed``: a stream apart from the
    sampler's (whose first draw has the same shape)."""
    digest = hashlib.sha256(f"condbench:xmdpt-source-posterior:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class XMDPTVAE(SDVAEDecoder):
    """X-MDPT's fine-tuned VAE: decodes samples (``/ 0.18215``, images in [0, 1]) and encodes source images.

    ``folder`` is the diffusers folder; None looks in the cache. It is resolved on first use only.
    """

    def __init__(self, folder: Optional[str | Path] = None, dtype: torch.dtype = torch.float32):
        super().__init__(str(folder) if folder is not None else XMDPT_VAE.filename, SD_VAE_SCALE, dtype)
        self.folder = folder

    def load(self):
        if self._vae is None:
            self.source = str(xmdpt_vae_folder(self.folder, option="the model option decoder"))
        return super().load()

    @torch.no_grad()
    def encode_sources(self, images: torch.Tensor, seed: int, indices: Sequence[int]) -> torch.Tensor:
        """Source images (N, 3, 256, 256) in [0, 1] -> posterior samples (N, 4, 32, 32) times 0.18215.

        As ``infer_xmdpt.py``'s ``vae.encode(img)[0].sample() * 0.18215`` on images in [-1, 1], with the
        posterior noise of pair i drawn from (seed, indices[i]) alone, so every policy sees the same pair.
        """
        vae = self.load().to(images.device)
        posterior = vae.encode((images * 2 - 1).to(self.dtype)).latent_dist
        eps = PairedNoise(posterior_seed(seed), indices, device=images.device).draw(posterior.mean.shape[1:])
        return ((posterior.mean + posterior.std * eps.to(posterior.mean.dtype)) * self.scale).float()

    def describe(self) -> dict:
        return {**super().describe(), "decoder": "X-MDPT fine-tuned AutoencoderKL", "folder": str(self.folder)}


def pair_conditions(sources: torch.Tensor, skeletons: torch.Tensor, *, encoders, vae: XMDPTVAE, seed: int,
                    indices: Sequence[int]) -> dict[str, torch.Tensor]:
    """The ``cond`` dict of N pairs: source images and target pose skeletons (N, 3, 256, 256) in [0, 1].

    ``encoders`` is a :class:`condbench.encoders.dinov2.XMDPTEncoders`; ``seed`` and ``indices`` fix the
    source latent's posterior noise per pair. Nothing here depends on the policy: cache the result per pair.
    """
    features = encoders(sources, skeletons)
    return {**features, "source_latent": vae.encode_sources(sources, seed, indices)}


class XMDPTAdapter(MDTAdapter):
    """An X-MDPT network (:class:`~condbench.adapters.xmdpt_model.XMDPT`) with its guided DDIM sampler."""

    condition_kind = "pose"
    family = "xmdpt"
    official_precision = "bf16-c"  # infer_xmdpt.py: the whole forward under CUDA bf16 autocast, c included

    def __init__(self, model: XMDPT, name: str = "xmdpt", *, num_steps: int = 50, cfg_scale: float = 2.0,
                 scale_pow: float = 0.01, diffusion_steps: int = 1000, **options):
        options.setdefault("decoder", XMDPTVAE())
        super().__init__(model, name, num_steps=num_steps, cfg_scale=cfg_scale, scale_pow=scale_pow,
                         diffusion_steps=diffusion_steps, cfg_channels=model.config.out_channels, **options)
        self._condition_mean: Optional[torch.Tensor] = None
        self._set_embedding: Optional[tuple[object, torch.Tensor]] = None  # (a task's set of pairs, its parts (N, D))

    @property
    def has_null_condition(self) -> bool:
        return True  # the zero vector

    def null_condition(self, y: torch.Tensor) -> torch.Tensor:
        """Condition parts (N, D) of the unconditional rows: zero (the official ``cond_mask`` 0)."""
        return torch.zeros_like(y)

    @torch.no_grad()
    def condition_embedding(self, cond) -> torch.Tensor:
        """The condition parts of c (N, D) for a ``cond`` dict of N pairs (see the module docstring), or for a
        task's whole set of pairs (an object with ``batches(size)`` giving such dicts: the pose task's conditions),
        embedded batch by batch and kept for the next call with the same set (the analysis asks once per step)."""
        if not isinstance(cond, Mapping) and hasattr(cond, "batches"):
            if self._set_embedding is None or self._set_embedding[0] is not cond:
                parts = [self.condition_embedding(batch) for batch in cond.batches(SET_EMBEDDING_BATCH)]
                self._set_embedding = (cond, torch.cat(parts))
            return self._set_embedding[1]
        if self._set_embedding is not None and getattr(cond, "source", None) is self._set_embedding[0]:
            # a slice of the set embedded already (the mean condition and the analysis embed it first): its rows,
            # without reading the pairs' conditions again for every policy
            return self._set_embedding[1][torch.as_tensor(list(cond.indices), device=self._set_embedding[1].device)]
        if not isinstance(cond, Mapping) or set(cond) != set(COND_KEYS):
            found = sorted(cond) if isinstance(cond, Mapping) else type(cond).__name__
            raise ValueError(f"{self.name}: cond must be a dict with keys {', '.join(COND_KEYS)}, got {found}")
        cfg, n = self.config, len(cond["pose_features"])
        expected = {"pose_features": (n, cfg.feature_tokens, cfg.pose_dim),
                    "source_features": (n, cfg.feature_tokens, cfg.source_dim),
                    "source_latent": (n, cfg.in_channels, cfg.input_size, cfg.input_size)}
        for key, shape in expected.items():
            if tuple(cond[key].shape) != shape:
                raise ValueError(f"{self.name}: cond[{key!r}] has shape {tuple(cond[key].shape)}, expected {shape}")
        inputs = [cond[key].to(self.device, torch.float32) for key in COND_KEYS]
        with self.network.embedding_context(self.device):  # the official forward embeds the pair under autocast
            return self.model.condition_embedding(*inputs)  # (N, D), float32 but under bf16-c on the CPU (bf16)

    @torch.no_grad()
    def embed_parts(self, cond: dict, t: torch.Tensor | float) -> EmbeddingParts:
        y = self.condition_embedding(cond)  # (N, D)
        with self.network.embedding_context(self.device):
            t_part, y_part = self.model.embed_parts(self._batch_t(t, len(y)), y)
            c = t_part + y_part  # in the network's own arithmetic (bf16-c: bf16 t part + float32 pose part)
        return EmbeddingParts(c=c.float(), t=t_part.float(), cond=y_part.float())

    @torch.no_grad()
    def denoise(self, x: torch.Tensor, t: torch.Tensor, cond: dict, hook=None) -> torch.Tensor:
        """The network as the sampler calls it (the suite's precision, compiled or not)."""
        return self.network(x.to(self.device), self._batch_t(t, len(x)), self.condition_embedding(cond), hook)

    def set_condition_mean(self, cond: dict) -> None:
        """Use the mean condition part over these pairs (the task's test pairs) for ``mask=fixed`` policies."""
        self._condition_mean = self.condition_embedding(cond).mean(0, keepdim=True)  # (1, D)

    @torch.no_grad()
    def mean_embedding(self, t: torch.Tensor) -> torch.Tensor:
        """t_embedder(t) + the mean condition part of the task's pairs (c is affine in it): (1, D)."""
        if self._condition_mean is None:
            raise ValueError(f"{self.name}: mask=fixed needs the mean c over the task's pairs; the task must call "
                             "set_condition_mean(cond) with its pairs first")
        return self.timestep_embedding(t) + self._condition_mean

    def noise_draws_before(self, step: int) -> int:
        return 0  # DDIM with eta 0: the initial noise is all it draws

    @torch.no_grad()
    def sample(self, cond: dict, noise: PairedNoise, policy: Optional[Policy] = None,
               progress: Optional[ProgressCallback] = None, *, start: Optional[SamplerState] = None,
               keep_states: Sequence[int] = ()) -> SampleOutput:
        y, x, first, hooks = self._begin(self.condition_embedding(cond), noise, policy, start)
        n, num_steps, states = len(y), self.diffusion.num_steps, {}
        for step in range(first, num_steps):
            if step in keep_states:
                states[step] = SamplerState(step, x.clone())
            steps = torch.full((n,), num_steps - 1 - step, device=self.device, dtype=torch.long)
            out = self._evaluate(x, self.diffusion.model_timesteps(steps), y, hooks, step)
            x = self.diffusion.ddim_step(out, x, steps)
            if progress is not None:
                progress(step + 1, num_steps)
        return SampleOutput(x, hooks.trace, states)

    def sampler_description(self) -> dict:
        return {**super().sampler_description(), "name": "ddim", "eta": 0.0, "clip_denoised": False}
