"""Adapters for class-conditional networks with DiT's interface, and DiT's own DDPM sampler.

:class:`ClassConditionalAdapter` holds what DiT, SiT, REPA, MG, MDT and LightningDiT share (c, the denoiser,
guidance, the policy hook); each sampler is a subclass. DiT's sampler is DiT's ``sample.py``: respaced DDPM (250 steps by default), learned-range sigma and
classifier-free guidance on the first ``cfg_channels`` output channels, where the other channels (and the
variance) come from the conditional branch. Guidance runs both branches in one batch ``[cond; uncond]``;
the policy hook sees that batch and is told which rows belong to which branch.
"""
from __future__ import annotations

import abc
from typing import Callable, Optional, Sequence

import torch

from ..policies import BRANCH_COND, BRANCH_UNCOND, Policy
from ..seeding import PairedNoise
from .base import Adapter, EmbeddingParts, PolicyHook, ProgressCallback, SampleOutput, SamplerState, StepHook
from .ddpm import GaussianDiffusion
from .loading import materialized_device, move_materialized
from ..precision import Denoiser


def pixels_from_model_space(x: torch.Tensor) -> torch.Tensor:
    """Pixel-space models generate in [-1, 1]; outputs are images in [0, 1]."""
    return ((x.clamp(-1, 1) + 1) / 2).float()


def _real_rows_only(hook: Callable, real: int) -> Callable:
    """A hook that applies ``hook`` to the first ``real`` rows and passes padding rows through unchanged."""

    def apply(c: torch.Tensor, t_part: torch.Tensor, cond_part: torch.Tensor) -> torch.Tensor:
        if real == len(c):
            return hook(c, t_part, cond_part)
        return torch.cat([hook(c[:real], t_part[:real], cond_part[:real]), c[real:]])

    return apply


def forward_in_microbatches(network: Callable[..., torch.Tensor], inputs: Sequence[torch.Tensor],
                            hook: Optional[StepHook], microbatch: Optional[int]) -> torch.Tensor:
    """``network(*inputs, hook)`` on rows (R, ...): at once, or in calls of exactly ``microbatch`` rows.

    Matrix kernels may round differently for another number of rows; calls of a fixed size, the last one
    padded by repeating its last row, make every row's output independent of the batch it came in.
    """
    if microbatch is None:
        return network(*inputs, hook)
    outputs, rows = [], len(inputs[0])
    for a in range(0, rows, microbatch):
        b = min(a + microbatch, rows)
        pad = microbatch - (b - a)

        def padded(v: torch.Tensor) -> torch.Tensor:
            return torch.cat([v[a:b], v[b - 1:b].expand(pad, *v.shape[1:])]) if pad else v[a:b]

        chunk_hook = None if hook is None else _real_rows_only(hook.rows(a, b), b - a)
        outputs.append(network(*(padded(v) for v in inputs), chunk_hook)[: b - a])
    return torch.cat(outputs)


class ClassConditionalAdapter(Adapter):
    """What every class-conditional network with DiT's interface shares, whatever its sampler.

    The network has ``config`` (``num_classes``, ``hidden_size``, ``in_channels``, ``input_size``,
    ``class_dropout_prob``), ``t_embedder``, ``y_embedder.embedding_table`` and ``embed_parts(t, y)``, and
    ``forward(x, t, y, hook)``. Subclasses implement ``sample`` with the model's own sampler, using
    :meth:`_begin` and :meth:`_evaluate`, and say how a guided output is formed in :meth:`_guide`.
    """

    condition_kind = "class"
    family = "dit"

    def __init__(self, model: torch.nn.Module, name: str, *, cfg_scale: float = 1.5,
                 cfg_channels: Optional[int] = 3, decoder: Callable[[torch.Tensor], torch.Tensor] = pixels_from_model_space,
                 checkpoint: Optional[dict] = None, microbatch: Optional[int] = None, precision: str = "fp32",
                 compile: bool = False):
        self.model = model.eval()
        self.name = name
        # what the sampler calls (precision, compile)
        self.network = Denoiser(self.model, precision, compile, self.official_precision, name)
        self.microbatch = microbatch
        if microbatch is not None and microbatch < 1:
            raise ValueError(f"microbatch must be a positive number of rows, got {microbatch}")
        self.cfg_scale = cfg_scale
        self.cfg_channels = cfg_channels
        self.decoder = decoder
        self.checkpoint = checkpoint or {}
        self.denoiser_evaluations = 0  # network rows evaluated by sample(), for cost accounting
        if cfg_scale != 1.0 and not self.has_null_condition:
            raise ValueError(f"{name}: cfg_scale {cfg_scale} needs a null class row, but the model has none")

    @property
    def config(self):
        return self.model.config

    @property
    def has_null_condition(self) -> bool:
        """Whether guidance has an unconditional branch: a null class row in the label table."""
        return self.config.class_dropout_prob > 0

    def null_condition(self, y: torch.Tensor) -> torch.Tensor:
        """The conditions of guidance's unconditional rows, like ``y``: the null class."""
        return torch.full_like(y, self.num_classes)

    @property
    def device(self) -> torch.device:
        return materialized_device(self.model)

    @property
    def embed_dim(self) -> int:
        return self.config.hidden_size

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one sample in model space."""
        return (self.config.in_channels, self.config.input_size, self.config.input_size)

    def to(self, device: torch.device | str) -> "ClassConditionalAdapter":
        move_materialized(self.model, device)  # an embedders-only network keeps its unloaded parts on meta
        return self

    def _batch_t(self, t: torch.Tensor | float, n: int) -> torch.Tensor:
        t = torch.as_tensor(t, device=self.device)
        return t.expand(n) if t.dim() == 0 else t.to(self.device)

    @torch.no_grad()
    def embed_parts(self, cond: torch.Tensor, t: torch.Tensor | float) -> EmbeddingParts:
        y = cond.to(self.device)
        t_part, y_part = self.model.embed_parts(self._batch_t(t, len(y)), y)
        return EmbeddingParts(c=t_part + y_part, t=t_part, cond=y_part)

    @torch.no_grad()
    def denoise(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, hook=None) -> torch.Tensor:
        return self.network(x.to(self.device), self._batch_t(t, len(x)), cond.to(self.device), hook)

    @torch.no_grad()
    def mean_embedding(self, t: torch.Tensor) -> torch.Tensor:
        """t_embedder(t) + mean class embedding (c is linear in y, so this is the mean c over classes)."""
        table = self.model.y_embedder.embedding_table.weight[: self.num_classes]  # (K, D)
        return self.model.t_embedder(self._batch_t(t, 1)[:1]) + table.mean(0, keepdim=True)

    @torch.no_grad()
    def timestep_embedding(self, t: torch.Tensor) -> torch.Tensor:
        """The timestep part of c at t: (1, D) (the network's own embedder, through its ``embed_parts``)."""
        y = torch.zeros(1, dtype=torch.long, device=self.device)
        with self.network.embedding_context(self.device):
            return self.model.embed_parts(self._batch_t(t, 1)[:1], y)[0].float()

    @property
    def guided(self) -> bool:
        return self.cfg_scale != 1.0

    def guidance_scale(self, step: int) -> float:
        """The guidance scale at sampling step ``step`` (constant here; schedules and intervals override it)."""
        return self.cfg_scale

    def _guide(self, out: torch.Tensor, n: int, scale: Optional[float] = None) -> torch.Tensor:
        """[cond; uncond] outputs (2N, C, H, W) -> guided output (N, C, H, W) on the first cfg_channels."""
        scale = self.cfg_scale if scale is None else scale
        g = out.shape[1] // 2 if self.cfg_channels is None else self.cfg_channels
        cond, uncond = out[:n], out[n:]
        guided_eps = uncond[:, :g] + scale * (cond[:, :g] - uncond[:, :g])
        return torch.cat([guided_eps, cond[:, g:]], dim=1)

    def noise_draws_before(self, step: int) -> int:
        """How many noise tensors the sampler has drawn (initial noise excluded) before step ``step``."""
        return step

    def _begin(self, cond: torch.Tensor, noise: PairedNoise, policy: Optional[Policy],
               start: Optional[SamplerState]) -> tuple[torch.Tensor, torch.Tensor, int, PolicyHook]:
        """Labels (N,), the state x (N, C, H, W) to start from, the first step, and the policy hook.

        With ``start`` the run continues a trajectory identical up to ``start.step``: the noise stream skips
        what the prefix drew, and a policy that would have acted in the prefix is refused.
        """
        y = cond.to(self.device)
        if len(noise) != len(y):
            raise ValueError(f"{len(y)} conditions but noise for {len(noise)} samples")
        x, first = noise.draw(self.latent_shape).to(self.device), 0
        if start is not None:
            if policy is not None and any(policy.active(s, self.sampler_steps) for s in range(start.step)):
                raise ValueError(f"policy {policy.canonical()} acts before step {start.step}: it cannot share that prefix")
            noise.skip(self.latent_shape, self.noise_draws_before(start.step))
            x, first = start.x.to(self.device), start.step
        return y, x, first, PolicyHook(policy, self.sampler_steps, reference=self.mean_embedding, first_step=first,
                                       timestep_embedding=self.timestep_embedding)

    def _evaluate(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, hooks: Optional[PolicyHook],
                  step: int) -> torch.Tensor:
        """The network output for sampling step ``step``: x (N, C, H, W), t (N,), y (N,) -> (N, C_out, H, W).

        With guidance at this step both branches run in one batch ``[cond; uncond]`` and the policy hook is
        told which rows belong to which branch. ``hooks`` None: no policy and no trace (adaptive solvers).
        """
        n, scale = len(x), self.guidance_scale(step)
        if scale == 1.0:  # the conditional branch alone: a policy restricted to the unconditional one does nothing
            self.denoiser_evaluations += n
            branch = torch.full((n,), BRANCH_COND, device=self.device)
            return self._forward(x, t, y, None if hooks is None else hooks.at(step, t, branch))
        y_in = torch.cat([y, self.null_condition(y)])
        branch = torch.cat([torch.full((n,), BRANCH_COND), torch.full((n,), BRANCH_UNCOND)]).to(self.device)
        hook = None if hooks is None else hooks.at(step, t, branch)
        out = self._forward(torch.cat([x, x]), torch.cat([t, t]), y_in, hook)
        self.denoiser_evaluations += 2 * n
        return self._guide(out, n, scale)

    def _forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, hook: Optional[StepHook]) -> torch.Tensor:
        """The network on rows (R, ...): at once, or with ``microbatch`` in calls of exactly that many rows."""
        return forward_in_microbatches(self.network, (x, t, y), hook, self.microbatch)

    def evaluations_per_step(self) -> int:
        return 2 if self.guided else 1

    def planned_evaluations(self, first_step: int = 0) -> Optional[int]:
        """Both branches where the step is guided, the conditional one alone elsewhere (see :meth:`_evaluate`)."""
        return sum(2 if self.guidance_scale(s) != 1.0 else 1 for s in range(first_step, self.sampler_steps))

    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        return self.decoder(samples)

    def decoder_description(self) -> dict | str:
        """What decodes samples (its files and settings): outputs depend on it, so it enters the cache key."""
        describe = getattr(self.decoder, "describe", None)
        return describe() if describe is not None else getattr(self.decoder, "__qualname__", repr(self.decoder))

    @abc.abstractmethod
    def sampler_description(self) -> dict:
        """The sampler's settings (name, steps, guidance): every one that changes the samples."""

    def describe(self) -> dict:
        sampler = {**({"choice": self.sampler_choice} if self.sampler_choice else {}), **self.sampler_description(),
                   **({"microbatch": self.microbatch} if self.microbatch else {}), **self.network.describe()}
        return {"adapter": self.name, "family": self.family, "model_config": self.config.to_dict(),
                "sampler": sampler, "decoder": self.decoder_description(), "checkpoint": self.checkpoint}


class DiTAdapter(ClassConditionalAdapter):
    """A DiT network with DiT's DDPM sampler; ``decoder`` maps samples to images (a VAE for latent models)."""

    official_precision = "tf32"  # DiT's sample.py (and MDT's image_sample.py) turn TF32 on, in float32

    def __init__(self, model: torch.nn.Module, name: str = "dit", *, num_steps: int = 250, **options):
        super().__init__(model, name, **options)
        self.num_steps = num_steps
        self.diffusion = GaussianDiffusion.dit(num_steps)

    def sampler_timesteps(self) -> torch.Tensor:
        return torch.from_numpy(self.diffusion.timestep_map[::-1].copy())

    @property
    def sampler_steps(self) -> int:
        return self.diffusion.num_steps

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, noise: PairedNoise, policy: Optional[Policy] = None,
               progress: Optional[ProgressCallback] = None, *, start: Optional[SamplerState] = None,
               keep_states: Sequence[int] = ()) -> SampleOutput:
        y, x, first, hooks = self._begin(cond, noise, policy, start)
        n, num_steps, states = len(y), self.diffusion.num_steps, {}
        for step in range(first, num_steps):
            if step in keep_states:
                states[step] = SamplerState(step, x.clone())
            steps = torch.full((n,), num_steps - 1 - step, device=self.device, dtype=torch.long)
            t = self.diffusion.model_timesteps(steps)
            out = self._evaluate(x, t, y, hooks, step)
            x = self.diffusion.p_step(out, x, steps, noise.draw(self.latent_shape).to(self.device))
            if progress is not None:
                progress(step + 1, num_steps)
        return SampleOutput(x, hooks.trace, states)

    def sampler_description(self) -> dict:
        return {"name": "ddpm", "num_steps": self.num_steps, "cfg_scale": self.cfg_scale,
                "cfg_channels": self.cfg_channels, "learned_sigma": self.config.learn_sigma}
