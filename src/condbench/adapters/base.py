"""The model API every adapter implements, and the policy hook samplers share.

An adapter wraps one released model. For a batch of conditions and timesteps it exposes the conditional
vector ``c`` exactly as the model feeds it to AdaLN (before the SiLU), its parts (timestep embedding and
condition embedding), the denoiser output, and the model's own default sampler, which accepts a
:class:`~condbench.policies.Policy` acting on c at every step.

How the four tasks map onto it (``cond`` is whatever the task hands the adapter for one batch):

- ImageNet / digits (class-conditional): ``cond`` is a LongTensor (N,) of class ids; the null class of
  classifier-free guidance is the row after the last class. c = t_embedder(t) + y_embedder(y).
- DeepFashion pose-guided (X-MDPT): ``cond`` is a dict of tensors for N (source image, target pose)
  pairs; c = t + the pose/appearance embedding; ``decode`` gives images that the task compares with the
  paired ground truth it holds. The null condition is the zero vector.
- VGGSound video-to-audio (MDSGen): ``cond`` is a FloatTensor (N, 32, 512) of CAVP video features;
  c = t + the video embedding; ``decode`` returns waveforms (N, samples) at ``sample_rate``.
- Text-to-image (SD3 through diffusers): ``cond`` is a list of N prompts; c is ``temb`` of
  ``time_text_embed`` (timestep embedding + pooled-text projection); the sampler is the pipeline's,
  with the policy applied by a forward hook on ``time_text_embed``.

Timesteps are in the model's own units (DiT: integer 0..999 with 999 = noise; SiT: [0, 1] with 0 = noise;
see ``reference/MODELS.md``); ``sampler_timesteps`` gives them in sampling order, step 0 first.
"""
from __future__ import annotations

import abc
import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch

from ..policies import Policy
from ..policy_group import PolicyGroup
from ..precision import Denoiser
from ..seeding import PairedNoise

ProgressCallback = Callable[[int, int], None]  # (steps done, steps total)


@dataclass
class EmbeddingParts:
    """c and the two parts it is the sum of, each (N, D)."""

    c: torch.Tensor
    t: torch.Tensor
    cond: torch.Tensor


@dataclass
class PolicyTrace:
    """What a policy did during one sampling run: per step, the mean number of zeroed dimensions over the
    rows it targeted (both guidance branches, or the one it names). A step is active where the schedule
    lets the policy act and the network batch holds rows it targets (an unguided step has no
    unconditional rows)."""

    num_steps: int
    removed_per_step: list[float] = field(default_factory=list)
    active_steps: list[int] = field(default_factory=list)

    def mean_removed(self) -> float:
        """Mean zeroed dimensions per targeted row, over the steps the policy was active."""
        values = [self.removed_per_step[s] for s in self.active_steps]
        return float(sum(values) / len(values)) if values else 0.0

    def first_active_removed(self) -> float:
        """Zeroed dimensions at the first step the policy acted (the study counts them at its first step)."""
        return self.removed_per_step[self.active_steps[0]] if self.active_steps else 0.0

    @classmethod
    def merge(cls, traces: list["PolicyTrace"], weights: list[int]) -> "PolicyTrace":
        """Combine the traces of several batches of one run, weighting each by its number of samples."""
        total = sum(weights)
        per_step = [sum(w * t.removed_per_step[s] for t, w in zip(traces, weights)) / total
                    for s in range(len(traces[0].removed_per_step))]
        return cls(traces[0].num_steps, per_step, list(traces[0].active_steps))

    def to_dict(self) -> dict:
        return {"num_steps": self.num_steps, "active_steps": self.active_steps,
                "removed_per_step": self.removed_per_step, "mean_removed_dims": self.mean_removed(),
                "first_active_removed_dims": self.first_active_removed()}


@dataclass
class SamplerState:
    """The sampler's state (N, ...) just before sampling step ``step`` runs."""

    step: int
    x: torch.Tensor


@dataclass
class SampleOutput:
    """Final samples in the model's space (latents or pixels), the trace of the policy (one per member of a
    :class:`~condbench.policy_group.PolicyGroup`), and the states kept at the steps asked for (so policies that
    act only later can continue from them)."""

    samples: torch.Tensor
    trace: PolicyTrace | list[PolicyTrace]
    states: dict[int, SamplerState] = field(default_factory=dict)


class PolicyHook:
    """Turns a policy into the per-step hook a network calls on (c, t_part, cond_part); a
    :class:`~condbench.policy_group.PolicyGroup` gets one member hook per policy, each with its own trace."""

    def __init__(self, policy: Optional[Policy | PolicyGroup], num_steps: int,
                 reference: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, first_step: int = 0,
                 timestep_embedding: Optional[Callable[[torch.Tensor], torch.Tensor]] = None):
        self.policy = policy
        self.num_steps = num_steps
        self.reference = reference
        self.timestep_embedding = timestep_embedding  # t (1,) -> the timestep part of c (1, D), for const-t
        self.members = None
        if isinstance(policy, PolicyGroup):
            self.members = [PolicyHook(p, num_steps, reference, first_step, timestep_embedding) for p in policy.policies]
            self.trace = [m.trace for m in self.members]
        else:
            self.trace = PolicyTrace(num_steps, [0.0] * first_step)  # steps before first_step were shared

    def at(self, step: int, t: torch.Tensor,
           branch: Optional[torch.Tensor] = None) -> Optional["StepHook | GroupStepHook"]:
        """The hook for sampling step ``step`` at model timestep ``t``, or None when nothing is to be done.

        ``branch`` (rows,) says which guidance branch each row of the network batch belongs to.
        """
        if self.members is not None:
            return GroupStepHook(self.policy, [m.at(step, t, branch) for m in self.members], branch)
        self.trace.removed_per_step.append(0.0)
        if self.policy is None:
            return None
        return StepHook(self, step, t, branch)


class StepHook:
    """The policy at one sampling step; callable on a whole network batch or, via :meth:`rows`, on a slice
    of it (a network evaluated in micro-batches). The trace averages over every targeted row it saw.
    ``rows`` is the position of the call's rows in the network batch: a slice, or an index tensor (R,)."""

    def __init__(self, owner: PolicyHook, step: int, t: torch.Tensor, branch: Optional[torch.Tensor]):
        self.owner, self.step, self.t, self.branch = owner, step, t, branch
        self.removed_sum, self.targeted_rows = 0.0, 0

    def __call__(self, c: torch.Tensor, t_part: torch.Tensor, cond_part: torch.Tensor,
                 rows: slice | torch.Tensor = slice(None)) -> torch.Tensor:
        owner = self.owner
        reference = (lambda: owner.reference(self.t[:1])) if owner.reference is not None else None
        branch = self.branch[rows] if self.branch is not None else None
        fixed_t = None
        if owner.timestep_embedding is not None:
            fixed_t = lambda value: owner.timestep_embedding(torch.tensor([value], device=self.t.device))  # noqa: E731
        result = owner.policy.apply(c, t_part, cond_part, step=self.step, num_steps=owner.num_steps,
                                    branch=branch, reference=reference, timestep_embedding=fixed_t)
        targeted = result.removed[result.rows]  # (R, D)
        self.removed_sum += float(targeted.sum(1).double().sum())
        self.targeted_rows += len(targeted)
        if self.targeted_rows:
            owner.trace.removed_per_step[self.step] = self.removed_sum / self.targeted_rows
            # a step counts as active only where the policy acts on some row (a branch may be absent there)
            active = owner.trace.active_steps
            if owner.policy.active(self.step, owner.num_steps) and (not active or active[-1] != self.step):
                active.append(self.step)
        return result.c

    def rows(self, start: int, stop: int) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
        """The hook for rows start..stop-1 of the network batch."""
        return lambda c, t_part, cond_part: self(c, t_part, cond_part, slice(start, stop))


class GroupStepHook(StepHook):
    """A :class:`~condbench.policy_group.PolicyGroup` at one step: each member's policy on its samples' rows
    (micro-batch calls through :meth:`StepHook.rows` as for one policy)."""

    def __init__(self, group: PolicyGroup, members: list[StepHook], branch: Optional[torch.Tensor]):
        self.group, self.members, self.branch = group, members, branch
        self.sample = None if branch is None else group.sample_of_row(branch, len(branch))  # (rows,), CPU

    def __call__(self, c: torch.Tensor, t_part: torch.Tensor, cond_part: torch.Tensor,
                 rows: slice | torch.Tensor = slice(None)) -> torch.Tensor:
        if isinstance(rows, slice):
            first = rows.start or 0
            positions = torch.arange(first, first + len(c))  # (R,) this call's rows in the network batch
        else:
            positions = rows.cpu()
        if self.sample is not None:
            sample = self.sample[positions]
        elif isinstance(rows, slice) and rows == slice(None):  # no branch given: row r is sample r
            sample = self.group.sample_of_row(None, len(c))  # refuses a batch of another size
        else:
            sample = positions
        member = sample // self.group.block  # (R,)
        out = c.clone()  # (R, D)
        for p, hook in enumerate(self.members):
            where = (member == p).nonzero().squeeze(1)  # (R_p,) positions within this call
            if len(where):
                local = where.to(c.device)
                out[local] = hook(c[local], t_part[local], cond_part[local], positions[where].to(c.device))
        return out


class Adapter(abc.ABC):
    """A released model seen through the conditional vector c. Subclasses implement one model family."""

    name: str = ""
    condition_kind: str = ""  # "class", "pose", "video" or "text"
    sampler_choice: Optional[str] = None  # the registry's name of the sampler in use (model option ``sampler``)
    # the arithmetic of the release's own sampling script, which precision ``official`` means (condbench.precision);
    # None: not known to condbench, and ``official`` is refused
    official_precision: Optional[str] = None

    @property
    @abc.abstractmethod
    def embed_dim(self) -> int:
        """D, the size of c."""

    @abc.abstractmethod
    def embed_parts(self, cond: Any, t: torch.Tensor) -> EmbeddingParts:
        """c and its parts for N conditions at timesteps t (N,) or a scalar, in the model's units."""

    def embed(self, cond: Any, t: torch.Tensor | float) -> torch.Tensor:
        """c (N, D) exactly as the model feeds it to AdaLN, before the SiLU."""
        return self.embed_parts(cond, torch.as_tensor(t)).c

    @abc.abstractmethod
    def denoise(self, x: torch.Tensor, t: torch.Tensor, cond: Any, hook=None) -> torch.Tensor:
        """The raw network output for noisy inputs x at timesteps t; ``hook`` may rewrite c."""

    denoiser_evaluations: int = 0  # network rows evaluated by ``sample`` (a CFG step counts 2 per sample)

    @abc.abstractmethod
    def sample(self, cond: Any, noise: PairedNoise, policy: Optional[Policy] = None,
               progress: Optional[ProgressCallback] = None, *, start: Optional[SamplerState] = None,
               keep_states: Sequence[int] = ()) -> SampleOutput:
        """Run the model's default sampler for N conditions, with paired noise, applying ``policy`` to c.

        ``start`` continues from a state of a trajectory that was identical up to its step (a policy that
        acts only from that step on); ``keep_states`` lists the steps whose states the output keeps.
        """

    @property
    @abc.abstractmethod
    def sampler_steps(self) -> int:
        """Number of steps of the default sampler."""

    @abc.abstractmethod
    def evaluations_per_step(self) -> int:
        """Network rows evaluated per sample and step (2 with classifier-free guidance)."""

    def planned_evaluations(self, first_step: int = 0) -> Optional[int]:
        """Network rows ``sample`` evaluates per sample when it starts at ``first_step`` (a shared prefix before
        it); None when the sampler cannot know in advance (adaptive solvers). Counts what the sampler does:
        samplers that guide only some steps override it."""
        return (self.sampler_steps - first_step) * self.evaluations_per_step()

    @abc.abstractmethod
    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        """Samples in model space -> outputs: images (N, C, H, W) in [0, 1] or waveforms (N, L)."""

    @abc.abstractmethod
    def sampler_timesteps(self) -> torch.Tensor:
        """The default sampler's timesteps (S,), in the model's units, step 0 first."""

    def timestep_embedding(self, t: torch.Tensor) -> torch.Tensor:
        """The timestep part of c at t (1,), in the model's units: (1, D); ``const-t`` policies use it."""
        raise NotImplementedError(f"{self.name}: this adapter does not expose its timestep embedding (const-t)")

    @abc.abstractmethod
    def mean_embedding(self, t: torch.Tensor) -> torch.Tensor:
        """Mean c over all conditions of the task at timestep t, (1, D); ``mask=fixed`` policies use it."""

    def process_flags(self) -> contextlib.AbstractContextManager:
        """The process-wide flags of the denoiser's arithmetic, held over a whole block of sampling and of the work
        on its samples (decoding beside sampling then sees the same flags as after it); none without a
        :class:`~condbench.precision.Denoiser`."""
        network = getattr(self, "network", None)
        return network.process_flags() if isinstance(network, Denoiser) else contextlib.nullcontext()

    @abc.abstractmethod
    def describe(self) -> dict:
        """Everything that determines this adapter's outputs: config, sampler settings, checkpoint hash."""
