"""SD3 adapter vs diffusers' own StableDiffusion3Pipeline, on tiny random components built offline.

Every parameter of the tiny transformer and VAE is random (diffusers zero-initialises nothing here that would
matter, but AdaLN-style layers are re-drawn anyway so that c reaches the output). Prompt embeddings are given
(no tokenizer or text encoder from the hub). Checked against diffusers as installed (0.42.x).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

from condbench.adapters.sd3 import SD3_RELEASES, PromptEmbeddingTable, SD3Adapter, resolve_pipeline_folder
from condbench.checkpoints import CheckpointNotFoundError
from condbench.policies import parse_policy
from condbench.seeding import PairedNoise

PROMPTS = ["a red cube on a table", "two cats asleep", "a city at night"]
STEPS = 5
SEQ, JOINT, POOLED = 6, 32, 24


def tiny_transformer(seed: int = 0, sd35: bool = False) -> SD3Transformer2DModel:
    torch.manual_seed(seed)
    extra = {"dual_attention_layers": (0,), "qk_norm": "rms_norm"} if sd35 else {}
    model = SD3Transformer2DModel(sample_size=8, patch_size=1, in_channels=4, num_layers=2, attention_head_dim=8,
                                  num_attention_heads=2, caption_projection_dim=16, joint_attention_dim=JOINT,
                                  pooled_projection_dim=POOLED, out_channels=4, pos_embed_max_size=16, **extra)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return model.eval()


def tiny_vae(seed: int = 1) -> AutoencoderKL:
    torch.manual_seed(seed)
    vae = AutoencoderKL(sample_size=8, block_out_channels=(4,), layers_per_block=1, latent_channels=4,
                        norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609,
                        scaling_factor=1.5035)
    with torch.no_grad():
        for p in vae.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return vae.eval()


def embedding_table(seed: int = 2) -> PromptEmbeddingTable:
    g = torch.Generator().manual_seed(seed)
    return PromptEmbeddingTable({p: (torch.randn(SEQ, JOINT, generator=g), torch.randn(POOLED, generator=g))
                                 for p in PROMPTS + [""]})


def tiny_text_encoder(hidden: int, projection: int, seed: int) -> "transformers.CLIPTextModelWithProjection":
    """A CLIP text tower with random weights over the tiny tokenizer's 514 tokens (77 positions)."""
    import transformers

    torch.manual_seed(seed)
    return transformers.CLIPTextModelWithProjection(transformers.CLIPTextConfig(
        vocab_size=514, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2, num_attention_heads=2,
        projection_dim=projection, max_position_embeddings=77, bos_token_id=512, eos_token_id=513,
        pad_token_id=513)).eval()


def save_tiny_pipeline(folder: Path) -> Path:
    """A complete SD3.5-style diffusers folder without T5 (model_index.json, transformer, VAE, scheduler, CLIP-L and
    CLIP-G with their tokenizers), every weight random and stored in float32, written by the pipeline itself.

    The text towers' widths fit the transformer: pooled 8 + 16 = POOLED, hidden 16 + 16 = JOINT."""
    from transformers import CLIPTokenizer

    from .test_clip_score import save_tiny_clip

    save_tiny_clip(folder / "clip")  # its byte-level tokenizer, CLIP's 77 positions
    tokenizer = CLIPTokenizer.from_pretrained(folder / "clip", model_max_length=77)
    StableDiffusion3Pipeline(transformer=tiny_transformer(sd35=True), vae=tiny_vae(),
                             scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                             text_encoder=tiny_text_encoder(16, 8, seed=3), tokenizer=tokenizer,
                             text_encoder_2=tiny_text_encoder(16, 16, seed=4), tokenizer_2=tokenizer,
                             text_encoder_3=None, tokenizer_3=None).save_pretrained(folder)
    return folder


def make_adapter(sd35: bool = False, cfg_scale: float = 7.0) -> SD3Adapter:
    return SD3Adapter(tiny_transformer(sd35=sd35), tiny_vae(), FlowMatchEulerDiscreteScheduler(shift=3.0),
                      embedding_table(), "tiny-sd3", num_steps=STEPS, cfg_scale=cfg_scale)


def official_pipeline(sd35: bool = False) -> StableDiffusion3Pipeline:
    """The unhooked pipeline with its own (identically seeded) transformer."""
    return StableDiffusion3Pipeline(transformer=tiny_transformer(sd35=sd35), scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                                    vae=tiny_vae(), text_encoder=None, tokenizer=None, text_encoder_2=None,
                                    tokenizer_2=None, text_encoder_3=None, tokenizer_3=None)


def run_pipeline(pipe, adapter: SD3Adapter, output_type: str, cfg_scale: float = 7.0) -> torch.Tensor:
    table = adapter.encoder
    embeds, pooled = table.encode(PROMPTS)
    neg_embeds, neg_pooled = table.encode([""] * len(PROMPTS))
    latents = PairedNoise(0, range(len(PROMPTS))).draw(adapter.latent_shape)
    return pipe(prompt_embeds=embeds, pooled_prompt_embeds=pooled, negative_prompt_embeds=neg_embeds,
                negative_pooled_prompt_embeds=neg_pooled, latents=latents, num_inference_steps=STEPS,
                guidance_scale=cfg_scale, output_type=output_type).images


@pytest.mark.parametrize("sd35", [False, True])
@pytest.mark.parametrize("policy", [None, "baseline"])
def test_baseline_samples_equal_the_pipeline_bit_for_bit(sd35, policy):
    adapter = make_adapter(sd35)
    out = adapter.sample(PROMPTS, PairedNoise(0, range(len(PROMPTS))), parse_policy(policy) if policy else None)
    pipe = official_pipeline(sd35)
    assert torch.equal(out.samples, run_pipeline(pipe, adapter, "latent"))
    assert torch.equal(adapter.decode(out.samples), run_pipeline(pipe, adapter, "pt").float())
    assert adapter.denoiser_evaluations == 2 * len(PROMPTS) * STEPS


def test_without_guidance_equals_the_pipeline():
    adapter = make_adapter(cfg_scale=1.0)
    out = adapter.sample(PROMPTS, PairedNoise(0, range(len(PROMPTS))))
    assert torch.equal(out.samples, run_pipeline(official_pipeline(), adapter, "latent", cfg_scale=1.0))
    assert adapter.evaluations_per_step() == 1


def test_c_is_time_text_embed_output_and_the_sum_of_its_parts():
    adapter = make_adapter(sd35=True)
    module = adapter.transformer.time_text_embed
    assert type(module).__name__ == "CombinedTimestepTextProjEmbeddings"
    t = adapter.sampler_timesteps()[1]
    parts = adapter.embed_parts(PROMPTS, t)
    _, pooled = adapter.encoder.encode(PROMPTS)
    with torch.no_grad():
        temb = module(t.expand(len(PROMPTS)), pooled)
    assert torch.equal(parts.c, temb) and torch.equal(parts.t + parts.cond, temb)
    assert torch.equal(parts.t[0], parts.t[1]) and not torch.equal(parts.cond[0], parts.cond[1])
    assert parts.c.shape == (len(PROMPTS), adapter.embed_dim)


def test_tail_policy_changes_temb_only_at_its_steps_and_branch():
    adapter = make_adapter()
    module = adapter.transformer.time_text_embed
    before, after = [], []
    first = module.register_forward_hook(lambda m, i, out: before.append(out.clone()), prepend=True)
    last = module.register_forward_hook(lambda m, i, out: after.append(out.clone()))
    tau = float(adapter.embed(PROMPTS, adapter.sampler_timesteps()[0]).abs().median())
    policy = parse_policy(f"tail:{tau}@last:2,branch=cond")
    try:
        adapter.sample(PROMPTS, PairedNoise(0, range(len(PROMPTS))), policy)
    finally:
        first.remove()
        last.remove()
    n = len(PROMPTS)
    assert len(before) == len(after) == STEPS
    for step, (orig, new) in enumerate(zip(before, after)):
        if step < STEPS - 2:
            assert torch.equal(orig, new), step
            continue
        assert torch.equal(new[:n], orig[:n])  # the unconditional rows come first and are not targeted
        expected = torch.where(orig[n:].abs() < tau, torch.zeros_like(orig[n:]), orig[n:])
        assert torch.equal(new[n:], expected) and (new[n:] == 0).any()


def test_late_policy_resumes_from_the_baseline_state_exactly():
    adapter = make_adapter()
    noise = lambda: PairedNoise(3, range(len(PROMPTS)))  # noqa: E731
    base = adapter.sample(PROMPTS, noise(), parse_policy("baseline"), keep_states=[3])
    late = parse_policy("tail:0.3@last:2")
    resumed = adapter.sample(PROMPTS, noise(), late, start=base.states[3])
    assert torch.equal(resumed.samples, adapter.sample(PROMPTS, noise(), late).samples)
    assert not torch.equal(resumed.samples, base.samples)
    with pytest.raises(ValueError, match="acts before step 3"):
        adapter.sample(PROMPTS, noise(), parse_policy("tail:0.3"), start=base.states[3])


def test_missing_pipeline_names_the_gated_repo_and_the_local_folder_option(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    release = SD3_RELEASES[0]
    with pytest.raises(CheckpointNotFoundError) as error:
        resolve_pipeline_folder(release)
    message = str(error.value)
    for needed in (release.repo, "gated", "licence", "path: DIR", "offline"):
        assert needed in message, needed
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "model_index.json").write_text("{}")
    with pytest.raises(CheckpointNotFoundError, match="(?s)lacks scheduler, transformer.*text_encoder_3"):
        resolve_pipeline_folder(release, tmp_path / "local")
    with pytest.raises(CheckpointNotFoundError) as error:
        resolve_pipeline_folder(release, tmp_path / "local", t5=False)
    assert "text_encoder_3" not in str(error.value).split("How to provide")[0]


@pytest.mark.parametrize("damage", [b"\x00garbage", b"[1, 2]", b""])
def test_a_damaged_hash_memo_is_ignored_and_written_again(tmp_path, monkeypatch, damage):
    """The weight-hash memo is only a memo: damaged, the files are hashed again and the fingerprint is the same."""
    from condbench.adapters.sd3 import folder_fingerprint

    monkeypatch.setenv("CONDBENCH_CACHE", str(tmp_path / "cache"))
    (tmp_path / "model" / "transformer").mkdir(parents=True)
    (tmp_path / "model" / "transformer" / "weights.bin").write_bytes(b"weights")
    first = folder_fingerprint(tmp_path / "model", ["transformer"])
    memo = tmp_path / "cache" / "file_hashes.json"
    memo.write_bytes(damage)
    assert folder_fingerprint(tmp_path / "model", ["transformer"]) == first
    assert isinstance(json.loads(memo.read_text()), dict)
