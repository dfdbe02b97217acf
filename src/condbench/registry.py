"""Names -> models and tasks, with "did you mean" for typos.

A model entry knows how to build its adapter from a checkpoint, the size of its c, its default sampler
and where its checkpoint comes from; ``condbench list models`` prints them.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

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


MODELS: dict[str, ModelEntry] = {}
TASKS: dict[str, TaskEntry] = {}


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
    return _lookup(MODELS, name, "model")


def task_entry(name: str) -> TaskEntry:
    return _lookup(TASKS, name, "task")


def load_adapter(name: str, ckpt: Optional[str] = None, **config: Any) -> Adapter:
    """Build the adapter ``name`` from checkpoint ``ckpt`` (its default file if None); ``config`` overrides
    sampler settings such as ``num_steps`` or ``cfg_scale``."""
    return model_entry(name).factory(ckpt=ckpt, **config)


def load_task(name: str, **options: Any):
    return task_entry(name).factory(**options)


def _register_builtins() -> None:
    from .adapters.dit import DiTAdapter
    from .adapters.sd3 import SD3_RELEASES
    from .adapters.dit_model import DiT
    from .adapters.loading import load_network
    from .adapters.zoo import DIT_EMBEDDERS, RELEASES
    from .checkpoints import require_file
    from .tasks import asset_path
    from .tasks.audio import AudioTask
    from .tasks.audio_shapes import ShapesAudioTask
    from .tasks.digits import ASSET_DIT, DIGITS_DIT_CONFIG, DIGITS_SAMPLER, DigitsTask
    from .tasks.imagenet import ImageNetTask
    from .tasks.pose import PoseTask
    from .tasks.text import TextTask

    def digits_checkpoint(ckpt: Optional[str] = None) -> Path:
        return require_file(ckpt or asset_path(ASSET_DIT), "digits DiT checkpoint",
                            "run `condbench train digits --out DIR` and pass --ckpt DIR/" + ASSET_DIT)

    def digits_sampler(sampler: Optional[str]) -> None:
        if sampler not in (None, "ddpm"):
            raise ValueError(f"dit-digits has no sampler {sampler!r}; its samplers: ddpm")

    def dit_digits(ckpt: Optional[str] = None, device: str = "cpu", embedders_only: bool = False,
                   sampler: Optional[str] = None, **options: Any) -> Adapter:
        digits_sampler(sampler)
        path = digits_checkpoint(ckpt)
        model, info = load_network(lambda: DiT(DIGITS_DIT_CONFIG), path, embedder_prefixes=DIT_EMBEDDERS,
                                   embedders_only=embedders_only)
        return DiTAdapter(model, "dit-digits", checkpoint=info, **{**DIGITS_SAMPLER, **options}).to(device)

    def dit_digits_plan(sampler: Optional[str] = None, **options: Any) -> Adapter:
        import torch

        digits_sampler(sampler)
        for only_files in ("ckpt", "device", "embedders_only"):
            options.pop(only_files, None)
        with torch.device("meta"):
            model = DiT(DIGITS_DIT_CONFIG)
        return DiTAdapter(model, "dit-digits", **{**DIGITS_SAMPLER, **options})

    _register_mdsgen_shapes()
    register_model(ModelEntry("dit-digits", "digits", DIGITS_DIT_CONFIG.hidden_size,
                              f"DDPM {DIGITS_SAMPLER['num_steps']} respaced steps, learned sigma, "
                              f"CFG {DIGITS_SAMPLER['cfg_scale']}", "shipped in the package (condbench train digits)",
                              dit_digits, DIGITS_SAMPLER["num_steps"], DIGITS_SAMPLER["cfg_scale"], digits_checkpoint,
                              planner=dit_digits_plan, samplers=("ddpm",)))
    for release in RELEASES:
        defaults = release.sampler_defaults
        register_model(ModelEntry(release.name, release.task, release.c_dim, release.sampler, release.weights.url,
                                  release.load, defaults.get(release.steps_key, 250), defaults.get("cfg_scale", 1.0),
                                  release.resolve, options_resolver=release.resolve_options, planner=release.plan,
                                  samplers=tuple(release.samplers)))
    for sd3 in SD3_RELEASES:
        register_model(_sd3_entry(sd3))
    register_task(TaskEntry("digits", "scikit-learn's 8x8 digits, 10 classes, built in (no download)", DigitsTask))
    register_task(TaskEntry("imagenet", "ImageNet 256x256 class-conditional, 1,000 classes (ADM evaluator protocol)",
                            ImageNetTask))
    register_task(TaskEntry("text", "text-to-image on a prompt set (COCO captions by default): CLIP score, clean-FID",
                            TextTask))
    register_task(TaskEntry("audio", "video-to-audio on the VGGSound test clips (MDSGen): FD_VGG, FD_PANNs, KL, IS "
                            "(av-benchmark protocol)", AudioTask))
    register_task(TaskEntry("audio-shapes", "synthetic moving-square videos whose look sets a sound, built in (no "
                            "download): FD / KL / IS of the task's own audio classifier", ShapesAudioTask))
    register_task(TaskEntry("pose", "pose-guided person images, DeepFashion test pairs (PIDM protocol: FID, SSIM, "
                            "LPIPS, PSNR)", PoseTask))


def _register_mdsgen_shapes() -> None:
    """``mdsgen-shapes``: MDSGen's network at a tiny size, trained on the audio-shapes clips, shipped in the package;
    MDSGen's own sampler (DPM-Solver++ 2M, power-cosine guidance) and a Griffin-Lim decoder."""
    from .adapters.griffin_lim import GriffinLimDecoder
    from .adapters.mdsgen import MDSGenAdapter
    from .adapters.mdsgen_model import MDSGEN_EMBEDDER_PREFIXES, MDSGen
    from .adapters.loading import load_network
    from .checkpoints import require_file
    from .tasks import asset_path
    from .tasks.audio_shapes import ASSET_MDSGEN, SHAPES_MDSGEN_CONFIG, SHAPES_SAMPLER

    def checkpoint(ckpt: Optional[str] = None) -> Path:
        return require_file(ckpt or asset_path(ASSET_MDSGEN), "mdsgen-shapes checkpoint",
                            "run `condbench train audio-shapes --out DIR` and pass --ckpt DIR/" + ASSET_MDSGEN)

    def check_sampler(sampler: Optional[str]) -> None:
        if sampler not in (None, "dpm-solver++"):
            raise ValueError(f"mdsgen-shapes has no sampler {sampler!r}; its samplers: dpm-solver++")

    def factory(ckpt: Optional[str] = None, device: str = "cpu", embedders_only: bool = False,
                sampler: Optional[str] = None, **options: Any) -> Adapter:
        check_sampler(sampler)
        model, info = load_network(lambda: MDSGen(SHAPES_MDSGEN_CONFIG), checkpoint(ckpt),
                                   embedder_prefixes=MDSGEN_EMBEDDER_PREFIXES, embedders_only=embedders_only)
        return MDSGenAdapter(model, "mdsgen-shapes", checkpoint=info, decoder=GriffinLimDecoder(),
                             **{**SHAPES_SAMPLER, **options}).to(device)

    def plan(sampler: Optional[str] = None, **options: Any) -> Adapter:
        import torch

        check_sampler(sampler)
        for only_files in ("ckpt", "device", "embedders_only"):
            options.pop(only_files, None)
        with torch.device("meta"):
            model = MDSGen(SHAPES_MDSGEN_CONFIG)
        return MDSGenAdapter(model, "mdsgen-shapes", **{**SHAPES_SAMPLER, **options})

    register_model(ModelEntry("mdsgen-shapes", "audio-shapes", SHAPES_MDSGEN_CONFIG.hidden_size,
                              f"DPM-Solver++ 2M (multistep) {SHAPES_SAMPLER['num_steps']} steps, power-cosine CFG "
                              f"{SHAPES_SAMPLER['cfg_scale']:g} (pow {SHAPES_SAMPLER['scale_pow']:g}), Griffin-Lim",
                              "shipped in the package (condbench train audio-shapes)", factory,
                              SHAPES_SAMPLER["num_steps"], SHAPES_SAMPLER["cfg_scale"], checkpoint, planner=plan,
                              samplers=("dpm-solver++",)))


def _sd3_entry(release) -> ModelEntry:
    """A registry entry for an SD3-family diffusers pipeline (model options: path, t5, dtype, num_steps, ...)."""
    from .adapters.sd3 import load_sd3, resolve_pipeline_folder

    def factory(ckpt: Optional[str] = None, **options: Any) -> Adapter:
        return load_sd3(release, ckpt=ckpt, **options)

    def resolve(options: dict) -> Path:
        return resolve_pipeline_folder(release, options.get("path") or options.get("ckpt"), t5=options.get("t5", True))

    sampler = f"flow-match Euler {release.num_steps} steps, CFG {release.cfg_scale:g}, negative prompt ''"
    return ModelEntry(release.name, "text", release.c_dim, sampler, f"https://huggingface.co/{release.repo} (gated)",
                      factory, release.num_steps, release.cfg_scale,
                      lambda ckpt: resolve_pipeline_folder(release, ckpt), resolve)


_register_builtins()
