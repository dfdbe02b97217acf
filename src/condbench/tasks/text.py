"""Text-to-image generation (SD3 / SD3.5), scored with CLIP score and FID against a reference image folder.

Conditions are prompts: sample i has prompt ``i % P`` of the P prompts (``samples_per_prompt`` rounds). The
Table-1 statistics of c run over the P prompts once each. Default prompt set: a seeded sample of
``num_prompts`` COCO val2017 captions, one per image; FID then compares against exactly those images
(center-cropped and resized to ``image_size``, the generation size). Nothing of COCO ships with condbench:
its files are looked for under ``$CONDBENCH_CACHE/coco`` unless given as task options.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from ..checkpoints import CheckpointNotFoundError, FileSetting
from ..datasets.image_folders import reference_files
from ..datasets.prompts import PromptSet, load_prompts
from ..hub import cache_root, offline
from ..metrics.weight_files import inception_weights_path, require_clip_model
from . import asset_path, input_checks

if TYPE_CHECKING:  # the module stays torch-free at import: the run's preflight builds the task to check its files
    import torch

    from .text_metrics import TextEvaluator

BUILTIN_PROMPTS = "builtin"
COCO_ANNOTATIONS_URL = "http://images.cocodataset.org/annotations/annotations_trainval2017.zip"
COCO_IMAGES_URL = "http://images.cocodataset.org/zips/val2017.zip"
DEFAULT_CLIP = "openai/clip-vit-large-patch14"


def default_coco_captions() -> Path:
    return cache_root() / "coco" / "annotations" / "captions_val2017.json"


def default_coco_images() -> Path:
    return cache_root() / "coco" / "val2017"


class TextTask:
    """Prompts, the reference folder and the metric set of the text-to-image task.

    Options: ``prompt_file`` (a text/csv/jsonl/COCO/Parti file, ``builtin`` for the 50 prompts that ship with
    condbench, default COCO val2017 captions), ``prompt_format`` (auto by suffix), ``num_prompts`` (COCO: a
    seeded sample of images; other files: the first N; None: all), ``prompt_seed``, ``samples_per_prompt``,
    ``reference_images`` (a folder; default COCO val2017 images; None with ``fid: false``), ``fid``,
    ``image_size`` (the generation size, 1024 for the SD3 family), ``inception_weights``, ``clip_model``
    (None turns CLIP score off), ``device`` (of Inception and CLIP; default: CUDA when available).
    """
    headline_metrics = ("fid", "clip_score")  # the report's across-tasks columns
    resampled_frechet_dims = {"fid": 2048}  # what each bootstrap resample recomputes (Inception pool features)

    name = "text"
    condition_kind = "text"
    default_model = "sd3-medium"
    grid_count = 32

    def __init__(self, prompt_file: Optional[str] = None, prompt_format: str = "auto", num_prompts: Optional[int] = None,
                 prompt_seed: int = 0, samples_per_prompt: int = 1, reference_images: Optional[str] = None,
                 fid: bool = True, image_size: int = 1024, inception_weights: Optional[str] = None,
                 clip_model: Optional[str] = DEFAULT_CLIP, device: Optional[str] = None):
        if samples_per_prompt < 1 or (num_prompts is not None and num_prompts < 1):
            raise ValueError("samples_per_prompt and num_prompts must be >= 1")
        self.prompt_file = prompt_file
        self.prompt_format = prompt_format
        self.num_prompts = num_prompts
        self.prompt_seed = prompt_seed
        self.samples_per_prompt = samples_per_prompt
        self.reference_images = reference_images
        self.fid = fid
        self.image_size = image_size
        self.inception_weights = inception_weights
        self.clip_model = clip_model
        self.device = device
        self._evaluator: Optional[TextEvaluator] = None

    # --- prompts

    def prompt_path(self) -> Path:
        if self.prompt_file == BUILTIN_PROMPTS:
            return asset_path("text_prompts.txt")
        return Path(self.prompt_file).expanduser() if self.prompt_file else default_coco_captions()

    @cached_property
    def prompt_set(self) -> PromptSet:
        path = self.prompt_path()
        if not path.is_file():
            how = (f"download {COCO_ANNOTATIONS_URL} and unzip it into {path.parent.parent}" if not self.prompt_file
                   else "check the task option prompt_file")
            raise CheckpointNotFoundError(f"prompt file not found: {path.resolve()}.\nHow to provide it: {how} (or set "
                                          f"the task option prompt_file to a text/csv/jsonl/COCO/PartiPrompts file, "
                                          f"or to '{BUILTIN_PROMPTS}' for the prompts shipped with condbench).",
                                          (FileSetting(("task_options", "prompt_file"), f"/path/to/{path.name}"),))
        return load_prompts(path, self.prompt_format, self.num_prompts, self.prompt_seed)

    @property
    def num_samples(self) -> int:
        if self.num_prompts is not None and not self.prompt_path().is_file():
            return self.num_prompts * self.samples_per_prompt  # a plan before the files exist
        return len(self.prompt_set) * self.samples_per_prompt

    def conditions(self) -> list[str]:
        """The prompt of every sample index: the prompt list repeated ``samples_per_prompt`` times."""
        return list(self.prompt_set.prompts) * self.samples_per_prompt

    def analysis_conditions(self) -> list[str]:
        """Every prompt once (Table 1's statistics over prompts)."""
        return list(self.prompt_set.prompts)

    def prepare_adapter(self, adapter: Any) -> None:
        """The adapter's mean c over the task's prompts, for ``mask=fixed`` policies."""
        if hasattr(adapter, "set_condition_mean"):
            adapter.set_condition_mean(self.analysis_conditions())

    # --- metric inputs

    def reference_folder(self) -> Path:
        return Path(self.reference_images).expanduser() if self.reference_images else default_coco_images()

    def reference_names(self) -> Optional[list[str]]:
        """With COCO prompts, the images the captions describe; else every image of the folder."""
        return list(self.prompt_set.image_files) if self.prompt_set.image_files else None

    def check_reference(self) -> None:
        names = self.reference_names() if self.prompt_path().is_file() else None  # else: the folder at least
        try:
            reference_files(self.reference_folder(), names)
        except CheckpointNotFoundError as error:
            how = (f"download {COCO_IMAGES_URL} and unzip it into {self.reference_folder().parent}"
                   if not self.reference_images else "check the task option reference_images")
            raise CheckpointNotFoundError(f"FID reference images: {error}.\nHow to provide them: {how}, or set the "
                                          "task option reference_images to a folder of images, or fid: false.",
                                          (FileSetting(("task_options", "reference_images"),
                                                       f"/path/to/{self.reference_folder().name}"),)) from None

    def inception_weights_path(self) -> Path:
        return inception_weights_path(self.inception_weights, download=not offline())

    def check_clip_model(self) -> None:
        require_clip_model(self.clip_model)

    def file_checks(self) -> list[Callable[[], object]]:
        """One check per file (or set of files) the task reads; each raises CheckpointNotFoundError when absent."""
        checks: list[Callable[[], object]] = [lambda: self.prompt_set]
        if self.fid:
            checks += [self.check_reference, self.inception_weights_path]
        if self.clip_model:
            checks.append(self.check_clip_model)
        return checks

    def required_inputs(self) -> list[Callable[[], object]]:
        """The file checks, with the CLIP model loaded rather than only found (the evaluator then uses this load);
        the run's preflight calls each before any sampling."""
        loads = {self.check_clip_model: lambda: self.clip_scorer}
        return [loads.get(check, check) for check in self.file_checks()]

    @cached_property
    def metric_device(self) -> torch.device:
        """Where Inception and CLIP run (features come back to the CPU as float32): the task option ``device``."""
        from . import metric_device

        return metric_device(self.device)

    @cached_property
    def clip_scorer(self):
        from ..metrics.clip_score import ClipScore

        return ClipScore(self.clip_model, device=self.metric_device)

    @property
    def evaluator(self) -> TextEvaluator:
        if self._evaluator is None:
            from .text_metrics import TextEvaluator

            inception = reference = None
            if self.fid:
                from ..metrics.clean_fid import FolderReference
                from ..metrics.inception import InceptionFeatures

                self.check_reference()
                inception = InceptionFeatures.load(self.inception_weights_path(), device=self.metric_device)
                reference = FolderReference.compute(self.reference_folder(), self.image_size, inception,
                                                    names=self.reference_names())
            self._evaluator = TextEvaluator(self.image_size, inception, reference,
                                            self.clip_scorer if self.clip_model else None)
        return self._evaluator

    def describe(self) -> dict:
        return {"task": self.name, "prompts": self.prompt_set.describe(), "samples_per_prompt": self.samples_per_prompt,
                "num_samples": self.num_samples, "image_size": self.image_size,
                "metric_options": {"fid": self.fid, "inception_weights": self.inception_weights,
                                   "clip_model": self.clip_model, "reference_images": str(self.reference_folder())},
                "metric_details": self.evaluator.protocol(), "metric_protocol": self.evaluator.protocol_line()}


def text_inputs(**task_options: Any) -> list[Callable[[], object]]:
    """The registry's torch-free file checks of the text task (the task itself is torch-free until it scores)."""
    return input_checks(TextTask, task_options)
