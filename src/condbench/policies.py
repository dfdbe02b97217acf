"""Interventions on the conditional vector c, parsed from spec strings users type.

Grammar (whitespace is ignored)::

    policy   := action ["@" schedule] ("," option)*
    action   := baseline | tail:TAU | head:TAU | topk:K | random:FRACTION
              | random-like:ACTION | drop-t | drop-cond | const-t:T
    schedule := all | t0 | first:K | last:K            (default: all; every K >= 1)
    option   := mask=per-sample|fixed | branch=both|cond|uncond | seed=INT   (each at most once)

- ``tail:TAU`` zeroes |c_i| < TAU; ``head:TAU`` zeroes |c_i| > TAU; ``topk:K`` keeps the K largest |c_i|.
- ``random:FRACTION`` zeroes round(FRACTION * d) dimensions chosen at random.
- ``random-like:ACTION`` is the matched control of a masking action: per sample and step it zeroes as
  many dimensions as ACTION would, chosen at random.
- ``drop-t`` keeps only the condition part of c; ``drop-cond`` keeps only the timestep part.
- ``const-t:T`` replaces the timestep part of c by the model's timestep embedding at T (in the model's own
  timestep units, e.g. 0..999 for DiT): time-agnostic inference, the study's question of how much the explicit
  timestep embedding matters.
- Step 0 is the first sampling step (pure noise, "t0"); ``last:K`` acts on the final K steps.
- ``mask=per-sample`` (default) computes each mask from the current c of each sample, as the study
  does; ``mask=fixed`` computes one mask from the mean c over all conditions of the task at that step.
- ``branch`` says which classifier-free-guidance branch is changed (default both).
- Random choices come from a generator seeded by (seed, step): one permutation of the dimensions per
  step, shared by all samples, so a sample's mask never depends on the batch it is in.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

from .lazy import torch  # imported on first use: parsing a spec (list, validate) needs no torch

GRAMMAR = __doc__.split("Grammar (whitespace is ignored)::")[1].split("- ``tail")[0].strip("\n")

BRANCH_COND, BRANCH_UNCOND = 0, 1
MASK_ACTIONS = ("tail", "head", "topk")


class PolicySpecError(ValueError):
    """A policy spec that does not follow the grammar; the message shows the grammar."""

    def __init__(self, spec: str, problem: str):
        super().__init__(f"invalid policy spec {spec!r}: {problem}\n\nPolicy grammar:\n{GRAMMAR}\n\n"
                         "Examples: baseline, tail:0.01, tail:0.01@last:25, random-like:tail:0.01, "
                         "head:5.0@t0,branch=cond, topk:16,mask=fixed, const-t:500")


@dataclass(frozen=True)
class Action:
    """What a policy does to c when it acts: ``kind`` with its argument (``control_of`` for random-like)."""

    kind: str
    value: float = 0.0
    control_of: Optional["Action"] = None

    def label(self, exact: bool = False) -> str:
        """``kind:value``; values printed with 6 significant digits, or ``exact``ly (the shortest text that
        reads back as the same float)."""
        if self.kind == "random-like":
            return f"random-like:{self.control_of.label(exact)}"
        if self.kind in ("tail", "head", "random", "const-t"):
            return f"{self.kind}:{_exact(self.value) if exact else f'{self.value:g}'}"
        if self.kind == "topk":
            return f"topk:{int(self.value)}"
        return self.kind


def _exact(value: float) -> str:
    """The short ``:g`` form when it reads back as ``value``, else ``repr`` (which always does)."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


@dataclass(frozen=True)
class Schedule:
    """Which sampling steps a policy acts at: ``all``, ``t0``, ``first`` K or ``last`` K."""

    kind: str = "all"
    k: int = 0

    def active(self, step: int, num_steps: int) -> bool:
        if self.kind == "all":
            return True
        if self.kind == "t0":
            return step == 0
        if self.kind == "first":
            return step < self.k
        return step >= num_steps - self.k  # last

    def label(self) -> str:
        return self.kind if self.kind in ("all", "t0") else f"{self.kind}:{self.k}"


def _number(spec: str, text: str, what: str, integer: bool = False) -> float:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise PolicySpecError(spec, f"{what} must be {'an integer' if integer else 'a number'}, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise PolicySpecError(spec, f"{what} must be a finite number >= 0, got {text!r}")
    return value


def _parse_action(spec: str, text: str) -> Action:
    name, _, arg = text.partition(":")
    if name in ("baseline", "drop-t", "drop-cond"):
        if arg:
            raise PolicySpecError(spec, f"{name!r} takes no argument")
        return Action(name)
    if name in ("tail", "head"):
        return Action(name, _number(spec, arg, "TAU"))
    if name == "topk":
        k = _number(spec, arg, "K", integer=True)
        if k < 1:
            raise PolicySpecError(spec, "K must be >= 1 (topk:K keeps the K largest dimensions; 0 would keep none)")
        return Action(name, k)
    if name == "const-t":
        return Action(name, _number(spec, arg, "T"))
    if name == "random":
        fraction = _number(spec, arg, "FRACTION")
        if fraction > 1:
            raise PolicySpecError(spec, f"FRACTION must be in [0, 1], got {arg!r}")
        return Action(name, fraction)
    if name == "random-like":
        inner = _parse_action(spec, arg)
        if inner.kind not in MASK_ACTIONS:
            raise PolicySpecError(spec, f"random-like needs a masking action ({', '.join(MASK_ACTIONS)}), got {arg!r}")
        return Action(name, control_of=inner)
    raise PolicySpecError(spec, f"unknown action {name!r}")


def _parse_schedule(spec: str, text: str) -> Schedule:
    name, _, arg = text.partition(":")
    if name in ("all", "t0") and not arg:
        return Schedule(name)
    if name in ("first", "last"):
        k = int(_number(spec, arg, "K", integer=True))
        if k < 1:
            raise PolicySpecError(spec, "K must be >= 1")
        return Schedule(name, k)
    raise PolicySpecError(spec, f"unknown schedule {text!r}")


@dataclass(frozen=True)
class PolicyApplication:
    """The result of one application: the new c (N, D), which dimensions were zeroed (N, D), and which
    rows the policy targeted (N,) (all rows, or one guidance branch)."""

    c: torch.Tensor
    removed: torch.Tensor
    rows: torch.Tensor


@dataclass(frozen=True)
class Policy:
    """A parsed policy; ``apply`` is a pure function of (c, its parts, step, number of steps)."""

    spec: str
    action: Action
    schedule: Schedule = Schedule()
    mask: str = "per-sample"
    branch: str = "both"
    seed: int = 0

    @property
    def is_baseline(self) -> bool:
        return self.action.kind == "baseline"

    @property
    def uses_reference(self) -> bool:
        """Whether ``apply`` needs the mean c over conditions (``mask=fixed``)."""
        return self.mask == "fixed"

    def canonical(self) -> str:
        """A normalised spec for people (thresholds with 6 significant digits): for logs and tables."""
        return self._normalised(exact=False)

    def key(self) -> str:
        """The exact normalised spec: equal if and only if the policies are equal (cache keys and records).

        It is the canonical label wherever that label is exact, so it reads the same for usual thresholds.
        """
        return self._normalised(exact=True)

    def _normalised(self, exact: bool) -> str:
        out = self.action.label(exact)
        if self.schedule.kind != "all":
            out += "@" + self.schedule.label()
        if self.mask != "per-sample":
            out += f",mask={self.mask}"
        if self.branch != "both":
            out += f",branch={self.branch}"
        if self.seed != 0:
            out += f",seed={self.seed}"
        return out

    def active(self, step: int, num_steps: int) -> bool:
        return not self.is_baseline and self.schedule.active(step, num_steps)

    def apply(
        self,
        c: torch.Tensor,
        t_part: torch.Tensor,
        cond_part: torch.Tensor,
        *,
        step: int,
        num_steps: int,
        branch: Optional[torch.Tensor] = None,
        reference: Optional[Callable[[], torch.Tensor]] = None,
        timestep_embedding: Optional[Callable[[float], torch.Tensor]] = None,
    ) -> PolicyApplication:
        """Apply the policy to c (N, D) at ``step``.

        ``branch`` (N,) marks each row as the conditional (0) or unconditional (1) guidance branch;
        ``reference`` returns the mean c over the task's conditions at this step (1, D), for ``mask=fixed``;
        ``timestep_embedding(T)`` the model's timestep part of c at T (1, D), for ``const-t``.
        """
        no_change = torch.zeros_like(c, dtype=torch.bool)
        rows = self._rows(c, branch)  # (N, 1) bool: rows this policy may change
        if not self.active(step, num_steps):
            return PolicyApplication(c, no_change, rows[:, 0])
        kind = self.action.kind
        if kind == "drop-t":
            return PolicyApplication(torch.where(rows, cond_part, c), no_change, rows[:, 0])
        if kind == "drop-cond":
            return PolicyApplication(torch.where(rows, t_part, c), no_change, rows[:, 0])
        if kind == "const-t":
            if timestep_embedding is None:
                raise ValueError(f"policy {self.spec!r} needs the model's timestep embedding, but the sampler gave none")
            fixed = cond_part + timestep_embedding(self.action.value).to(c).expand_as(c)  # (N, D)
            return PolicyApplication(torch.where(rows, fixed, c), no_change, rows[:, 0])
        if self.mask == "fixed":
            if reference is None:
                raise ValueError(f"policy {self.spec!r} uses mask=fixed but the sampler gave no reference c")
            source = reference().to(c).expand_as(c)
        else:
            source = c
        removed = self._removed(source, step) & rows  # (N, D)
        return PolicyApplication(torch.where(removed, torch.zeros_like(c), c), removed, rows[:, 0])

    def _rows(self, c: torch.Tensor, branch: Optional[torch.Tensor]) -> torch.Tensor:
        if self.branch == "both":
            return torch.ones(c.shape[0], 1, dtype=torch.bool, device=c.device)
        if branch is None:  # guessing "every row" would change rows of the other branch
            raise ValueError(f"policy {self.spec!r} acts on the {self.branch} branch only, but the sampler did not "
                             "say which guidance branch each row of its network batch belongs to")
        wanted = BRANCH_COND if self.branch == "cond" else BRANCH_UNCOND
        return (branch.to(c.device) == wanted).view(-1, 1)

    def _removed(self, source: torch.Tensor, step: int) -> torch.Tensor:
        """Which dimensions the action zeroes, from ``source`` (N, D) -> bool (N, D)."""
        action = self.action
        if action.kind == "random-like":
            counts = mask_for(action.control_of, source).sum(dim=1)  # (N,)
            return self._random_dims(source, step, counts)
        if action.kind == "random":
            count = round(action.value * source.shape[1])
            return self._random_dims(source, step, torch.full((source.shape[0],), count, device=source.device))
        return mask_for(action, source)

    def _random_dims(self, source: torch.Tensor, step: int, counts: torch.Tensor) -> torch.Tensor:
        """Row i zeroes the first counts[i] dimensions of one random permutation drawn for (seed, step)."""
        d = source.shape[1]
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        order = torch.randperm(d, generator=generator)
        position = torch.empty(d, dtype=torch.long)
        position[order] = torch.arange(d)  # position[j]: where dimension j falls in the permutation
        return position.to(source.device)[None, :] < counts.to(source.device)[:, None]


def mask_for(action: Action, c: torch.Tensor) -> torch.Tensor:
    """The dimensions a deterministic masking action zeroes in c (N, D) -> bool (N, D)."""
    magnitude = c.abs()
    if action.kind == "tail":
        return magnitude < action.value
    if action.kind == "head":
        return magnitude > action.value
    if action.kind == "topk":
        k = min(int(action.value), c.shape[1])
        keep = torch.zeros_like(c, dtype=torch.bool)
        keep.scatter_(1, magnitude.topk(k, dim=1).indices, True)
        return ~keep
    raise ValueError(f"{action.kind!r} is not a deterministic masking action")


def parse_policy(spec: str) -> Policy:
    """Parse a spec string (see the module docstring); a bad spec raises PolicySpecError with the grammar."""
    if not isinstance(spec, str) or not spec.strip():
        raise PolicySpecError(str(spec), "empty spec")
    text = "".join(spec.split())
    head, *options = text.split(",")
    action_text, at, schedule_text = head.partition("@")
    action = _parse_action(spec, action_text)
    schedule = _parse_schedule(spec, schedule_text) if at else Schedule()
    settings = {"mask": "per-sample", "branch": "both", "seed": 0}
    given: set[str] = set()
    for option in options:
        key, eq, value = option.partition("=")
        if not eq or key not in settings:
            raise PolicySpecError(spec, f"unknown option {option!r}")
        if key in given:
            raise PolicySpecError(spec, f"option {key!r} is given twice")
        given.add(key)
        if key == "mask" and value not in ("per-sample", "fixed"):
            raise PolicySpecError(spec, f"mask must be per-sample or fixed, got {value!r}")
        if key == "branch" and value not in ("both", "cond", "uncond"):
            raise PolicySpecError(spec, f"branch must be both, cond or uncond, got {value!r}")
        settings[key] = int(_number(spec, value, "seed", integer=True)) if key == "seed" else value
    if settings["mask"] == "fixed" and action.kind not in MASK_ACTIONS + ("random-like",):
        raise PolicySpecError(spec, "mask=fixed applies only to tail, head, topk and random-like")
    if action.kind == "baseline" and (at or options):
        raise PolicySpecError(spec, "baseline takes no schedule or options")
    return Policy(spec=spec, action=action, schedule=schedule, **settings)


BASELINE = parse_policy("baseline")
