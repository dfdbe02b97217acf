"""Names -> models, tasks and metrics, with "did you mean" for typos.

A model entry knows how to build its adapter from a checkpoint, the size of its c, its default sampler
and where its checkpoint comes from; ``condbench list models`` prints them.

Other packages add entries through entry points (groups ``condbench.adapters``, ``condbench.tasks``,
``condbench.metrics``): each names a ModelEntry / TaskEntry / MetricEntry, or a callable returning one or a
list of them. Plugins are loaded when the entries are listed or a name that is not built in is looked up, not at
import (a plugin cannot replace a built-in, so a built-in name needs no plugin); a plugin that fails to load, or that
would replace a name already registered, is reported by name (a :class:`PluginWarning`) and skipped, so it
never hides a built-in.

The built-in entries are data and lazy factories: importing this module, listing the entries and resolving their
files import no torch; a factory imports its network, adapter or task module when it is called. (A plugin's
module is imported to be listed, and may import torch.)
"""
from __future__ import annotations

import difflib
import importlib
import inspect
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from .adapters.catalogue import MDSGEN_EMBEDDER_PREFIXES, XMDPT_EMBEDDER_PREFIXES
from .tasks.shipped import DIGITS_DIT, DIGITS_XMDPT, SHAPES_MDSGEN, ShippedNetwork

if TYPE_CHECKING:
    from .adapters.base import Adapter


@dataclass(frozen=True)
class ModelEntry:
    name: str
    task: str
    c_dim: int
    sampler: str
    checkpoint_source: str
    factory: Callable[..., Adapter]
    sampler_steps: int = 250
    cfg_scale: float = 1.0
    resolver: Optional[Callable[[Optional[str]], Path]] = None  # ckpt option -> the local file, or a clear error
    # model options -> the local files, for models whose files are named by other options (a pipeline folder)
    options_resolver: Optional[Callable[[dict], Path]] = None
    # model options -> the adapter without weights (network on the meta device): what its sampler will evaluate
    planner: Optional[Callable[..., Adapter]] = None
    samplers: tuple[str, ...] = ()  # names for the model option ``sampler``; the first is the default
    origin: str = "built-in"  # or the name of the package whose entry point registered it
    # (ckpt, model_config) -> the ContractCase ``condbench check-adapter`` checks (condbench.contract); no ckpt: the
    # entry's own tiny configuration (random weights, or a shipped tiny checkpoint)
    contract_case: Optional[Callable[..., Any]] = None

    def resolve_checkpoint(self, ckpt: Optional[str] = None) -> Optional[Path]:
        """The checkpoint file this model would load (downloading it once if needed); None if it needs none."""
        return self.resolver(ckpt) if self.resolver is not None else None

    def resolve_options(self, options: dict) -> Optional[Path]:
        """What :meth:`resolve_checkpoint` gives, for the model options of a suite."""
        if self.options_resolver is not None:
            return self.options_resolver(options)
        return self.resolve_checkpoint(options.get("ckpt"))


@dataclass(frozen=True)
class TaskEntry:
    name: str
    description: str
    factory: Callable[..., Any]
    origin: str = "built-in"
    # task options -> one check per file the task reads, without building the task (so without torch): the run's
    # missing-files preflight; None: the preflight builds the task and calls its ``required_inputs()``
    inputs: Optional[Callable[..., list]] = None


@dataclass(frozen=True)
class MetricEntry:
    """A metric a plugin adds: ``factory(**options)`` returns the metric object its tasks use."""

    name: str
    description: str
    factory: Callable[..., Any]
    origin: str = "built-in"


MODELS: dict[str, ModelEntry] = {}
TASKS: dict[str, TaskEntry] = {}
METRICS: dict[str, MetricEntry] = {}

PLUGIN_GROUPS = {"condbench.adapters": (ModelEntry, MODELS), "condbench.tasks": (TaskEntry, TASKS),
                 "condbench.metrics": (MetricEntry, METRICS)}
PLUGIN_ERRORS: list[str] = []  # one line per plugin that was skipped, for ``condbench list``
_plugins_loaded = False


class PluginWarning(UserWarning):
    """A plugin entry point that could not be used (it failed to import, or gave something unusable)."""


def _entry_points(group: str) -> list:
    from importlib.metadata import entry_points

    return list(entry_points(group=group))


def _skip_plugin(where: str, problem: str) -> None:
    line = f"plugin {where} skipped: {problem}"
    PLUGIN_ERRORS.append(line)
    warnings.warn(line, PluginWarning, stacklevel=3)


def load_plugins(reload: bool = False) -> None:
    """Register every entry of the installed plugins (once; ``reload`` looks again, e.g. after an install)."""
    global _plugins_loaded
    if _plugins_loaded and not reload:
        return
    _plugins_loaded = True
    for group, (kind, table) in PLUGIN_GROUPS.items():
        for point in _entry_points(group):
            package = point.dist.name if getattr(point, "dist", None) is not None else point.value.split(":")[0]
            where = f"{point.name!r} ({group}, package {package})"
            try:
                loaded = point.load()
                entries = loaded() if callable(loaded) and not isinstance(loaded, kind) else loaded
                entries = list(entries) if isinstance(entries, (list, tuple)) else [entries]
            except Exception as error:  # anything a broken plugin raises: reported, never fatal
                _skip_plugin(where, f"{error.__class__.__name__}: {error}")
                continue
            for entry in entries:
                if not isinstance(entry, kind):
                    _skip_plugin(where, f"gave {type(entry).__name__}, not a {kind.__name__}")
                elif entry.name in table and table[entry.name].origin != package:
                    _skip_plugin(where, f"{entry.name!r} is already registered by {table[entry.name].origin}")
                else:
                    table[entry.name] = replace(entry, origin=package)


def models() -> dict[str, ModelEntry]:
    """Every model: the built-ins and the installed plugins'."""
    load_plugins()
    return MODELS


def tasks() -> dict[str, TaskEntry]:
    load_plugins()
    return TASKS


def metrics() -> dict[str, MetricEntry]:
    load_plugins()
    return METRICS


def register_model(entry: ModelEntry) -> ModelEntry:
    MODELS[entry.name] = entry
    return entry


def register_task(entry: TaskEntry) -> TaskEntry:
    TASKS[entry.name] = entry
    return entry


def _lookup(table: dict, name: str, what: str):
    if name in table:
        return table[name]
    close = difflib.get_close_matches(name, list(table), n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise KeyError(f"unknown {what} {name!r}.{hint} Known: {', '.join(sorted(table))}")


def model_entry(name: str) -> ModelEntry:
    return _lookup(MODELS if name in MODELS else models(), name, "model")


def task_entry(name: str) -> TaskEntry:
    return _lookup(TASKS if name in TASKS else tasks(), name, "task")


def metric_entry(name: str) -> MetricEntry:
    return _lookup(METRICS if name in METRICS else metrics(), name, "metric")


def load_adapter(name: str, ckpt: Optional[str] = None, **config: Any) -> Adapter:
    """Build the adapter ``name`` from checkpoint ``ckpt`` (its default file if None); ``config`` overrides
    sampler settings such as ``num_steps`` or ``cfg_scale``."""
    return model_entry(name).factory(ckpt=ckpt, **config)


def load_task(name: str, **options: Any):
    return task_entry(name).factory(**options)


class LazyFactory:
    """``module:name``, imported on the first call: a registry factory whose module (torch, diffusers...) is
    imported only when something is built. Its signature is the target's, for option checks."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    @property
    def target(self) -> Callable[..., Any]:
        return getattr(importlib.import_module(self.module), self.name)

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(self.target)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.target(*args, **kwargs)

    def __repr__(self) -> str:
        return f"LazyFactory({self.module}:{self.name})"


def _task(module: str, name: str) -> LazyFactory:
    return LazyFactory(f"condbench.tasks.{module}", name)


BUILTIN_TASKS = (
    TaskEntry("digits", "scikit-learn's 8x8 digits, 10 classes, built in (no download)", _task("digits", "DigitsTask")),
    TaskEntry("pose-digits", "paired 8x8 digits: a same-class source + the target's ink mask -> the target (tiny "
              "X-MDPT; PSNR, SSIM, class fidelity, digits-CNN FID), built in", _task("pose_digits", "PoseDigitsTask")),
    TaskEntry("imagenet", "ImageNet 256x256 class-conditional, 1,000 classes (ADM evaluator protocol)",
              _task("imagenet", "ImageNetTask"), inputs=_task("imagenet_inputs", "imagenet_inputs")),
    TaskEntry("text", "text-to-image on a prompt set (COCO captions by default): CLIP score, clean-FID",
              _task("text", "TextTask"), inputs=_task("text", "text_inputs")),
    TaskEntry("audio", "video-to-audio on the VGGSound test clips (MDSGen): FD_VGG, FD_PANNs, KL, IS "
              "(av-benchmark protocol)", _task("audio", "AudioTask"), inputs=_task("audio_files", "audio_inputs")),
    TaskEntry("audio-shapes", "synthetic moving-square videos whose look sets a sound, built in (no download): FD / "
              "KL / IS of the task's own audio classifier", _task("audio_shapes", "ShapesAudioTask")),
    TaskEntry("pose", "pose-guided person images, DeepFashion test pairs (PIDM protocol: FID, SSIM, LPIPS, PSNR)",
              _task("pose", "PoseTask"), inputs=_task("pose_files", "pose_inputs")),
)


def _register_builtins() -> None:
    from .adapters.sd3_releases import SD3_RELEASES
    from .adapters.zoo import DIT_EMBEDDERS, RELEASES

    digits, xmdpt, shapes = DIGITS_DIT.sampler, DIGITS_XMDPT.sampler, SHAPES_MDSGEN.sampler
    register_model(_shipped_entry(
        DIGITS_DIT, _dit_digits_network, _dit_digits_adapter, "ddpm", DIT_EMBEDDERS,
        f"DDPM {digits['num_steps']} respaced steps, learned sigma, CFG {digits['cfg_scale']}",
        contract_inputs=_dit_digits_contract_inputs))
    register_model(_shipped_entry(
        DIGITS_XMDPT, _xmdpt_digits_network, _xmdpt_digits_adapter, "ddim", XMDPT_EMBEDDER_PREFIXES,
        f"DDIM {xmdpt['num_steps']} respaced steps (eta 0), CFG {xmdpt['cfg_scale']} power-cosine "
        f"(pow {xmdpt['scale_pow']}) on all channels", contract_inputs=_xmdpt_digits_contract_inputs))
    register_model(_shipped_entry(
        SHAPES_MDSGEN, _mdsgen_shapes_network, _mdsgen_shapes_adapter, "dpm-solver++", MDSGEN_EMBEDDER_PREFIXES,
        f"DPM-Solver++ 2M (multistep) {shapes['num_steps']} steps, power-cosine CFG {shapes['cfg_scale']:g} "
        f"(pow {shapes['scale_pow']:g}), Griffin-Lim", contract_inputs=_mdsgen_shapes_contract_inputs))
    for release in RELEASES:
        defaults = release.sampler_defaults
        register_model(ModelEntry(release.name, release.task, release.c_dim, release.sampler, release.weights.url,
                                  release.load, defaults.get(release.steps_key, 250), defaults.get("cfg_scale", 1.0),
                                  release.resolve, options_resolver=release.resolve_options, planner=release.plan,
                                  samplers=tuple(release.samplers),
                                  contract_case=release.contract_case if release.tiny_config else None))
    for sd3 in SD3_RELEASES:
        register_model(_sd3_entry(sd3))
    for task in BUILTIN_TASKS:
        register_task(task)


def _shipped_entry(network: ShippedNetwork, build: Callable[[], Any], adapter: Callable[..., Adapter],
                   sampler_name: str, embedder_prefixes: tuple[str, ...], sampler_line: str,
                   contract_inputs: Optional[Callable[[], tuple]] = None) -> ModelEntry:
    """A registry entry for a tiny network shipped in the package (``assets/ASSET``, reproduced by
    ``condbench train TASK``): ``build()`` makes the network, ``adapter(network, checkpoint=, **sampler)`` wraps it;
    ``contract_inputs()`` gives the adapter contract's conditions, decoded shape and optionally its value range
    (default [0, 1]; None: any finite values); no ``contract_inputs``: no contract case."""
    name, defaults, asset, train_task = network.model, network.sampler, network.asset, network.task

    def checkpoint(ckpt: Optional[str] = None) -> Path:
        from .checkpoints import require_file
        from .hub import checkpoint_option, checkpoint_setting
        from .tasks import asset_path

        return require_file(ckpt or asset_path(asset), f"{name} checkpoint",
                            f"run `condbench train {train_task} --out DIR` and give DIR/{asset} as "
                            f"{checkpoint_option(name)}", checkpoint_setting(name, asset))

    def check_sampler(sampler: Optional[str]) -> None:
        if sampler not in (None, sampler_name):
            raise ValueError(f"{name} has no sampler {sampler!r}; its samplers: {sampler_name}")

    def factory(ckpt: Optional[str] = None, device: str = "cpu", embedders_only: bool = False,
                sampler: Optional[str] = None, **options: Any) -> Adapter:
        from .adapters.loading import load_network

        check_sampler(sampler)
        model, info = load_network(build, checkpoint(ckpt), embedder_prefixes=embedder_prefixes,
                                   embedders_only=embedders_only)
        return adapter(model, checkpoint=info, **{**defaults, **options}).to(device)

    def plan(sampler: Optional[str] = None, **options: Any) -> Adapter:
        import torch

        check_sampler(sampler)
        for only_files in ("ckpt", "device", "embedders_only"):
            options.pop(only_files, None)
        with torch.device("meta"):
            model = build()
        return adapter(model, **{**defaults, **options})

    def contract_case(ckpt: Optional[str] = None, model_config: Optional[dict] = None):
        """The contract's case: the shipped (or given) network itself, 3 steps."""
        from .contract import ContractCase

        if model_config:
            raise ValueError(f"{name} has one size (its checkpoint's); it takes no model_config")
        conditions, shape, *value_range = contract_inputs()
        return ContractCase(factory(ckpt, num_steps=3), conditions, shape, *value_range, checkpoint=checkpoint(ckpt))

    return ModelEntry(name, network.task, network.hidden_size, sampler_line,
                      f"shipped in the package (condbench train {train_task})", factory, defaults["num_steps"],
                      defaults["cfg_scale"], checkpoint, planner=plan, samplers=(sampler_name,),
                      contract_case=contract_case if contract_inputs else None)


def _dit_digits_network():
    from .adapters.dit_model import DiT
    from .tasks.digits import DIGITS_DIT_CONFIG

    return DiT(DIGITS_DIT_CONFIG)


def _dit_digits_adapter(model, **options: Any) -> Adapter:
    from .adapters.dit import DiTAdapter

    return DiTAdapter(model, DIGITS_DIT.model, **options)


def _dit_digits_contract_inputs() -> tuple:
    import torch

    return torch.tensor([0, 3, 7]), (1, 8, 8)


def _xmdpt_digits_network():
    from .adapters.xmdpt_model import XMDPT
    from .tasks.pose_digits import XMDPT_DIGITS_CONFIG

    return XMDPT(XMDPT_DIGITS_CONFIG)


def _xmdpt_digits_adapter(model, **options: Any) -> Adapter:
    from .adapters.dit import pixels_from_model_space
    from .adapters.xmdpt import XMDPTAdapter

    return XMDPTAdapter(model, DIGITS_XMDPT.model, decoder=pixels_from_model_space, **options)


def _xmdpt_digits_contract_inputs() -> tuple:
    from .tasks.pose_digits import PoseDigitsTask

    return PoseDigitsTask(num_pairs=3).conditions(), (1, 8, 8)


def _mdsgen_shapes_network():
    """MDSGen's network at a tiny size, trained on the audio-shapes clips."""
    from .adapters.mdsgen_model import MDSGen
    from .tasks.audio_shapes import SHAPES_MDSGEN_CONFIG

    return MDSGen(SHAPES_MDSGEN_CONFIG)


def _mdsgen_shapes_adapter(model, **options: Any) -> Adapter:
    """MDSGen's own sampler (DPM-Solver++ 2M, power-cosine guidance) and a Griffin-Lim decoder."""
    from .adapters.griffin_lim import GriffinLimDecoder
    from .adapters.mdsgen import MDSGenAdapter

    return MDSGenAdapter(model, SHAPES_MDSGEN.model, decoder=GriffinLimDecoder(), **options)


def _mdsgen_shapes_contract_inputs() -> tuple:
    """Three random clips' (frames, features), a waveform each, any finite values."""
    import torch

    from .datasets.shapes_audio import AUDIO_SAMPLES
    from .tasks.audio_shapes import SHAPES_MDSGEN_CONFIG

    config = SHAPES_MDSGEN_CONFIG
    features = torch.rand(3, config.num_frames, config.feature_dim, generator=torch.Generator().manual_seed(0))
    return features, (AUDIO_SAMPLES,), None


def _sd3_entry(release) -> ModelEntry:
    """A registry entry for an SD3-family diffusers pipeline (model options: path, t5, dtype, num_steps, ...)."""
    from .adapters.sd3_releases import resolve_pipeline_folder

    def factory(ckpt: Optional[str] = None, **options: Any) -> Adapter:
        from .adapters.sd3 import load_sd3

        return load_sd3(release, ckpt=ckpt, **options)

    def resolve(options: dict) -> Path:
        return resolve_pipeline_folder(release, options.get("path") or options.get("ckpt"), t5=options.get("t5", True))

    def contract_case(ckpt: Optional[str] = None, model_config: Optional[dict] = None):
        from .adapters.sd3 import sd3_contract_case

        return sd3_contract_case(release, ckpt, model_config)

    sampler = f"flow-match Euler {release.num_steps} steps, CFG {release.cfg_scale:g}, negative prompt ''"
    return ModelEntry(release.name, "text", release.c_dim, sampler, f"https://huggingface.co/{release.repo} (gated)",
                      factory, release.num_steps, release.cfg_scale,
                      lambda ckpt: resolve_pipeline_folder(release, ckpt), resolve, contract_case=contract_case)


_register_builtins()
