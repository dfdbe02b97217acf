"""The DiT network against diffusers' DiTTransformer2DModel, and DiT's network and sampler against the official code.

diffusers builds DiT's timestep sinusoid with ``downscale_freq_shift=1`` (frequencies
exp(-ln(10000) * i / (half - 1))), where the official DiT divides by ``half``. With diffusers' default the
c vectors therefore differ; with that one setting aligned, c and the denoiser output agree to 1e-5.
"""
import json
from pathlib import Path

import pytest
import torch

import condbench
from condbench.adapters.dit_model import sincos_pos_embed_2d
from condbench.seeding import PairedNoise

from .conftest import TINY, assert_matches_official, random_dit

diffusers = pytest.importorskip("diffusers")


def to_diffusers(model) -> "diffusers.DiTTransformer2DModel":
    cfg = model.config
    ref = diffusers.DiTTransformer2DModel(
        num_attention_heads=cfg.num_heads, attention_head_dim=cfg.hidden_size // cfg.num_heads,
        in_channels=cfg.in_channels, out_channels=cfg.out_channels, num_layers=cfg.depth, sample_size=cfg.input_size,
        patch_size=cfg.patch_size, num_embeds_ada_norm=cfg.num_classes, activation_fn="gelu-approximate",
        norm_type="ada_norm_zero", norm_elementwise_affine=False, upcast_attention=False).eval()
    sd = model.state_dict()
    new = {"pos_embed.proj.weight": sd["x_embedder.proj.weight"], "pos_embed.proj.bias": sd["x_embedder.proj.bias"],
           "proj_out_1.weight": sd["final_layer.adaLN_modulation.1.weight"],
           "proj_out_1.bias": sd["final_layer.adaLN_modulation.1.bias"],
           "proj_out_2.weight": sd["final_layer.linear.weight"], "proj_out_2.bias": sd["final_layer.linear.bias"]}
    for i in range(cfg.depth):
        b, o = f"blocks.{i}.", f"transformer_blocks.{i}."
        # diffusers keeps a copy of the t and y embedders in every block
        for ours, theirs in [("t_embedder.mlp.0", "norm1.emb.timestep_embedder.linear_1"),
                             ("t_embedder.mlp.2", "norm1.emb.timestep_embedder.linear_2")]:
            new[o + theirs + ".weight"], new[o + theirs + ".bias"] = sd[ours + ".weight"], sd[ours + ".bias"]
        new[o + "norm1.emb.class_embedder.embedding_table.weight"] = sd["y_embedder.embedding_table.weight"]
        for ours, theirs in [("adaLN_modulation.1", "norm1.linear"), ("attn.proj", "attn1.to_out.0"),
                             ("mlp.fc1", "ff.net.0.proj"), ("mlp.fc2", "ff.net.2")]:
            new[o + theirs + ".weight"], new[o + theirs + ".bias"] = sd[b + ours + ".weight"], sd[b + ours + ".bias"]
        for name, w, bias in zip(("to_q", "to_k", "to_v"), sd[b + "attn.qkv.weight"].chunk(3),
                                 sd[b + "attn.qkv.bias"].chunk(3)):
            new[o + f"attn1.{name}.weight"], new[o + f"attn1.{name}.bias"] = w, bias
    missing, unexpected = ref.load_state_dict(new, strict=False)
    assert not unexpected and all("pos_embed.pos_embed" in k for k in missing), (missing, unexpected)
    return ref


def reference_c(ref, t, y):
    captured = {}
    handle = ref.transformer_blocks[0].norm1.emb.register_forward_hook(lambda m, i, out: captured.update(c=out))
    out = ref(torch.randn(len(t), ref.config.in_channels, ref.config.sample_size, ref.config.sample_size),
              timestep=t, class_labels=y).sample
    handle.remove()
    return captured["c"], out


def align_timestep_sinusoid(ref):
    for block in ref.transformer_blocks:
        block.norm1.emb.time_proj.downscale_freq_shift = 0


T = torch.tensor([0, 1, 250, 999])
Y = torch.tensor([0, 5, 9, 10])  # 10 is the null class


def test_position_table_matches_diffusers():
    from diffusers.models.embeddings import get_2d_sincos_pos_embed

    theirs = get_2d_sincos_pos_embed(32, 4, base_size=4, interpolation_scale=1.0, output_type="pt")
    assert torch.allclose(torch.as_tensor(sincos_pos_embed_2d(32, 4)).float(), theirs.float(), atol=1e-6)


def test_c_and_output_match_diffusers_dit():
    model = random_dit(TINY, seed=3)
    ref = to_diffusers(model)
    align_timestep_sinusoid(ref)
    x = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        captured = {}
        handle = ref.transformer_blocks[0].norm1.emb.register_forward_hook(lambda m, i, out: captured.update(c=out))
        theirs = ref(x, timestep=T, class_labels=Y).sample
        handle.remove()
        t_part, y_part = model.embed_parts(T, Y)
        ours = model(x, T, Y)
    assert torch.allclose(t_part + y_part, captured["c"], atol=1e-5, rtol=0)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0), (ours - theirs).abs().max()


def test_diffusers_default_timestep_sinusoid_departs_from_official_dit():
    model = random_dit(TINY, seed=3)
    ref = to_diffusers(model)
    with torch.no_grad():
        their_c, _ = reference_c(ref, T, Y)
        t_part, y_part = model.embed_parts(T, Y)
    assert (their_c - (t_part + y_part)).abs().max() > 1e-4


# --- against the official code -----------------------------------------------------------------------------
# tests/fixtures/dit was made by running the official facebookresearch/DiT code (commit ed81ce2, models.py and
# diffusion/) on a tiny random network: `python tools/golden/make_dit.py --official PATH/TO/DiT` (see its
# docstring). The official sampler was fed condbench's per-sample noise, so the final latents must agree.
FIXTURE = Path(__file__).parent / "fixtures" / "dit"


def _official():
    from safetensors import safe_open

    with safe_open(str(FIXTURE / "outputs.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["meta"])
        return meta, {k: f.get_tensor(k) for k in f.keys()}


def test_c_and_output_equal_the_official_dit():
    meta, ref = _official()
    adapter = condbench.load_adapter("dit-xl-2", ckpt=str(FIXTURE / "weights.safetensors"), model_config=meta["config"])
    assert_matches_official(adapter.embed(ref["y"], ref["t"]), ref["c"])
    assert_matches_official(adapter.denoise(ref["x"], ref["t"], ref["y"]), ref["out"])


def test_ddpm_sampler_equals_the_official_p_sample_loop_with_cfg():
    meta, ref = _official()
    adapter = condbench.load_adapter("dit-xl-2", ckpt=str(FIXTURE / "weights.safetensors"), model_config=meta["config"],
                                     num_steps=meta["steps"], cfg_scale=meta["cfg_scale"])
    labels = torch.tensor(meta["labels"])
    final = adapter.sample(labels, PairedNoise(meta["seed"], range(len(labels)))).samples
    assert ref["final"].abs().max() > 0.1  # a non-trivial trajectory
    assert_matches_official(final, ref["final"])
