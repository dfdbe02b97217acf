"""The released ImageNet models: which network, which sampler, which file, and where it is published.

Each :class:`ReleasedModel` turns into a registry entry whose factory resolves the checkpoint (``ckpt`` or a
one-time download into the cache), builds the network at the official size (or the sizes in
``model_config``, for tests and smaller variants), loads the file strictly, and wraps it in the model's own
sampler with its published defaults (any of which a caller may override).

This module is torch-free at import (``condbench list`` and the missing-files preflight read :data:`RELEASES`
without torch): the networks, adapters and decoders are imported when a release is built.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from ..checkpoints import CheckpointMismatchError, CheckpointNotFoundError, FileSetting, require_file
from ..hub import WeightSource, checkpoint_option, checkpoint_setting, placeholder_path, resolve_weights
from .catalogue import (MDSGEN_EMBEDDER_PREFIXES, UVIT_AUTOENCODER_FILE, UVIT_AUTOENCODER_URL, XMDPT_EMBEDDER_PREFIXES,
                        XMDPT_SIZES)

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .base import Adapter

DIT_EMBEDDERS = ("t_embedder.", "y_embedder.")


@dataclass(frozen=True)
class ReleasedModel:
    """One published checkpoint and how condbench runs it."""

    name: str
    network: Callable[[dict], nn.Module]  # model_config overrides -> the network at the official size
    adapter: Callable[..., Adapter]  # (network, name, checkpoint=..., decoder=..., **sampler) -> adapter
    weights: WeightSource
    c_dim: int
    sampler: str  # one line for ``condbench list models``
    sampler_defaults: dict = field(default_factory=dict)
    state_keys: tuple[str, ...] = ()  # sub-dicts of the file to look in (``ema``, ``model``)
    # training-only weights in the file besides those of the network's family (MDT, X-MDPT and MDSGen files'
    # side blocks and mask token: left out by loading.training_only_prefixes for every network of the family)
    ignore_prefixes: tuple[str, ...] = ()
    embedder_prefixes: tuple[str, ...] = DIT_EMBEDDERS
    decoder: Callable[[], Callable] = lambda: _sd_vae_decoder()
    steps_key: str = "num_steps"
    task: str = "imagenet"
    decoder_at: Callable[[str], Callable] = lambda path: decoder_from_path(path)  # decoder=PATH -> the decoder
    check_file: Optional[Callable[[Path, dict], None]] = None  # (checkpoint, model_config) -> raises if it does not fit
    # (decoder option (None: the default), model name) -> raises CheckpointNotFoundError when the decoder's files are
    # absent: the preflight's check, for decoders that load their files only when they first decode
    check_decoder: Optional[Callable[[Optional[Any], str], None]] = None
    # the samplers a user may pick with ``sampler=NAME`` (model option), each as its adapter options; the first is
    # the official default
    samplers: dict[str, dict] = field(default_factory=lambda: {"default": {}})
    # the contract's tiny configuration (model_config overrides) and how many pixels a latent covers per side
    tiny_config: dict = field(default_factory=dict)
    decoder_factor: int = 8
    # the contract's conditions (three of the task's kind) and one decoded output's (shape, range); None: class ids
    # and images of decoder_factor x the latent size in [0, 1]
    contract_conditions: Optional[Callable[[], Any]] = None
    contract_output: Optional[tuple[tuple[int, ...], Optional[tuple[float, float]]]] = None

    def sampler_options(self, sampler: Optional[str]) -> tuple[str, dict]:
        """The chosen sampler's name and adapter options (the default's when ``sampler`` is None)."""
        choice = next(iter(self.samplers)) if sampler is None else sampler
        if choice not in self.samplers:
            raise ValueError(f"{self.name} has no sampler {choice!r}; its samplers: {', '.join(self.samplers)} "
                             f"(model option sampler=NAME; the first is the official default)")
        return choice, {**self.sampler_defaults, **self.samplers[choice]}

    def resolve(self, ckpt: Optional[str] = None) -> Path:
        """The local checkpoint: ``ckpt``, the cached copy, or a one-time download."""
        return resolve_weights(self.weights, ckpt, what=f"{self.name} checkpoint", option=checkpoint_option(self.name),
                               setting=checkpoint_setting(self.name, self.weights.filename))

    def resolve_options(self, options: dict) -> Path:
        """The checkpoint of the suite's model options, after checking the decoder's files too: one error names
        every missing file (the run's preflight lists it)."""
        problems, path = [], None
        try:
            path = self.resolve(options.get("ckpt"))
        except CheckpointNotFoundError as error:
            problems.append(error)
        if self.check_decoder is not None:
            try:
                self.check_decoder(options.get("decoder"), self.name)
            except CheckpointNotFoundError as error:
                problems.append(error)
        if problems:
            raise CheckpointNotFoundError("\n".join(str(p) for p in problems), sum((p.settings for p in problems), ()))
        return path

    def load(self, ckpt: Optional[str] = None, device: str = "cpu", model_config: Optional[dict] = None,
             embedders_only: bool = False, decoder: Optional[Any] = None, sampler: Optional[str] = None,
             **options: Any) -> Adapter:
        """The adapter for this release; ``embedders_only`` reads only the parts that form c (for analysis);
        ``sampler`` picks one of :attr:`samplers`, ``options`` override its settings (``num_steps``...)."""
        from .loading import load_network

        choice, settings = self.sampler_options(sampler)
        path = self.resolve(ckpt)
        if self.check_file is not None:
            self.check_file(path, dict(model_config or {}))
        network, info = load_network(lambda: self.network(dict(model_config or {})), path, state_keys=self.state_keys,
                                     ignore_prefixes=self.ignore_prefixes, embedder_prefixes=self.embedder_prefixes,
                                     embedders_only=embedders_only)
        if isinstance(decoder, (str, Path)):
            decoder = self.decoder_at(decoder)
        adapter = self.adapter(network, self.name, checkpoint=info, decoder=decoder or self.decoder(),
                               **{**settings, **options})
        adapter.sampler_choice = choice
        return adapter.to(device)

    def contract_case(self, ckpt: Optional[str] = None, model_config: Optional[dict] = None,
                      decoder: Optional[Any] = None):
        """The adapter contract's case (:mod:`condbench.contract`): ``ckpt`` at ``model_config`` (the official size by
        default), or, with no ``ckpt``, a tiny network with random weights saved to a temporary file and loaded as a
        release is. Three conditions, 3 sampler steps."""
        import tempfile

        import torch

        from ..contract import ContractCase, randomize_

        scratch = None
        if ckpt is None:
            scratch = tempfile.TemporaryDirectory(prefix="condbench-contract-")
            model_config = {**self.tiny_config, **(model_config or {})}
            ckpt = str(Path(scratch.name) / "tiny.pt")
            torch.save(randomize_(self.network(dict(model_config))).state_dict(), ckpt)
        adapter = self.load(ckpt=ckpt, model_config=model_config, decoder=decoder, **{self.steps_key: 3})
        conditions = self.contract_conditions() if self.contract_conditions else torch.tensor([0, 3, 7])
        if self.contract_output is not None:
            shape, value_range = self.contract_output
        else:
            _, height, width = adapter.latent_shape
            shape, value_range = (3, height * self.decoder_factor, width * self.decoder_factor), (0.0, 1.0)
        return ContractCase(adapter, conditions, shape, value_range, checkpoint=Path(ckpt),
                            c_in_linears=self.c_in_linears, scratch=scratch)

    @property
    def c_in_linears(self) -> bool:
        """Whether the network reads c through Linear layers (adaLN); U-ViT reads its two parts as tokens."""
        return self.adapter is not _uvit_adapter

    def plan(self, model_config: Optional[dict] = None, sampler: Optional[str] = None, **options: Any) -> Adapter:
        """The adapter with its network on the meta device and no weights: it answers what the sampler will do
        (steps, evaluations) without any file, for ``--dry-run``. Options that only locate files are ignored."""
        import torch

        choice, settings = self.sampler_options(sampler)
        for only_files in ("ckpt", "device", "embedders_only", "decoder"):
            options.pop(only_files, None)
        with torch.device("meta"):
            network = self.network(dict(model_config or {}))
        adapter = self.adapter(network, self.name, checkpoint={}, decoder=_no_decoder, **{**settings, **options})
        adapter.sampler_choice = choice
        return adapter


def _no_decoder(samples):
    raise RuntimeError("a planning adapter has no weights and decodes nothing")


CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")


def _sd_vae_decoder() -> Callable:
    """The default decoder of the ImageNet releases: SD's VAE (ft-EMA)."""
    from .vae import SDVAEDecoder

    return SDVAEDecoder()


def decoder_from_path(path: str | Path) -> Callable:
    """The model option ``decoder=PATH``: a file (``.pth``...) is a KL-f8 autoencoder state dict in the LDM layout,
    as U-ViT ships ``autoencoder_kl_ema.pth``; anything else a diffusers ``AutoencoderKL`` folder or hub id."""
    from .vae import SDVAEDecoder, UViTAutoencoderDecoder

    if Path(path).suffix in CHECKPOINT_SUFFIXES or Path(path).expanduser().is_file():
        return UViTAutoencoderDecoder(path)
    return SDVAEDecoder(str(path))


def _dit_network(input_size: int) -> Callable[[dict], nn.Module]:
    def build(overrides: dict) -> nn.Module:
        from .dit_model import DIT_SIZES, DiT, DiTConfig

        return DiT(DiTConfig(**{"input_size": input_size, **DIT_SIZES["XL"], **overrides}))

    return build


def _dit_adapter(network: nn.Module, name: str, **options: Any) -> Adapter:
    from .dit import DiTAdapter

    return DiTAdapter(network, name, **options)


def _mdt_network(overrides: dict) -> nn.Module:
    from .mdt_model import MDT, MDT_XL_2

    return MDT(dataclasses.replace(MDT_XL_2, **overrides))


def _mdt_adapter(network: nn.Module, name: str, **options: Any) -> Adapter:
    from .mdt import MDTAdapter

    return MDTAdapter(network, name, **options)


def _uvit_network(overrides: dict) -> nn.Module:
    from .uvit_model import UViT, UViTConfig

    return UViT(UViTConfig(**overrides))


def _uvit_adapter(network: nn.Module, name: str, **options: Any) -> Adapter:
    from .uvit import UViTAdapter

    return UViTAdapter(network, name, **options)


def _transport_adapter(network: nn.Module, name: str, *, spec: str, **options: Any) -> Adapter:
    """A transport adapter with the sampler spec named ``spec`` in ``sit`` (e.g. "SIT_SDE")."""
    from . import sit

    return sit.TransportAdapter(network, name, spec=getattr(sit, spec), **options)


def _lightningdit_network(overrides: dict) -> nn.Module:
    from .lightningdit_model import XL1_IMAGENET256, LightningDiT

    return LightningDiT(dataclasses.replace(XL1_IMAGENET256, **overrides))


class DecoderOnFirstUse:
    """A decoder whose files are resolved (cache, or a one-time download) only when it first decodes."""

    def __init__(self, make: Callable[[], Callable], description: dict):
        self.make, self.description, self._decoder = make, description, None

    def __call__(self, latents):
        if self._decoder is None:
            self._decoder = self.make()
        return self._decoder(latents)

    def describe(self) -> dict:
        return self.description


VAVAE = WeightSource("vavae-imagenet256-f16d32-dinov2.pt",
                     "https://huggingface.co/hustvl/vavae-imagenet256-f16d32-dinov2/resolve/main/"
                     "vavae-imagenet256-f16d32-dinov2.pt", hf_repo="hustvl/vavae-imagenet256-f16d32-dinov2")
VAVAE_LATENT_STATS = WeightSource("latents_stats.pt", "https://huggingface.co/hustvl/vavae-imagenet256-f16d32-dinov2/"
                                  "resolve/main/latents_stats.pt", hf_repo="hustvl/vavae-imagenet256-f16d32-dinov2")


VAVAE_FILES = ((VAVAE, "VA-VAE f16d32 decoder"), (VAVAE_LATENT_STATS, "VA-VAE latent statistics"))


def _vavae_file(source: WeightSource, what: str) -> Path:
    """One of VA-VAE's files: the cache, or a one-time download (no option takes it)."""
    setting = FileSetting(("CONDBENCH_CACHE",), "/path/to/cache", env=True, note=f"weights/{source.filename}")
    return resolve_weights(source, what=what, option=None, setting=setting)


def _check_vavae(decoder: Optional[Any], model: str) -> None:
    """The preflight's check of LightningDiT's default decoder (its files are read only when it first decodes):
    one error naming each missing file."""
    problems = []
    for source, what in VAVAE_FILES if decoder is None else ():
        try:
            _vavae_file(source, what)
        except CheckpointNotFoundError as error:
            problems.append(error)
    if problems:
        raise CheckpointNotFoundError("\n".join(str(p) for p in problems), sum((p.settings for p in problems), ()))


def _vavae_decoder() -> DecoderOnFirstUse:
    def make():
        from .vavae import VAVAEDecoder

        return VAVAEDecoder(*(_vavae_file(source, what) for source, what in VAVAE_FILES))

    return DecoderOnFirstUse(make, {"decoder": "VA-VAE f16d32", "checkpoint": VAVAE.filename,
                                    "latent_stats": VAVAE_LATENT_STATS.filename})


UVIT_AUTOENCODER = WeightSource(UVIT_AUTOENCODER_FILE, UVIT_AUTOENCODER_URL, direct=False)
UVIT_AUTOENCODER_WHAT = ("U-ViT's autoencoder (Google Drive only: download it by hand from the `stable-diffusion` "
                         "folder that U-ViT's README links)")


def _check_uvit_decoder(decoder: Optional[Any], model: str) -> None:
    """The preflight's check of U-ViT's decoder file (read only when it first decodes): the default's, or a
    ``decoder=PATH`` file (a diffusers folder or hub id is checked when it loads)."""
    setting = FileSetting(("model_options", model, "decoder"), placeholder_path(UVIT_AUTOENCODER_FILE))
    if decoder is None:
        resolve_weights(UVIT_AUTOENCODER, option=f"the model option decoder of {model}", what=UVIT_AUTOENCODER_WHAT,
                        setting=setting)
    elif Path(decoder).suffix in CHECKPOINT_SUFFIXES:
        require_file(decoder, UVIT_AUTOENCODER_WHAT, f"check the path given as the model option decoder of {model}",
                     setting)


def _uvit_decoder() -> DecoderOnFirstUse:
    """U-ViT's own autoencoder (SD's KL-f8 EMA, converted by its authors), as its ``eval_ldm_discrete.py`` decodes."""
    def make():
        path = resolve_weights(UVIT_AUTOENCODER, option="decoder", what=UVIT_AUTOENCODER_WHAT)
        from .vae import UViTAutoencoderDecoder

        return UViTAutoencoderDecoder(path)

    return DecoderOnFirstUse(make, {"decoder": "U-ViT autoencoder (SD KL-f8 EMA, LDM layout)",
                                    "checkpoint": UVIT_AUTOENCODER.filename, "source": UVIT_AUTOENCODER.url})


def _mdsgen_network(overrides: dict) -> nn.Module:
    from .mdsgen_model import MDSGEN_B_2, MDSGen

    if "latent_size" in overrides:
        overrides = {**overrides, "latent_size": tuple(overrides["latent_size"])}
    return MDSGen(dataclasses.replace(MDSGEN_B_2, **overrides))


def _mdsgen_adapter(network: nn.Module, name: str, **options: Any) -> Adapter:
    from .mdsgen import MDSGenAdapter

    return MDSGenAdapter(network, name, **options)


def _audioldm_decoder(source: Optional[str | Path] = None) -> Callable:
    """AudioLDM-s-full-v2's VAE and vocoder (hub id, or a local folder with vae/ and vocoder/), loaded on first use."""
    from ..metrics.weight_files import AUDIOLDM_REPO
    from .audioldm import AudioLDMDecoder

    return AudioLDMDecoder(source or AUDIOLDM_REPO)


def _cavp_features() -> torch.Tensor:
    """Three clips' CAVP features (3, 32, 512), random: MDSGen's condition."""
    import torch

    return torch.randn(3, 32, 512, generator=torch.Generator().manual_seed(0))


def _xmdpt_pair_conditions():
    """Three pairs' X-MDPT conditions, random, at the tiny contract size (:data:`TINY_XMDPT`), sliceable like the
    pose task's: DINOv2 pose (3, 5, 16) and source (3, 5, 24) tokens and the source latent (3, 4, 8, 8)."""
    import torch

    from ..tasks.pose import PairBatch, PairConditions

    generator = torch.Generator().manual_seed(0)
    tensors = {"pose_features": torch.randn(3, 5, 16, generator=generator),
               "source_features": torch.randn(3, 5, 24, generator=generator),
               "source_latent": torch.randn(3, 4, 8, 8, generator=generator)}
    return PairConditions(lambda rows: PairBatch({k: v[rows.start:rows.stop] for k, v in tensors.items()}, rows), 3)


def _audioldm_available(source: Optional[str | Path], model: str) -> None:
    from ..metrics.weight_files import AUDIOLDM_REPO, require_audioldm

    try:
        require_audioldm(source or AUDIOLDM_REPO)
    except CheckpointNotFoundError as error:
        raise CheckpointNotFoundError(str(error), (FileSetting(("model_options", model, "decoder"), placeholder_path(
            AUDIOLDM_REPO), note="a folder holding vae/ and vocoder/"),)) from None


def _sit_network(**fixed: Any) -> Callable[[dict], nn.Module]:
    def build(overrides: dict) -> nn.Module:
        from .dit_model import DIT_SIZES, DiT, DiTConfig

        return DiT(DiTConfig(**{"input_size": 32, **DIT_SIZES["XL"], **fixed, **overrides}))

    return build


def _xmdpt_network(size: str) -> Callable[[dict], nn.Module]:
    def build(overrides: dict) -> nn.Module:
        from .xmdpt_model import XMDPT, xmdpt_config

        return XMDPT(xmdpt_config(size, **overrides))

    return build


def _xmdpt_adapter(network: nn.Module, name: str, **options: Any) -> Adapter:
    from .xmdpt import XMDPTAdapter

    return XMDPTAdapter(network, name, **options)


def _xmdpt_vae(folder: Optional[str] = None) -> Callable:
    from .xmdpt import XMDPTVAE

    return XMDPTVAE(folder)


def _check_xmdpt_vae(decoder: Optional[str], model: str) -> None:
    """The preflight's check of a VAE folder given as the model option decoder (read only when it first decodes);
    without one the model decodes with the pose task's VAE folder (task option vae), which the task checks."""
    from ..metrics.weight_files import xmdpt_vae_folder

    if decoder is None:
        return
    xmdpt_vae_folder(decoder, option=f"the model option decoder of {model}", keys=("model_options", model, "decoder"))


# X-MDPT's released sizes and their Google Drive file ids (README table)
XMDPT_RELEASED = {"S": "1loztAzrL6sQI7rarwb_x2233ZwNTVlvD", "B": "1nNPWGhvRZVwjBMfgilbgZNdcn1I1DUgH",
                  "L": "1No_WJBD25HVmYLaKirrI_7k04RpOkNos"}
SIZE_KEYS = ("hidden_size", "depth")  # the model_config keys that change which X-MDPT file fits


def xmdpt_model_name(size: str) -> str:
    """The registry name of the X-MDPT release of ``size`` ("S" -> "xmdpt-s-2")."""
    return f"xmdpt-{size.lower()}-2"


def xmdpt_file_size(path: Path) -> Optional[tuple[int, int]]:
    """(hidden size, blocks) of the X-MDPT weights in ``path``; None when the file holds no X-MDPT (the strict load
    then names what is missing)."""
    from ..checkpoints import load_state_dict

    state = load_state_dict(path)
    if "t_embedder.mlp.0.weight" not in state:
        return None
    return state["t_embedder.mlp.0.weight"].shape[0], len({k.split(".")[1] for k in state if k.startswith("blocks.")})


def _xmdpt_size_advice(size: str, resized: bool, found: Optional[str], hidden: int, depth: int) -> str:
    """How to load a file of (hidden, depth), of the official size ``found`` if any, that ``xmdpt-{size}-2`` does
    not fit (``resized``: at sizes set by model_config)."""
    wanted = ("a file of that size" if resized else
              f"the X-MDPT-{size}/2 file (each size's ema_0.9999_300000.pt has the same name; the official folders "
              f"are logs/XMDPT_{{S,B,L}}_2/)")
    if found in XMDPT_RELEASED:
        other = f"run this file as {xmdpt_model_name(found)}" + (" without those model_config sizes" if resized else "")
    else:
        other = (f"run it with the model option model_config set to its size (hidden_size: {hidden}, depth: {depth}, "
                 f"num_heads dividing {hidden})")
    return f"pass {wanted}, or {other}"


def check_xmdpt_size(path: Path, size: str, overrides: dict) -> None:
    """Refuse a file of another X-MDPT size than ``xmdpt-{size}-2`` at ``overrides`` (model_config) builds, with an
    error naming both sizes and the fix (before a strict load would list hundreds of mis-shaped keys)."""
    from .xmdpt_model import xmdpt_config

    held = xmdpt_file_size(path)
    expected = xmdpt_config(size, **overrides)
    if held is None or held == (expected.hidden_size, expected.depth):
        return
    hidden, depth = held
    found = next((name for name, cfg in XMDPT_SIZES.items() if (cfg["hidden_size"], cfg["depth"]) == held), None)
    holds = f"X-MDPT-{found}/2 weights" if found else "X-MDPT weights of no official size"
    sizes = ", ".join(f"{key}={overrides[key]}" for key in SIZE_KEYS if key in overrides)
    model = xmdpt_model_name(size) + (f" with model_config {sizes}" if sizes else "")
    raise CheckpointMismatchError(
        f"{path} holds {holds} (hidden size {hidden}, {depth} blocks), but {model} needs hidden size "
        f"{expected.hidden_size} and {expected.depth} blocks: "
        f"{_xmdpt_size_advice(size, bool(sizes), found, hidden, depth)}.")


def _xmdpt_size_check(size: str) -> Callable[[Path, dict], None]:
    def check(path: Path, overrides: dict) -> None:
        check_xmdpt_size(path, size, overrides)

    return check


def _xmdpt_release(size: str) -> ReleasedModel:
    """X-MDPT-{size}/2 from ``ema_0.9999_300000.pt`` (the same name for every size: cached under the official
    ``XMDPT_{size}_2/`` folder)."""
    return ReleasedModel(
        xmdpt_model_name(size), _xmdpt_network(size), _xmdpt_adapter,
        WeightSource(f"XMDPT_{size}_2/ema_0.9999_300000.pt",
                     f"https://drive.google.com/file/d/{XMDPT_RELEASED[size]}/view", direct=False),
        XMDPT_SIZES[size]["hidden_size"], "DDIM 50 respaced steps (eta 0), CFG 2.0 power-cosine (pow 0.01) on all channels",
        dict(num_steps=50, cfg_scale=2.0, scale_pow=0.01), embedder_prefixes=XMDPT_EMBEDDER_PREFIXES,
        decoder=_xmdpt_vae, task="pose", decoder_at=_xmdpt_vae, check_decoder=_check_xmdpt_vae,
        check_file=_xmdpt_size_check(size), samplers={"ddim": {}}, tiny_config=TINY_XMDPT,
        contract_conditions=_xmdpt_pair_conditions, contract_output=((3, 64, 64), (0.0, 1.0)))


TINY_DIT = dict(depth=2, hidden_size=32, num_heads=4, input_size=8, num_classes=10)
TINY_MDT = dict(depth=6, decode_layer=2, hidden_size=16, num_heads=4, input_size=8, num_classes=10)
TINY_LIGHTNINGDIT = dict(input_size=4, patch_size=1, hidden_size=32, depth=2, num_heads=4, mlp_ratio=2.0, num_classes=10)
TINY_MDSGEN = dict(hidden_size=32, depth=3, num_heads=2, decode_layer=1)
TINY_XMDPT = dict(input_size=8, hidden_size=32, depth=3, num_heads=4, decode_layer=1, pose_dim=16, source_dim=24,
                  feature_tokens=5)
TINY_UVIT = dict(img_size=8, embed_dim=32, depth=4, num_heads=4, mlp_ratio=2, num_classes=11)
DIT_SAMPLER = "DDPM 250 respaced steps, learned sigma, CFG 1.5 on ch[:3]"
MG_PARTS = tuple(f"https://github.com/tzco/diffusion-wo-cfg/releases/download/1.0/SiT-XL-2-MG-{p}" for p in "abcdef")

RELEASES: list[ReleasedModel] = [
    # DiT-XL/2 (facebookresearch/DiT): a raw state dict; a training checkpoint ({model, ema, opt, args}) loads its
    # 'ema', as DiT's find_model does
    ReleasedModel("dit-xl-2", _dit_network(32), _dit_adapter,
                  WeightSource("DiT-XL-2-256x256.pt", "https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-256x256.pt"),
                  1152, DIT_SAMPLER, dict(num_steps=250, cfg_scale=1.5, cfg_channels=3), state_keys=("ema",),
                  samplers={"ddpm": {}}, tiny_config=TINY_DIT),
    ReleasedModel("dit-xl-2-512", _dit_network(64), _dit_adapter,
                  WeightSource("DiT-XL-2-512x512.pt", "https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-512x512.pt"),
                  1152, DIT_SAMPLER, dict(num_steps=250, cfg_scale=1.5, cfg_channels=3), state_keys=("ema",),
                  samplers={"ddpm": {}}, tiny_config=TINY_DIT),
    # MDTv2 (sail-sg/MDT): raw state dict (its side block and mask token, for masked training only, are left out)
    ReleasedModel("mdt-xl-2", _mdt_network, _mdt_adapter,
                  WeightSource("mdt_xl2_v2_ckpt.pt", "https://huggingface.co/shgao/MDT-XL2/resolve/main/mdt_xl2_v2_ckpt.pt",
                               hf_repo="shgao/MDT-XL2"),
                  1152, "DDPM 250 respaced steps, learned sigma, CFG 3.8 power-cosine (pow 4) on ch[:3]",
                  dict(num_steps=250, cfg_scale=3.8, scale_pow=4.0, cfg_channels=3), samplers={"ddpm": {}},
                  tiny_config=TINY_MDT),
    # SiT-XL/2 (willisma/SiT): DiT's network; velocity = the first 4 output channels; SDE sampler of the paper's FID
    # by default, SiT's ODE samplers on request; a training checkpoint loads its 'ema' like SiT's find_model
    ReleasedModel("sit-xl-2", _sit_network(), _transport_adapter,
                  WeightSource("SiT-XL-2-256x256.pt", "https://www.dl.dropboxusercontent.com/scl/fi/as9oeomcbub47de5g4be0/"
                               "SiT-XL-2-256.pt?rlkey=uxzxmpicu46coq3msb17b9ofa&dl=0"),
                  1152, "Euler-Maruyama SDE 250 steps (mean last step 0.04), CFG 1.5 on ch[:3]",
                  dict(num_steps=250, cfg_scale=1.5), state_keys=("ema",),
                  samplers={"sde": {"spec": "SIT_SDE"}, "ode": {"spec": "SIT_ODE"},
                            "ode-euler": {"spec": "SIT_ODE_EULER"}}, tiny_config=TINY_DIT),
    # REPA SiT-XL/2 (sihyun-yu/REPA): 4 output channels; the projector head serves training only; a training
    # checkpoint ({model, ema, opt, args, steps}) loads its 'ema'
    ReleasedModel("repa-sit-xl-2", _sit_network(learn_sigma=False), _transport_adapter,
                  WeightSource("last.pt", "https://www.dl.dropboxusercontent.com/scl/fi/cxedbs4da5ugjq5wg3zrg/last.pt"
                               "?rlkey=8otgrdkno0nd89po3dpwngwcc&st=apcc645o&dl=0"),
                  1152, "Euler-Maruyama SDE 250 steps to t=0.04 + mean step, CFG 1.8 for t <= 0.7",
                  dict(num_steps=250, cfg_scale=1.8), state_keys=("ema",),
                  ignore_prefixes=("projectors.",), samplers={"sde": {"spec": "REPA_SDE"}}, tiny_config=TINY_DIT),
    # MG (tzco/diffusion-wo-cfg): guidance trained in, no CFG at sampling; released in six parts; a training
    # checkpoint ({'ema', 'model', ...}) of which the EMA weights are used
    ReleasedModel("mg-sit-xl-2", _sit_network(learn_sigma=False), _transport_adapter,
                  WeightSource("SiT-XL-2-MG.pt", "https://github.com/tzco/diffusion-wo-cfg/releases/tag/1.0", parts=MG_PARTS),
                  1152, "Euler-Maruyama SDE 250 steps to t=0.04 + mean step, no CFG", dict(num_steps=250, cfg_scale=1.0),
                  state_keys=("ema", "model"), samplers={"sde": {"spec": "MG_SDE"}}, tiny_config=TINY_DIT),
    # LightningDiT-XL/1 (hustvl/LightningDiT), 800 epochs: a training checkpoint whose 'ema' is used
    ReleasedModel("lightningdit-xl-1", _lightningdit_network, _transport_adapter,
                  WeightSource("lightningdit-xl-imagenet256-800ep.pt", "https://huggingface.co/hustvl/"
                               "lightningdit-xl-imagenet256-800ep/resolve/main/lightningdit-xl-imagenet256-800ep.pt",
                               hf_repo="hustvl/lightningdit-xl-imagenet256-800ep"),
                  1152, "Euler ODE 250 points, shift 0.3, CFG 6.7 on ch[:3] for t >= 0.125",
                  dict(num_steps=250, cfg_scale=6.7),
                  state_keys=("ema",), decoder=_vavae_decoder, check_decoder=_check_vavae,
                  samplers={"ode": {"spec": "LIGHTNINGDIT_ODE"}},
                  tiny_config=TINY_LIGHTNINGDIT, decoder_factor=16),
    # U-ViT-H/2 (baofff/U-ViT): no AdaLN; c = label token + time token (the study's "y+t"). The authors publish
    # the file on Google Drive only. Images are decoded as U-ViT's evaluation does, with its own converted SD KL-f8
    # EMA autoencoder (autoencoder_kl_ema.pth, also Google Drive only); decoder=PATH takes another: a .pth file
    # in that layout, or a diffusers AutoencoderKL folder (e.g. sd-vae-ft-ema, which is not U-ViT's decoder).
    ReleasedModel("uvit-h-2", _uvit_network, _uvit_adapter,
                  WeightSource("imagenet256_uvit_huge.pth",
                               "https://drive.google.com/file/d/13StUdrjaaSXjfqqF7M47BzPyhMAArQ4u/view", direct=False),
                  1152, "DPM-Solver-fast (singlestep, order 3) 50 evaluations, CFG 1.4 on all channels",
                  dict(num_steps=50, cfg_scale=1.4), embedder_prefixes=("label_emb.",), decoder=_uvit_decoder,
                  check_decoder=_check_uvit_decoder,
                  samplers={"dpm-solver-fast": {}}, tiny_config=TINY_UVIT),
    # X-MDPT (trungpx/xmdpt), pose-guided person images on DeepFashion: the authors publish each size's file
    # on Google Drive only (README table); decoded with their fine-tuned VAE folder (decoder=PATH)
    *(_xmdpt_release(size) for size in XMDPT_RELEASED),
    # MDSGen-B/2 (triton99/MDSGen): video-to-audio on CAVP features; a raw state dict (its side block and mask
    # token, for masked training only, are left out); published on Google Drive only. Decoded with
    # AudioLDM-s-full-v2's VAE and HiFi-GAN (decoder=PATH takes a local copy of that repository).
    ReleasedModel("mdsgen-b-2", _mdsgen_network, _mdsgen_adapter,
                  WeightSource("mdsgen_audioldm.pt",
                               "https://drive.google.com/file/d/1XZoK-uU0mTWeRLilLZ_FtysRgearBxOp/view", direct=False),
                  768, "DPM-Solver++ 2M (multistep) 50 steps, power-cosine CFG 5 (pow 0.01), two forwards",
                  dict(num_steps=50, cfg_scale=5.0, scale_pow=0.01), embedder_prefixes=MDSGEN_EMBEDDER_PREFIXES,
                  decoder=_audioldm_decoder, task="audio", decoder_at=_audioldm_decoder, samplers={"dpm-solver++": {}},
                  check_decoder=_audioldm_available, tiny_config=TINY_MDSGEN, contract_conditions=_cavp_features,
                  contract_output=((130592,), None)),
]
