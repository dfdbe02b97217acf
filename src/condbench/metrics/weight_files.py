"""Where the files a task reads besides the model are (metric networks' and condition encoders' weights, reference
files), and what a missing one's error says.

Torch-free: the run's preflight checks every file with these functions before torch is imported, and the
metric and encoder modules load the files they find, so both give the same message.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from ..checkpoints import CheckpointNotFoundError, FileSetting, require_file
from ..hub import WeightSource, cache_root, offline, placeholder_path, resolve_weights

INCEPTION_WEIGHTS = WeightSource(
    "weights-inception-2015-12-05-6726825d.pth",
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth")
INCEPTION_WEIGHTS_ENV = "CONDBENCH_INCEPTION_WEIGHTS"
REFERENCE_BATCH = WeightSource(
    "VIRTUAL_imagenet256_labeled.npz",
    "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/ref_batches/imagenet/256/VIRTUAL_imagenet256_labeled.npz")
CLIP_MODEL = "openai/clip-vit-base-patch16"
CLASSIFIER = "resnet50:IMAGENET1K_V2"  # torchvision "ARCH:WEIGHTS"
# The files of the torchvision weights whose name the preflight knows without torchvision (torchvision's
# get_model_weights(ARCH)[WEIGHTS].url; tests/test_startup.py checks them against torchvision).
TORCHVISION_WEIGHT_URLS = {CLASSIFIER: "https://download.pytorch.org/models/resnet50-11ad3fa6.pth"}

# pose task (PIDM protocol): torchvision's Inception-v3 for FID, AlexNet for LPIPS; X-MDPT's condition encoders
PIDM_INCEPTION_WEIGHTS = WeightSource("inception_v3_google-0cc3c7bd.pth",
                                      "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth")
ALEXNET_WEIGHTS = WeightSource("alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth")
_DINOV2_BASE = "https://dl.fbaipublicfiles.com/dinov2"
DINOV2_VITB14_WEIGHTS = WeightSource("dinov2_vitb14_pretrain.pth", f"{_DINOV2_BASE}/dinov2_vitb14/dinov2_vitb14_pretrain.pth")
DINOV2_VITG14_WEIGHTS = WeightSource("dinov2_vitg14_pretrain.pth", f"{_DINOV2_BASE}/dinov2_vitg14/dinov2_vitg14_pretrain.pth")
# X-MDPT's fine-tuned VAE (its README: model_zoo/diffuser_finetune_vae), published on Google Drive only.
XMDPT_VAE = WeightSource("diffuser_finetune_vae",
                         "https://drive.google.com/file/d/1zjoCLuJV-_d-pq7f_N0vZXppUkq8LTP0/view", direct=False)
# audio task (av-benchmark protocol): VGGish for FD_VGG, PANNs Cnn14 (16 kHz) for FD_PANNs / KL / IS; MDSGen's CAVP
VGGISH_WEIGHTS = WeightSource(
    filename="vggish-10086976.pth",
    url="https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth")
CNN14_16K_WEIGHTS = WeightSource(
    filename="Cnn14_16k_mAP=0.438.pth",
    url="https://zenodo.org/record/3987831/files/Cnn14_16k_mAP%3D0.438.pth?download=1")
AUDIOLDM_REPO = "cvssp/audioldm-s-full-v2"  # MDSGen's decoder: AudioLDM's VAE and HiFi-GAN vocoder
CAVP_WEIGHTS = WeightSource("cavp_epoch66.ckpt",
                            "https://huggingface.co/SimianLuo/Diff-Foley/resolve/main/diff_foley_ckpt/cavp_epoch66.ckpt",
                            hf_repo="SimianLuo/Diff-Foley", hf_filename="diff_foley_ckpt/cavp_epoch66.ckpt")


def xmdpt_vae_folder(folder: Optional[str | Path] = None, *, option: str, keys: tuple[str, ...] = ()) -> Path:
    """X-MDPT's fine-tuned VAE, a diffusers folder (config.json + weights): ``folder`` (given as ``option``, a
    phrase; ``keys`` the suite keys of that option, for the missing-files snippet), else
    ``<cache>/weights/diffuser_finetune_vae``; never downloaded (Google Drive only)."""
    candidate = Path(folder).expanduser() if folder is not None else cache_root() / "weights" / XMDPT_VAE.filename
    if (candidate / "config.json").is_file():
        return candidate
    raise CheckpointNotFoundError(
        f"X-MDPT fine-tuned VAE not found: no diffusers folder (config.json + weights) at {candidate.resolve()}. "
        f"It is published only on a page a person downloads from: {XMDPT_VAE.url}\nHow to provide it: download "
        f"it yourself, unpack it, and give the folder as {option}, or place it at "
        f"{cache_root() / 'weights' / XMDPT_VAE.filename}.",
        (FileSetting(keys, placeholder_path(XMDPT_VAE.filename), note="diffusers folder: config.json + weights"),)
        if keys else ())


def audioldm_not_found(problem: str) -> CheckpointNotFoundError:
    """The error for MDSGen's AudioLDM decoder when it cannot be loaded: ``problem``, then how to provide it."""
    return CheckpointNotFoundError(
        f"AudioLDM decoder (MDSGen's VAE and vocoder) {problem}.\nHow to provide it: download "
        f"https://huggingface.co/{AUDIOLDM_REPO} once while online (it is then cached), or pass a local copy with "
        "the model option decoder=/path/to/audioldm-s-full-v2 (a folder holding vae/ and vocoder/, each with "
        "config.json and weights)")


def require_audioldm(source: str | Path = AUDIOLDM_REPO) -> None:
    """Raise a CheckpointNotFoundError naming what is absent when the decoder cannot load: a local folder without
    ``vae/config.json`` or ``vocoder/config.json``, or (offline) a hub id not in the Hugging Face cache."""
    parts = ("vae/config.json", "vocoder/config.json")
    folder = Path(str(source)).expanduser()
    if folder.is_dir() or str(source) != AUDIOLDM_REPO:
        missing = [str(folder / p) for p in parts if not (folder / p).is_file()]
        if missing:
            raise audioldm_not_found(f"not found: {', '.join(missing)} do(es) not exist")
        return
    if offline():
        from huggingface_hub import try_to_load_from_cache

        if not all(isinstance(try_to_load_from_cache(str(source), p), str) for p in parts):
            raise audioldm_not_found(f"{source!r} is not in the Hugging Face cache and downloads are off "
                                     "(offline mode)")


def task_option_weights(source: WeightSource, path: Optional[str | Path], *, task: str, option: str,
                        what: str) -> Path:
    """``source``'s file for task ``task``: the path given as its task option ``option``, else the cache, else a
    one-time download (not offline); the error names the option, and the snippet gives it."""
    return resolve_weights(source, path, what=what, option=f"the {task} task option {option} (suite task_options)",
                           setting=FileSetting(("task_options", option), placeholder_path(source.filename)),
                           download=not offline())


def reference_batch_path(path: Optional[str | Path] = None) -> Path:
    """ADM's reference batch: ``path`` (the task option reference_batch), else the cache, else a one-time download."""
    return resolve_weights(REFERENCE_BATCH, path, what="ADM reference batch",
                           option="the task option reference_batch (suite task_options)",
                           setting=FileSetting(("task_options", "reference_batch"),
                                               placeholder_path(REFERENCE_BATCH.filename)))


def inception_weights_path(path: Optional[str | Path] = None, download: bool = False) -> Path:
    """The Inception weights from the argument, ``$CONDBENCH_INCEPTION_WEIGHTS`` or the cache (downloaded only if
    asked); raises CheckpointNotFoundError with the remedy when absent (a preflight can call it before sampling)."""
    setting = FileSetting(("task_options", "inception_weights"), placeholder_path(INCEPTION_WEIGHTS.filename))
    how = (f"download {INCEPTION_WEIGHTS.url} (torch-fidelity GitHub release v0.2.0) and give its path as the task "
           f"option inception_weights (suite task_options; in Python InceptionFeatures.load(path)), or set "
           f"${INCEPTION_WEIGHTS_ENV} to it, or place it at {cache_root() / 'weights' / INCEPTION_WEIGHTS.filename}")
    explicit = path if path is not None else os.environ.get(INCEPTION_WEIGHTS_ENV) or None
    if explicit is not None:
        return require_file(explicit, "Inception weights for FID/sFID/IS/Precision/Recall", how, setting)
    if download:
        return resolve_weights(INCEPTION_WEIGHTS, what="Inception weights", setting=setting,
                               option=f"the task option inception_weights or the environment variable "
                                      f"${INCEPTION_WEIGHTS_ENV}")
    target = cache_root() / "weights" / INCEPTION_WEIGHTS.filename
    if not target.is_file():
        raise CheckpointNotFoundError(
            f"Inception weights for FID/sFID/IS/Precision/Recall not found: {INCEPTION_WEIGHTS.filename!r} was looked "
            f"for at {target} (no path given, ${INCEPTION_WEIGHTS_ENV} unset). condbench never computes these metrics "
            f"with other weights.\nHow to provide it: {how}.", (setting,))
    return target


def clip_model_not_found(model: str, reason: str, cache_dir: Optional[str | Path] = None,
                         local_only: bool = True) -> CheckpointNotFoundError:
    """The error for a CLIP model that is neither a local folder nor in the Hugging Face cache."""
    from huggingface_hub.constants import HF_HUB_CACHE

    return CheckpointNotFoundError(
        f"CLIP model {model!r} for the CLIP score could not be loaded ({reason}). Looked in: the local directory "
        f"{model} if it is one, else the Hugging Face cache {cache_dir or HF_HUB_CACHE}"
        f"{' (offline: no download attempted)' if local_only else ''}.\nHow to provide it: run once with network "
        f"access to download it, or `hf download {model}`, or give a local directory (CLIPModel and CLIPProcessor "
        f"saved with save_pretrained) as the task option clip_model (suite task_options; null turns the CLIP score "
        f"off).",
        (FileSetting(("task_options", "clip_model"), placeholder_path(model),
                     note="CLIPModel + CLIPProcessor saved with save_pretrained"),))


def require_clip_model(model: str) -> None:
    """Without torch: offline, the CLIP model must be a local folder or in the Hugging Face cache (its config.json);
    online it is downloaded when the metric loads it (that load reports a failed download)."""
    from huggingface_hub import try_to_load_from_cache

    if Path(model).expanduser().is_dir() or not offline():
        return
    try:
        cached = try_to_load_from_cache(model, "config.json")
    except ValueError:  # not a hub id either (e.g. a folder that does not exist)
        cached = None
    if not isinstance(cached, str):
        raise clip_model_not_found(model, "not a local folder and not in the Hugging Face cache")


def torch_hub_dir() -> Path:
    """``torch.hub.get_dir()`` without torch: ``$TORCH_HOME/hub``, else ``$XDG_CACHE_HOME/torch/hub``, else
    ``~/.cache/torch/hub``."""
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.path.expanduser(home)) / "hub"


def classifier_weights_path(classifier: str, hub_dir: Optional[Path] = None) -> Path:
    """The torch hub cache's file of a torchvision classifier ("ARCH:WEIGHTS"); never downloaded. Weights not in
    :data:`TORCHVISION_WEIGHT_URLS` are looked up in torchvision (which imports torch)."""
    arch, _, weights = classifier.partition(":")
    weights = weights or "DEFAULT"
    url = TORCHVISION_WEIGHT_URLS.get(f"{arch}:{weights}")
    if url is None:
        from torchvision.models import get_model_weights

        url = get_model_weights(arch)[weights].url
    path = (hub_dir or torch_hub_dir()) / "checkpoints" / os.path.basename(url)
    if not path.is_file():
        raise CheckpointNotFoundError(
            f"classifier weights for class fidelity not found: {path.name!r} ({arch} {weights}) was looked for "
            f"at {path}.\nHow to provide it: download {url} into {path.parent} (the torch hub cache; "
            f"$TORCH_HOME moves it), e.g. by calling torchvision.models.{arch}(weights='{weights}') once with "
            f"network access, or choose another classifier with the task option classifier (null turns class "
            f"fidelity off).",
            (FileSetting(("TORCH_HOME",), "/path/to/torch", env=True, note=f"hub/checkpoints/{path.name}"),))
    return path
