"""Stable Diffusion 3 / 3.5 through diffusers: c is ``temb``, the policy acts in a forward hook on it.

In diffusers' ``SD3Transformer2DModel.forward``, ``temb = time_text_embed(timestep, pooled_projections)``
(``CombinedTimestepTextProjEmbeddings``: the timestep embedding plus the projection of the pooled CLIP-L +
CLIP-G text embedding, a plain sum) feeds, after a SiLU, every block's ``norm1``/``norm1_context`` and
``norm_out``. So c = temb, its parts are ``timestep_embedder(time_proj(t))`` and ``text_embedder(pooled)``,
and a policy rewrites c through ``time_text_embed.register_forward_hook`` (the hook's return value replaces
temb). Guidance runs both branches in one transformer call ``[negative; positive]`` (diffusers' order: the
unconditional rows come FIRST), and the hook is told which rows are which.

The default sampler is the pipeline's own (``StableDiffusion3Pipeline.__call__``: flow-match Euler, the model
card's steps and guidance, the negative prompt "" encoded, not zeros). condbench runs it in its own loop on
diffusers' transformer and ``FlowMatchEulerDiscreteScheduler.step``, in the pipeline's order of operations and
dtypes; ``tests/test_sd3.py`` proves the samples bit-identical to ``StableDiffusion3Pipeline(...)`` on tiny
random components. The own loop is what lets a late-acting policy continue from the baseline's state at
step k (``start``/``keep_states``): flow-match Euler draws no noise after the first latents.

Every network runs in the one dtype the record names (the release's, or the model option ``dtype``): diffusers
without accelerate loads SD3's transformer in float32 whatever ``torch_dtype`` asks, so the loader checks each
network after loading and casts it (:func:`in_dtype`).

Prompt embeddings (CLIP-L, CLIP-G, T5-XXL) do not depend on the policy: each prompt is encoded once, alone
(so its embedding never depends on the batch it came in), and cached on disk (:class:`CachedPromptEncoder`).
"""
from __future__ import annotations

import copy
import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Sequence

import numpy as np
import torch

from ..cache import ShardCache, cache_key, content_problem
from ..checkpoints import file_sha256
from ..hub import cache_root
from ..storage import atomic_write
from ..stored_arrays import dtype_named, exact_numpy
from ..policies import BRANCH_COND, BRANCH_UNCOND, Policy
from ..seeding import PairedNoise
from .base import Adapter, EmbeddingParts, PolicyHook, ProgressCallback, SampleOutput, SamplerState
from .sd3_releases import SD3_RELEASES, T5_PARTS, TEXT_ENCODER_PARTS, SD3Release, resolve_pipeline_folder  # noqa: F401


def folder_fingerprint(folder: Path, parts: Sequence[str]) -> dict[str, str]:
    """sha256 of every file under ``parts`` of a diffusers folder, one digest per part.

    Weight files are hashed once: digests are remembered in the cache by (path, size, mtime).
    """
    memo_path = cache_root() / "file_hashes.json"
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
        if not isinstance(memo, dict):
            raise ValueError("not a mapping")
    except (OSError, ValueError):  # absent or damaged: only a memo, so every file is hashed again
        memo = {}
    out, changed = {}, False
    for part in parts:
        digest = hashlib.sha256()
        root = folder / part
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for f in files:
            real = f.resolve()  # hub snapshots are symlinks to blobs
            stat = real.stat()
            memo_key = f"{real}|{stat.st_size}|{stat.st_mtime_ns}"
            if memo_key not in memo:
                memo[memo_key], changed = file_sha256(real), True
            digest.update(f"{f.relative_to(folder)}:{memo[memo_key]}\n".encode())
        out[part] = digest.hexdigest()
    if changed:
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(memo_path, json.dumps(memo))
    return out


# --------------------------------------------------------------------------------------------- dtypes


def _kept_in_float32(network: torch.nn.Module, name: str) -> bool:
    """Whether parameter ``name`` lies in a module the network's class keeps in float32 (transformers' T5 ``wo``
    under float16), matched as transformers matches it: a module name among the name's dotted parts."""
    return any(module in name.split(".") for module in getattr(network, "_keep_in_fp32_modules", None) or ())


def parameter_dtypes(network: torch.nn.Module) -> set[torch.dtype]:
    """The dtypes of a network's floating parameters, leaving out those its class keeps in float32."""
    return {p.dtype for name, p in network.named_parameters()
            if p.is_floating_point() and not (_kept_in_float32(network, name) and p.dtype == torch.float32)}


def dtype_name(network: torch.nn.Module) -> str:
    """A network's dtype as records write it ("torch.bfloat16"; "torch.bfloat16+torch.float32" when mixed)."""
    return "+".join(sorted(str(d) for d in parameter_dtypes(network)))


def in_dtype(network: torch.nn.Module, dtype: torch.dtype, name: str) -> torch.nn.Module:
    """``network`` (cast in place) with its floating parameters in ``dtype``, whatever its loader did: diffusers
    without accelerate leaves SD3's transformer in float32 whatever ``torch_dtype`` asks, while the VAE and text
    encoders take it, so the run would use a dtype other than the one it records. A network whose class keeps
    some modules in float32 is not cast (that would undo them): it is refused, naming the remedy."""
    if parameter_dtypes(network) == {dtype}:
        return network
    if getattr(network, "_keep_in_fp32_modules", None):
        raise ValueError(f"{name} loaded in {dtype_name(network)}, not {dtype}, and it keeps some modules in float32, "
                         "so condbench does not cast it: install accelerate (pip install accelerate) and run again")
    return network.to(dtype)


def load_network(model_class: Any, folder: Path, subfolder: str, dtype: torch.dtype) -> torch.nn.Module:
    """A diffusers network from ``folder/subfolder``, in ``dtype`` (see :func:`in_dtype`)."""
    network = model_class.from_pretrained(folder, subfolder=subfolder, torch_dtype=dtype)
    return in_dtype(network, dtype, f"{subfolder} of {folder}")


def text_encoders_in_dtype(pipeline: Any, dtype: torch.dtype) -> None:
    """Every text encoder a diffusers pipeline loaded, in ``dtype`` (see :func:`in_dtype`)."""
    for name in ("text_encoder", "text_encoder_2", "text_encoder_3"):
        if getattr(pipeline, name, None) is not None:
            in_dtype(getattr(pipeline, name), dtype, name)


# --------------------------------------------------------------------------------------- prompt encoding


class PromptEncoder(Protocol):
    """Prompts -> (prompt_embeds (N, L, C), pooled_prompt_embeds (N, P)), as the pipeline's ``encode_prompt``."""

    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]: ...

    def identity(self) -> dict: ...


class PromptEmbeddingTable:
    """Embeddings given in advance, one (embeds (L, C), pooled (P,)) per prompt (precomputed elsewhere, or in tests
    where no text encoder exists); a prompt not in the table is an error that names it."""

    def __init__(self, table: dict[str, tuple[torch.Tensor, torch.Tensor]], name: str = "table"):
        self.table, self.name = table, name

    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        missing = [p for p in prompts if p not in self.table]
        if missing:
            raise KeyError(f"no precomputed embedding for {len(missing)} prompt(s), e.g. {missing[0]!r}")
        return (torch.stack([self.table[p][0] for p in prompts]), torch.stack([self.table[p][1] for p in prompts]))

    def identity(self) -> dict:
        digest = hashlib.sha256()
        for prompt in sorted(self.table):
            embeds, pooled = self.table[prompt]
            digest.update(prompt.encode())
            digest.update(embeds.detach().float().cpu().numpy().tobytes())
            digest.update(pooled.detach().float().cpu().numpy().tobytes())
        return {"encoder": self.name, "sha256": digest.hexdigest()}


class PipelinePromptEncoder:
    """The pipeline's own ``encode_prompt`` on the folder's CLIP-L, CLIP-G and (``t5``) T5-XXL, loaded on first use.

    Without T5 the pipeline puts zeros in place of the T5 tokens (``text_encoder_3=None``, as SD3 allows).
    """

    def __init__(self, folder: Path, transformer: torch.nn.Module, dtype: torch.dtype, t5: bool = True,
                 max_sequence_length: int = 256):
        self.folder, self.transformer, self.dtype = folder, transformer, dtype
        self.t5, self.max_sequence_length = t5, max_sequence_length
        self._pipeline = None

    def pipeline(self):
        if self._pipeline is None:
            from diffusers import StableDiffusion3Pipeline

            no_t5 = {} if self.t5 else {"text_encoder_3": None, "tokenizer_3": None}
            # the adapter's transformer object is shared (no second copy): without T5 the pipeline reads its config
            self._pipeline = StableDiffusion3Pipeline.from_pretrained(
                self.folder, transformer=self.transformer, vae=None, torch_dtype=self.dtype, **no_t5)
            text_encoders_in_dtype(self._pipeline, self.dtype)  # the identity's dtype is then theirs
            device = next(self.transformer.parameters()).device
            for module in (self._pipeline.text_encoder, self._pipeline.text_encoder_2, self._pipeline.text_encoder_3):
                if module is not None:
                    module.to(device)
        return self._pipeline

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        pipe = self.pipeline()
        device = next(self.transformer.parameters()).device
        embeds, pooled = [], []
        for prompt in prompts:  # one at a time: a prompt's embedding never depends on its batch
            e, _, p, _ = pipe.encode_prompt(prompt=[prompt], prompt_2=None, prompt_3=None, device=device,
                                            do_classifier_free_guidance=False,
                                            max_sequence_length=self.max_sequence_length)
            embeds.append(e[0])
            pooled.append(p[0])
        return torch.stack(embeds), torch.stack(pooled)

    def identity(self) -> dict:
        parts = TEXT_ENCODER_PARTS + (T5_PARTS if self.t5 else ())
        return {"encoder": "StableDiffusion3Pipeline.encode_prompt", "folder_files": folder_fingerprint(self.folder, parts),
                "t5": self.t5, "max_sequence_length": self.max_sequence_length, "dtype": str(self.dtype),
                "device": next(self.transformer.parameters()).device.type, "clip_skip": None}


EMBEDDING_NAMES = ("prompt_embeds", "pooled_prompt_embeds")  # what a cached prompt's file holds


def _embedding_problem(arrays: dict[str, np.ndarray]) -> Optional[str]:
    """What is wrong with a cached prompt's arrays, or None: each embedding present, finite, with its dtype's name."""
    for name in EMBEDDING_NAMES:
        if name not in arrays or dtype_named(str(arrays.get(f"{name}_dtype", ""))) is None:
            return f"it holds no {name!r} with the name of its dtype"
    return content_problem(arrays, {}, finite=EMBEDDING_NAMES)


class CachedPromptEncoder:
    """Any encoder, with each prompt's embeddings kept on disk under a key of the encoder's identity and the prompt,
    in the shard cache (:mod:`condbench.cache`: checksum, finite values, a damaged file moved aside and encoded
    again). Embeddings are stored with their dtype's name (bfloat16 as float32, which holds it exactly)."""

    def __init__(self, inner: PromptEncoder, root: Optional[str | Path] = None):
        self.inner = inner
        self.root = Path(root) if root is not None else cache_root() / "sd3_prompt_embeddings"
        self._identity: Optional[dict] = None
        self.encoded = 0  # prompts the inner encoder computed (the rest came from disk)

    def identity(self) -> dict:
        if self._identity is None:
            self._identity = self.inner.identity()
        return self._identity

    @cached_property
    def cache(self) -> ShardCache:
        return ShardCache(self.root)

    def _key(self, prompt: str) -> str:
        return cache_key(kind="SD3 prompt embeddings", encoder=self.identity(), prompt=prompt)

    def _encode_one(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """One prompt's (embeds (L, C), pooled (P,)): from the cache, else encoded alone and stored."""
        key = self._key(prompt)
        found = self.cache.get(key, _embedding_problem)
        if found is not None:
            return tuple(torch.from_numpy(found[name]).to(dtype_named(str(found[f"{name}_dtype"])))
                         for name in EMBEDDING_NAMES)
        embeds, pooled = self.inner.encode([prompt])
        self.encoded += 1
        pair = (embeds[0].cpu(), pooled[0].cpu())
        arrays = {}
        for name, tensor in zip(EMBEDDING_NAMES, pair):
            arrays[name] = exact_numpy(tensor)
            arrays[f"{name}_dtype"] = np.array(str(tensor.dtype))
        self.cache.put(key, arrays)
        return pair

    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        found = {prompt: self._encode_one(prompt) for prompt in dict.fromkeys(prompts)}
        return torch.stack([found[p][0] for p in prompts]), torch.stack([found[p][1] for p in prompts])


# ------------------------------------------------------------------------------------------------ adapter


class SD3Adapter(Adapter):
    """An SD3-family pipeline seen through temb; ``cond`` is a list of N prompts."""

    condition_kind = "text"
    family = "sd3"

    def __init__(self, transformer: torch.nn.Module, vae: torch.nn.Module, scheduler, encoder: PromptEncoder,
                 name: str = "sd3", *, num_steps: int = 28, cfg_scale: float = 7.0, height: Optional[int] = None,
                 width: Optional[int] = None, negative_prompt: str = "", checkpoint: Optional[dict] = None,
                 microbatch: Optional[int] = None):
        if microbatch is not None:
            raise ValueError(f"{name}: microbatch is not supported by the SD3 adapters (whole batches are evaluated)")
        if scheduler.config.get("stochastic_sampling", False):
            raise ValueError(f"{name}: the scheduler samples stochastically; condbench's paired noise covers only the "
                             "initial latents of the deterministic flow-match Euler sampler")
        from diffusers.image_processor import VaeImageProcessor

        self.transformer = transformer.eval()
        self.vae = vae.eval()
        self.scheduler = copy.deepcopy(scheduler)  # stateful (step index): this adapter's own copy
        self.encoder = encoder
        self.name = name
        self.num_steps = num_steps
        self.cfg_scale = cfg_scale
        self.negative_prompt = negative_prompt
        self.checkpoint = checkpoint or {}
        self._condition_mean: Optional[torch.Tensor] = None  # (1, D) float32, from set_condition_mean
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)  # as the pipeline computes it
        # the pipeline's default height/width (subclasses for other pipelines, e.g. FLUX, whose config has none: 128)
        default = transformer.config.get("sample_size", 128) * self.vae_scale_factor
        self.height, self.width = height or default, width or default
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)
        self.denoiser_evaluations = 0
        self._step_hook: Optional[Callable] = None
        transformer.time_text_embed.register_forward_hook(self._rewrite_temb)

    # --- c and the hook

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.transformer.parameters()).dtype

    @property
    def embed_dim(self) -> int:
        return self.transformer.config.num_attention_heads * self.transformer.config.attention_head_dim

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the initial latents, as the pipeline's ``prepare_latents`` shapes them."""
        return (self.transformer.config.in_channels, self.height // self.vae_scale_factor,
                self.width // self.vae_scale_factor)

    @staticmethod
    def _parts(module: torch.nn.Module, timestep: torch.Tensor, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two summands of ``CombinedTimestepTextProjEmbeddings.forward``: (N, D) each, as it computes them."""
        t_part = module.timestep_embedder(module.time_proj(timestep).to(dtype=pooled.dtype))
        return t_part, module.text_embedder(pooled)

    def _rewrite_temb(self, module: torch.nn.Module, inputs: tuple, temb: torch.Tensor) -> Optional[torch.Tensor]:
        """Forward hook on ``time_text_embed``: the current step's policy rewrites temb (N, D); None keeps it."""
        if self._step_hook is None:
            return None
        timestep, pooled = inputs
        t_part, cond_part = self._parts(module, timestep, pooled)
        return self._step_hook(temb, t_part, cond_part)

    def _transformer(self, latents: torch.Tensor, timestep: torch.Tensor, embeds: torch.Tensor, pooled: torch.Tensor,
                     hook: Optional[Callable]) -> torch.Tensor:
        """One transformer call as the pipeline makes it, with ``hook`` (c, t_part, cond_part) -> c active."""
        self._step_hook = hook
        try:
            return self.transformer(hidden_states=latents, timestep=timestep, encoder_hidden_states=embeds,
                                    pooled_projections=pooled, joint_attention_kwargs=None, return_dict=False)[0]
        finally:
            self._step_hook = None

    def _encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        embeds, pooled = self.encoder.encode(list(prompts))
        return embeds.to(self.device, self.dtype), pooled.to(self.device, self.dtype)

    def _batch_t(self, t: torch.Tensor | float, n: int) -> torch.Tensor:
        t = torch.as_tensor(t, device=self.device, dtype=torch.float32)
        return t.expand(n) if t.dim() == 0 else t

    @torch.no_grad()
    def embed_parts(self, cond: Sequence[str], t: torch.Tensor | float) -> EmbeddingParts:
        _, pooled = self._encode(cond)
        t_part, cond_part = self._parts(self.transformer.time_text_embed, self._batch_t(t, len(pooled)), pooled)
        return EmbeddingParts(c=t_part + cond_part, t=t_part, cond=cond_part)

    @torch.no_grad()
    def denoise(self, x: torch.Tensor, t: torch.Tensor, cond: Sequence[str], hook=None) -> torch.Tensor:
        embeds, pooled = self._encode(cond)
        return self._transformer(x.to(self.device, self.dtype), self._batch_t(t, len(x)), embeds, pooled, hook)

    @torch.no_grad()
    def set_condition_mean(self, prompts: Sequence[str]) -> None:
        """Use the mean text part of c over ``prompts`` (the task's prompts) for ``mask=fixed`` policies.

        c = timestep part + text part (a plain sum), so the mean c at any t is the timestep part plus this mean;
        the text part is not linear in the prompt, so the mean is over the embedded prompts themselves.
        """
        _, pooled = self._encode(prompts)  # (P, pooled_dim)
        text_part = self.transformer.time_text_embed.text_embedder(pooled)  # (P, D)
        self._condition_mean = text_part.float().mean(0, keepdim=True)  # (1, D)

    @torch.no_grad()
    def mean_embedding(self, t: torch.Tensor) -> torch.Tensor:
        """The timestep part of c at t + the mean text part over the task's prompts: (1, D), in the model's dtype."""
        if self._condition_mean is None:
            raise ValueError(f"{self.name}: mask=fixed needs the mean c over the task's prompts; the task must call "
                             "set_condition_mean(prompts) with its prompts first (the runner does)")
        return (self.timestep_embedding(t).float() + self._condition_mean.to(self.device)).to(self.dtype)

    @torch.no_grad()
    def timestep_embedding(self, t: torch.Tensor) -> torch.Tensor:
        """The timestep part of temb at t (1, D), as ``time_text_embed`` computes it."""
        module = self.transformer.time_text_embed
        return module.timestep_embedder(module.time_proj(self._batch_t(t, 1)[:1]).to(dtype=self.dtype))

    # --- the sampler

    @property
    def guided(self) -> bool:
        return self.cfg_scale > 1  # the pipeline's do_classifier_free_guidance

    @property
    def sampler_steps(self) -> int:
        return self.num_steps

    def evaluations_per_step(self) -> int:
        return 2 if self.guided else 1

    def _set_timesteps(self) -> torch.Tensor:
        """``scheduler.set_timesteps`` as the pipeline's ``retrieve_timesteps`` calls it -> timesteps (S,)."""
        kwargs = {}
        if self.scheduler.config.get("use_dynamic_shifting", None):
            from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import calculate_shift

            _, h, w = self.latent_shape
            patch = self.transformer.config.patch_size
            config = self.scheduler.config
            kwargs["mu"] = calculate_shift((h // patch) * (w // patch), config.get("base_image_seq_len", 256),
                                           config.get("max_image_seq_len", 4096), config.get("base_shift", 0.5),
                                           config.get("max_shift", 1.16))
        self.scheduler.set_timesteps(self.num_steps, device=self.device, **kwargs)
        return self.scheduler.timesteps

    def sampler_timesteps(self) -> torch.Tensor:
        return self._set_timesteps().cpu()

    @torch.no_grad()
    def sample(self, cond: Sequence[str], noise: PairedNoise, policy: Optional[Policy] = None,
               progress: Optional[ProgressCallback] = None, *, start: Optional[SamplerState] = None,
               keep_states: Sequence[int] = ()) -> SampleOutput:
        prompts = list(cond)
        n = len(prompts)
        if len(noise) != n:
            raise ValueError(f"{n} prompts but noise for {n and len(noise)} samples")
        embeds, pooled = self._encode(prompts)
        if self.guided:  # [negative; positive], as the pipeline concatenates them
            neg_embeds, neg_pooled = self._encode([self.negative_prompt] * n)
            embeds, pooled = torch.cat([neg_embeds, embeds]), torch.cat([neg_pooled, pooled])
            branch = torch.cat([torch.full((n,), BRANCH_UNCOND), torch.full((n,), BRANCH_COND)]).to(self.device)
        else:
            branch = torch.full((n,), BRANCH_COND, device=self.device)
        x = noise.draw(self.latent_shape).to(device=self.device, dtype=embeds.dtype)  # the pipeline's latents=
        timesteps = self._set_timesteps()
        first = 0
        if start is not None:
            if policy is not None and any(policy.active(s, self.num_steps) for s in range(start.step)):
                raise ValueError(f"policy {policy.canonical()} acts before step {start.step}: it cannot share that prefix")
            x, first = start.x.to(device=self.device, dtype=embeds.dtype), start.step
            self.scheduler.set_begin_index(first)  # flow-match Euler draws no noise: nothing to skip
        hooks = PolicyHook(policy, self.num_steps, reference=self.mean_embedding, first_step=first,
                           timestep_embedding=self.timestep_embedding)
        states = {}
        for step in range(first, self.num_steps):
            if step in keep_states:
                states[step] = SamplerState(step, x.clone())
            t = timesteps[step]
            latents_in = torch.cat([x] * 2) if self.guided else x
            timestep = t.expand(latents_in.shape[0])
            out = self._transformer(latents_in, timestep, embeds, pooled, hooks.at(step, timestep, branch))
            self.denoiser_evaluations += len(latents_in)
            if self.guided:
                uncond, text = out.chunk(2)
                out = uncond + self.cfg_scale * (text - uncond)
            x = self.scheduler.step(out, t, x, return_dict=False)[0]
            if progress is not None:
                progress(step + 1, self.num_steps)
        return SampleOutput(x, hooks.trace, states)

    @torch.no_grad()
    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        """Latents -> images (N, 3, H, W) in [0, 1], as the pipeline's ``output_type="pt"``."""
        latents = samples.to(self.device, self.vae.dtype) / self.vae.config.scaling_factor + self.vae.config.shift_factor
        image = self.vae.decode(latents, return_dict=False)[0]
        return self.image_processor.postprocess(image, output_type="pt").float()

    def to(self, device: torch.device | str) -> "SD3Adapter":
        self.transformer.to(device)
        self.vae.to(device)
        return self

    def dtype_record(self) -> dict:
        """``{"dtype": D}``: the dtype every network runs in (records have always named the transformer's), and
        each network's own dtype as well where one differs, so a record never names a dtype a network lacks
        (records of networks that share one dtype, float32 runs among them, keep their cache keys)."""
        networks = {"transformer": dtype_name(self.transformer), "vae": dtype_name(self.vae)}
        if set(networks.values()) == {str(self.dtype)}:
            return {"dtype": str(self.dtype)}
        return {"dtype": str(self.dtype), "network_dtypes": networks}

    def describe(self) -> dict:
        return {"adapter": self.name, "family": self.family, "model_config": dict(self.transformer.config),
                "sampler": {"name": "StableDiffusion3Pipeline flow-match Euler (condbench loop, bit-identical)",
                            "scheduler_config": dict(self.scheduler.config), "num_steps": self.num_steps,
                            "cfg_scale": self.cfg_scale, "negative_prompt": self.negative_prompt,
                            "height": self.height, "width": self.width, **self.dtype_record(),
                            "prefix_sharing": "supported (resumes from the baseline's latents at step k)"},
                "prompt_encoder": self.encoder.identity(), "checkpoint": self.checkpoint}


# ------------------------------------------------------------------------------------------------ loading


def load_sd3(release: SD3Release, path: Optional[str | Path] = None, *, ckpt: Optional[str | Path] = None,
             device: str = "cpu", dtype: Optional[str] = None, t5: bool = True, max_sequence_length: int = 256,
             embedding_cache: Optional[str] = None, embedders_only: bool = False,
             encoder: Optional[PromptEncoder] = None, precision: str = "fp32", compile: bool = False,
             **sampler: Any) -> SD3Adapter:
    """The adapter for ``release`` from a local diffusers folder (``path``; ``ckpt`` is a synonym) or the hub.

    ``dtype`` defaults to the model card's, and every network is in it (:func:`in_dtype`); ``t5=False`` runs
    without T5-XXL. ``embedders_only`` is accepted for ``condbench analyze`` but diffusers loads the transformer whole. ``encoder`` replaces the folder's text
    encoders (e.g. a :class:`PromptEmbeddingTable`). The suite's ``precision`` and ``compile`` apply to condbench's
    own networks only: a diffusers pipeline runs in its ``dtype``.
    """
    if "reference_prompts" in sampler:
        raise ValueError(f"{release.name}: the model option reference_prompts was removed: mask=fixed policies now use "
                         f"the mean c over the task's own prompts; delete it from model_options.{release.name}")
    if precision != "fp32" or compile:
        raise ValueError(f"{release.name} runs in its model option dtype (default {release.dtype}); the suite's "
                         "precision and compile settings apply to condbench's own networks only: leave them at "
                         "fp32 / false for this model")
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel

    given = path or ckpt
    if encoder is not None and given is not None:  # the text encoders are not read: transformer, vae, scheduler suffice
        folder = Path(given).expanduser()
    else:
        folder = resolve_pipeline_folder(release, given, t5=t5)
    torch_dtype = getattr(torch, dtype or release.dtype)
    transformer = load_network(SD3Transformer2DModel, folder, "transformer", torch_dtype)
    vae = load_network(AutoencoderKL, folder, "vae", torch_dtype)
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler")
    transformer.to(device)
    encoder = encoder or CachedPromptEncoder(PipelinePromptEncoder(folder, transformer, torch_dtype, t5,
                                                                   max_sequence_length), embedding_cache)
    checkpoint = {"repo": release.repo, "path": str(folder.resolve()),
                  "files_sha256": folder_fingerprint(folder, ("transformer", "vae", "scheduler")),
                  "defaults_source": release.defaults_source}
    options = {"num_steps": release.num_steps, "cfg_scale": release.cfg_scale, **sampler}
    return SD3Adapter(transformer, vae, scheduler, encoder, release.name, checkpoint=checkpoint, **options).to(device)


def sd3_contract_case(release: SD3Release, ckpt: Optional[str] = None, model_config: Optional[dict] = None):
    """The adapter contract's case (:mod:`condbench.contract`): the pipeline folder ``ckpt`` at 256 px, 3 steps (its
    own text encoders), or, with no ``ckpt``, a tiny folder written with random weights (SD3.5 blocks for SD3.5) and
    a table of random prompt embeddings; three prompts, the model card's guidance."""
    import tempfile

    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel

    from ..contract import ContractCase, randomize_

    prompts = ["a red cube", "a cat on a mat", "two boats"]
    options = {"num_steps": 3, "cfg_scale": release.cfg_scale, "dtype": "float32"}
    if ckpt is not None:
        return ContractCase(load_sd3(release, ckpt, height=256, width=256, **options), prompts, (3, 256, 256))
    scratch = tempfile.TemporaryDirectory(prefix="condbench-sd3-")
    folder = Path(scratch.name)
    sd35 = {"dual_attention_layers": (0,), "qk_norm": "rms_norm"} if release.name.startswith("sd3.5") else {}
    torch.manual_seed(0)
    randomize_(SD3Transformer2DModel(sample_size=8, patch_size=1, in_channels=4, num_layers=2, attention_head_dim=8,
                                     num_attention_heads=2, caption_projection_dim=16, joint_attention_dim=32,
                                     pooled_projection_dim=24, out_channels=4, pos_embed_max_size=16,
                                     **sd35)).save_pretrained(folder / "transformer")
    randomize_(AutoencoderKL(block_out_channels=(4, 4), layers_per_block=1, latent_channels=4, norm_num_groups=2,
                             down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                             shift_factor=0.0609, scaling_factor=1.5035)).save_pretrained(folder / "vae")
    FlowMatchEulerDiscreteScheduler(shift=3.0).save_pretrained(folder / "scheduler")
    generator = torch.Generator().manual_seed(0)
    table = PromptEmbeddingTable({p: (torch.randn(6, 32, generator=generator), torch.randn(24, generator=generator))
                                  for p in prompts + [""]})
    adapter = load_sd3(release, folder, encoder=table, **options)
    return ContractCase(adapter, prompts, (3, 16, 16), scratch=scratch)
