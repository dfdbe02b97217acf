"""A suite expands to cells (task, model, policy); each has a cost in denoiser evaluations.

A policy that first acts at step k > 0 follows the baseline's trajectory exactly up to step k, so when
the baseline is in the plan the runner continues from the baseline's cached state at step k instead of
recomputing the prefix. ``condbench run --dry-run`` prints the plan with and without that sharing, and an
estimate of each cell's scoring: the paired bootstrap recomputes every Frechet distance (FID, sFID...) on each
resample, whose time ``benchmarks/scoring_cost.py`` measures (``assets/scoring_cost.json``).
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from .policies import Policy, parse_policy
from .registry import LazyFactory, load_task, model_entry, task_entry
from .suites import Suite


@dataclass(frozen=True)
class Cell:
    task: str
    model: str
    policy: Policy

    @property
    def label(self) -> str:
        return f"{self.task} / {self.model} / {self.policy.canonical()}"


@dataclass(frozen=True)
class CellCost:
    """A cell's denoiser evaluations, counted from its sampler: ``per_sample`` (from scratch) and
    ``per_sample_planned`` (after the shared prefix) are network rows per sample; None for adaptive samplers."""

    cell: Cell
    samples: int
    steps: int
    shared_steps: int  # prefix steps taken from the baseline's cached states
    per_sample: Optional[int]
    per_sample_planned: Optional[int]
    scoring: Optional["BootstrapScoring"] = None  # None: no baseline to compare with, or not declared by the task

    @property
    def from_scratch(self) -> Optional[int]:
        return None if self.per_sample is None else self.samples * self.per_sample

    @property
    def planned(self) -> Optional[int]:
        return None if self.per_sample_planned is None else self.samples * self.per_sample_planned


def first_active_step(policy: Policy, num_steps: int) -> int:
    """The first step at which the policy changes anything (num_steps if never; 0 for the baseline)."""
    if policy.is_baseline:
        return 0
    return next((s for s in range(num_steps) if policy.active(s, num_steps)), num_steps)


def shared_prefix(policy: Policy, num_steps: int, baseline_planned: bool) -> int:
    """How many leading steps a policy can take from the baseline's trajectory."""
    if policy.is_baseline or not baseline_planned:
        return 0
    return min(first_active_step(policy, num_steps), num_steps - 1)


def check_filters(suite: Suite, tasks: Optional[Sequence[str]] = None, models: Optional[Sequence[str]] = None,
                  policies: Optional[Sequence[str]] = None) -> None:
    """Refuse a --tasks/--models/--policies name the suite does not have, naming what it has (a typo would
    otherwise select nothing, or less than meant)."""
    problems = []
    for option, names, known, key in (("--tasks", tasks, suite.tasks, str), ("--models", models, suite.models, str),
                                      ("--policies", policies, list(suite.policies), lambda p: parse_policy(p).key())):
        keys = {key(k) for k in known}
        unknown = [n for n in names or () if key(n) not in keys]
        if unknown:
            close = [m for n in unknown for m in difflib.get_close_matches(n, list(known), n=2)]
            hint = f" (did you mean {', '.join(repr(c) for c in dict.fromkeys(close))}?)" if close else ""
            problems.append(f"{option} {'; '.join(unknown)!r}: not in suite {suite.name!r}{hint}; "
                            f"it has {', '.join(known)}")
    if problems:
        raise ValueError("the filters select what the suite does not have:\n" + "\n".join(problems))


def expand(suite: Suite, tasks: Optional[Sequence[str]] = None, models: Optional[Sequence[str]] = None,
           policies: Optional[Sequence[str]] = None) -> list[Cell]:
    """The suite's cells, baseline first per (task, model), filtered by name (policies by their exact key);
    a filter naming something the suite lacks raises ValueError naming what it has."""
    check_filters(suite, tasks, models, policies)
    wanted_policies = {parse_policy(p).key() for p in policies} if policies else None
    cells = []
    for task in suite.tasks:
        if tasks and task not in tasks:
            continue
        for model in suite.models:
            if models and model not in models:
                continue
            for spec in sorted(suite.policies, key=lambda s: not parse_policy(s).is_baseline):
                policy = parse_policy(spec)
                if wanted_policies is None or policy.key() in wanted_policies:
                    cells.append(Cell(task, model, policy))
    return cells


def planning_adapter(suite: Suite, model: str):
    """The model's adapter without weights, with the suite's options: its sampler says what it will evaluate."""
    entry = model_entry(model)
    return entry.planner(**suite.adapter_options(model)) if entry.planner is not None else None


def _registry_sampler(suite: Suite, model: str) -> tuple[int, int]:
    """(steps, rows per sample and step) from the registry's summary, for models without a planner."""
    entry = model_entry(model)
    options = suite.model_options.get(model, {})
    guided = float(options.get("cfg_scale", entry.cfg_scale)) != 1.0
    return int(options.get("num_steps", entry.sampler_steps)), 2 if guided else 1


SCORING_TABLE = "scoring_cost.json"  # the shipped measurements of benchmarks/scoring_cost.py, by device type


@dataclass(frozen=True)
class ScoringTable:
    """Seconds of one resampled Frechet distance on one device: ``per_covariance N d^2 + per_eigen d^3``, fitted
    to ``benchmarks/scoring_cost.py``'s measurements (the covariance is O(N d^2), R^1/2 S R^1/2 and the symmetric
    eigen-decomposition O(d^3))."""

    source: str  # the device measured and the date
    per_covariance: float
    per_eigen: float

    @classmethod
    def from_entry(cls, device_type: str, entry: dict) -> "ScoringTable":
        """Least squares on relative error over the entry's measurements {n, dim, seconds}."""
        rows = [(r["n"] * r["dim"] ** 2 / r["seconds"], r["dim"] ** 3 / r["seconds"]) for r in entry["measurements"]]
        uu, uv, vv = (sum(u * u for u, _ in rows), sum(u * v for u, v in rows), sum(v * v for _, v in rows))
        u1, v1 = sum(u for u, _ in rows), sum(v for _, v in rows)
        det = uu * vv - uv * uv
        a, b = (vv * u1 - uv * v1) / det, (uu * v1 - uv * u1) / det
        if a < 0 or b < 0:  # one term explains the times alone
            a, b = (u1 / uu, 0.0) if b < 0 else (0.0, v1 / vv)
        load = f", load average {entry['load_average']}" if "load_average" in entry else ""
        return cls(f"{entry['device']} ({entry['date']}, {device_type}{load})", a, b)

    def seconds(self, n: int, dim: int) -> float:
        return self.per_covariance * n * dim ** 2 + self.per_eigen * dim ** 3

    def formula(self) -> str:
        return f"{self.per_covariance:.3g} N d^2 + {self.per_eigen:.3g} d^3 s"


def read_scoring_tables(path: Optional[str | Path] = None) -> dict[str, ScoringTable]:
    """The measured tables by device type ("cpu", "cuda"): ``path``, else the one shipped with the package."""
    if path is None:
        from .tasks import asset_path

        path = asset_path(SCORING_TABLE)
    entries = json.loads(Path(path).read_text(encoding="utf-8"))
    return {device: ScoringTable.from_entry(device, entry) for device, entry in entries.items()}


@dataclass(frozen=True)
class BootstrapScoring:
    """What a cell's paired bootstrap recomputes: ``resamples`` x one Frechet distance per entry of ``dims``
    (metric -> feature size), on ``device`` (the task's metric device); IS and per-sample means are negligible."""

    resamples: int
    dims: dict[str, int]
    device: str

    def seconds(self, samples: int, table: ScoringTable) -> float:
        return self.resamples * sum(table.seconds(samples, d) for d in self.dims.values())

    def describe(self) -> str:
        return " + ".join(f"{name} (d {dim})" for name, dim in self.dims.items())


def bootstrap_scoring(suite: Suite, task: str) -> Optional[BootstrapScoring]:
    """The bootstrap work of a cell of ``task``, from its class's ``resampled_frechet_dims`` and its built object's
    ``device`` (None when the task does not declare the dims)."""
    factory = task_entry(task).factory
    dims = getattr(factory.target if isinstance(factory, LazyFactory) else factory, "resampled_frechet_dims", None)
    if dims is None:
        return None
    device = str(getattr(load_task(task, **suite.task_options), "device", None) or "cpu")
    return BootstrapScoring(suite.bootstrap, dict(dims), device.split(":")[0])


def costs(suite: Suite, cells: list[Cell], samples: int) -> list[CellCost]:
    out = []
    baselines = {(c.task, c.model) for c in cells if c.policy.is_baseline}
    adapters = {model: planning_adapter(suite, model) for model in {c.model for c in cells}}
    scoring = {task: bootstrap_scoring(suite, task) for task in {task for task, _ in baselines}}
    for cell in cells:
        adapter = adapters[cell.model]
        steps = adapter.sampler_steps if adapter is not None else _registry_sampler(suite, cell.model)[0]
        shared = shared_prefix(cell.policy, steps, (cell.task, cell.model) in baselines)
        if adapter is not None:
            per_sample, planned = adapter.planned_evaluations(0), adapter.planned_evaluations(shared)
        else:
            per_step = _registry_sampler(suite, cell.model)[1]
            per_sample, planned = steps * per_step, (steps - shared) * per_step
        out.append(CellCost(cell, samples, steps, shared, per_sample, planned,
                            scoring.get(cell.task) if (cell.task, cell.model) in baselines else None))
    return out


@dataclass(frozen=True)
class Throughput:
    """Measured network rows per second per model (``benchmarks/gpu_sampling.py``'s ``sampler_rows_per_s``)."""

    rows_per_s: dict[str, float]
    source: str  # the device and settings it was measured with, for the plan's last line

    def seconds(self, cost: CellCost) -> Optional[float]:
        rate = self.rows_per_s.get(cost.cell.model)
        return None if rate is None or cost.planned is None else cost.planned / rate


def read_throughput(path: str | Path, precision: str, compile: bool) -> Throughput:
    """The measurements of ``gpu_sampling.py`` in ``path`` for this precision and compile setting (the largest
    batch where several were measured)."""
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
        results = report["results"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"--throughput {path}: not a benchmarks/gpu_sampling.py JSON ({error})") from None
    chosen: dict[str, dict] = {}
    for r in results:
        if r.get("precision") == precision and bool(r.get("compile")) == compile:
            if r["model"] not in chosen or r["batch_rows"] > chosen[r["model"]]["batch_rows"]:
                chosen[r["model"]] = r
    if not chosen:
        raise ValueError(f"--throughput {path} has no measurement at precision {precision}"
                         f"{' with compile' if compile else ''}")
    source = (f"{report.get('device', '?')} ({report.get('date', '?')}), {precision}{' + compile' if compile else ''}"
              + (", SMALL networks: not the real models' speed" if report.get("small") else ""))
    return Throughput({m: float(r["sampler_rows_per_s"]) for m, r in chosen.items()}, source)


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def scoring_lines(plan: list[CellCost], tables: dict[str, ScoringTable]) -> list[str]:
    """One line per task whose cells run a paired bootstrap: its estimated time per cell and in all, on the
    task's metric device (from the CPU table, said so, where that device was not measured)."""
    lines = []
    for task in dict.fromkeys(c.cell.task for c in plan if c.scoring is not None):
        cells = [c for c in plan if c.cell.task == task and c.scoring is not None]
        work, samples = cells[0].scoring, cells[0].samples
        table = tables.get(work.device)
        where = f"on {work.device}"
        if table is None:
            table = tables["cpu"]
            where = (f"{work.device} NOT MEASURED (benchmarks/scoring_cost.py --device {work.device} --write "
                     f"src/condbench/assets/{SCORING_TABLE} adds it): this is on the CPU")
        per_cell = work.seconds(samples, table)
        lines.append(f"scoring estimate for {task} {where}: {work.resamples} bootstrap resamples x "
                     f"{work.describe()} at N={samples:,} = {_duration(per_cell)} per cell, "
                     f"{_duration(per_cell * len(cells))} for {len(cells)} cells; one resampled distance = "
                     f"{table.formula()} measured on {table.source}")
    return lines


def format_plan(plan: list[CellCost], throughput: Optional[Throughput] = None,
                scoring_tables: Optional[dict[str, ScoringTable]] = None) -> str:
    """The plan's table and totals; ``scoring_tables`` (default: the shipped measurements) price the bootstrap."""
    def count(value: Optional[int]) -> str:
        return "adaptive" if value is None else f"{value:,}"

    lines = [f"{'task':<10} {'model':<14} {'policy':<34} {'samples':>8} {'steps':>6} {'shared':>7} "
             f"{'evaluations':>13} {'from scratch':>13}" + (f" {'projected':>10}" if throughput else "")]
    for c in plan:
        lines.append(f"{c.cell.task:<10} {c.cell.model:<14} {c.cell.policy.canonical():<34} {c.samples:>8} "
                     f"{c.steps:>6} {c.shared_steps:>7} {count(c.planned):>13} {count(c.from_scratch):>13}"
                     + (f" {_duration(throughput.seconds(c)):>10}" if throughput else ""))
    known = [c for c in plan if c.planned is not None]
    planned, scratch = sum(c.planned for c in known), sum(c.from_scratch for c in known)
    saving = 1 - planned / scratch if scratch else 0.0
    lines.append(f"{len(plan)} cells: {planned:,} denoiser evaluations planned, {scratch:,} from scratch "
                 f"({saving:.1%} saved by continuing late-acting policies from the baseline's states); a guided "
                 "step counts both branches, an unguided one the conditional branch alone")
    if throughput is not None:
        times = [throughput.seconds(c) for c in plan]
        unmeasured = sorted({c.cell.model for c, t in zip(plan, times) if t is None})
        lines.append(f"projected sampling time {_duration(sum(t for t in times if t is not None))} on one process at "
                     f"the measured rate of {throughput.source}; decoding and feature extraction not included"
                     + (f"; not measured: {', '.join(unmeasured)}" if unmeasured else ""))
    if any(c.scoring is not None for c in plan):
        lines += scoring_lines(plan, scoring_tables if scoring_tables is not None else read_scoring_tables())
    if len(known) < len(plan):
        lines.append(f"{len(plan) - len(known)} cells use an adaptive sampler (dopri5): their evaluations are "
                     "known only after the run")
    return "\n".join(lines)
