"""X-MDPT against the official trungpx/xmdpt code (``masked_diffusion/models.py``, ``gaussian_diffusion.py``).

Fixtures in ``tests/fixtures/xmdpt`` were made by running the official code at commit
83970562dce8b563ec241dd0338ed42bc341b33e with
``PYTHONPATH=src python tools/golden/make_xmdpt.py --official <xmdpt checkout> --commit <that commit>``
(timm 1.0.31, einops 0.8.2, CPU, so the official bf16 autocast is off and everything is float32):
a tiny X-MDPT (hidden 16, 2 heads, depth 4 with decode_layer 2; the 32x32x4 latent, 257-token DINOv2 inputs
and side blocks at their official sizes) with every parameter re-drawn at random, saved in the official key
layout; the official c of both guidance branches (captured at the first block's adaLN input), network outputs,
``forward_with_cfg`` outputs (cfg 2, power-cosine pow 0.01), and the final latents of the official
``ddim_sample_loop`` (eta 0, no clipping) on the 10-step respacing, started from the same PairedNoise draw as
condbench (10 steps keep the test fast; the 50-step respacing's timesteps are compared separately). The condition
inputs are PairedNoise draws the test rebuilds (the fixture holds their fingerprints).
Comparisons are float32 with atol 1e-5 and rtol 1e-5 (final latents: atol 1e-5 times their largest magnitude).
"""
import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.flop_counter import FlopCounterMode

from condbench.adapters.base import PolicyHook
from condbench.adapters.ddpm import GaussianDiffusion
from condbench.adapters.mdt_model import relative_position_index
from condbench.adapters.xmdpt import COND_KEYS, XMDPTAdapter
from condbench.adapters.xmdpt_model import (XMDPT, XMDPT_TRAINING_ONLY_PREFIXES, XMDPTConfig, xmdpt_config)
from condbench.checkpoints import CheckpointMismatchError, load_state_dict, load_strict, read_metadata
from condbench.policies import BRANCH_COND, BRANCH_UNCOND, parse_policy
from condbench.seeding import PairedNoise

FIXTURES = Path(__file__).parent / "fixtures" / "xmdpt"
WEIGHTS = FIXTURES / "weights.safetensors"
META = {k: json.loads(v) if k not in ("repo", "commit", "command") else v
        for k, v in read_metadata(FIXTURES / "golden.safetensors").items()}
TOL = dict(atol=1e-5, rtol=1e-5)
OFFICIAL_KEYS = {"dino_tgt_pose": "pose_features", "dino_src_img": "source_features", "src_img": "source_latent"}


def conditions(seed: int, n: int) -> dict:
    """The condition inputs of the fixture: the same PairedNoise draws, in the same order, as make_xmdpt.py."""
    noise = PairedNoise(seed, range(n))
    return {"pose_features": noise.draw((257, 768)), "source_features": noise.draw((257, 1536)),
            "source_latent": noise.draw((4, 32, 32))}


def check_fingerprint(cond: dict, golden: dict, prefix: str) -> None:
    for official, ours in OFFICIAL_KEYS.items():
        assert torch.equal(cond[ours][:, :2, :3].reshape(-1), golden[f"{prefix}_{official}_corner"])
        assert torch.allclose(cond[ours].double().sum(), golden[f"{prefix}_{official}_sum"], atol=1e-6)


@pytest.fixture(scope="module")
def golden() -> dict:
    return load_file(str(FIXTURES / "golden.safetensors"))


@pytest.fixture(scope="module")
def model() -> XMDPT:
    net = XMDPT(XMDPTConfig(**META["config"]))
    load_strict(net, load_state_dict(WEIGHTS), str(WEIGHTS), ignore_prefixes=XMDPT_TRAINING_ONLY_PREFIXES)
    return net.eval()


@pytest.fixture(scope="module")
def cond(golden) -> dict:
    built = conditions(META["cond_seed"], len(golden["x"]))
    check_fingerprint(built, golden, "cond")
    return built


@pytest.fixture(scope="module")
def sample_cond(golden) -> dict:
    built = conditions(META["sample_cond_seed"], META["num_samples"])
    check_fingerprint(built, golden, "sample")
    return built


def adapter_for(model: XMDPT, **options) -> XMDPTAdapter:
    return XMDPTAdapter(model, "tiny-xmdpt", num_steps=META["sampler_steps"], cfg_scale=META["cfg_scale"],
                        scale_pow=META["scale_pow"], diffusion_steps=META["diffusion_steps"], **options)


def test_official_file_carries_training_only_keys_that_a_plain_strict_load_refuses():
    state = load_state_dict(WEIGHTS)
    assert "mask_token" in state and any(k.startswith("sideblocks_cross.0.attn.to_kv") for k in state)
    with pytest.raises(CheckpointMismatchError, match="unexpected keys: mask_token, sideblocks"):
        load_strict(XMDPT(XMDPTConfig(**META["config"])), state, str(WEIGHTS))


def test_relative_position_index_buffers_are_the_official_ones(model):
    state = load_state_dict(WEIGHTS)
    for i in range(META["config"]["depth"]):
        key = f"blocks.{i}.attn.rel_pos_bias.relative_position_index"
        assert torch.equal(state[key], relative_position_index(16)) and torch.equal(model.state_dict()[key], state[key])


def test_c_of_both_branches_and_network_output_match_official(model, cond, golden):
    x, t = golden["x"], golden["t"]
    with torch.no_grad():
        y = model.condition_embedding(*(cond[k] for k in COND_KEYS))
        for branch, y_in in (("cond", y), ("uncond", torch.zeros_like(y))):
            t_part, y_part = model.embed_parts(t, y_in)
            assert torch.allclose(t_part + y_part, golden[f"c_{branch}"], **TOL), branch
            out = model(x, t, y_in)
            assert torch.allclose(out, golden[f"out_{branch}"], **TOL), (branch, (out - golden[f"out_{branch}"]).abs().max())
    assert torch.allclose(golden["c_uncond"], model.t_embedder(t).detach(), **TOL)  # the null condition: c = t


def test_adapter_embed_parts_split_c_into_t_and_condition(model, cond, golden):
    adapter = adapter_for(model)
    parts = adapter.embed_parts(cond, golden["t"])
    assert torch.allclose(parts.c, golden["c_cond"], **TOL) and torch.equal(parts.c, parts.t + parts.cond)
    assert torch.allclose(adapter.denoise(golden["x"], golden["t"], cond), golden["out_cond"], **TOL)


def test_hook_rewrites_c_where_it_is_formed(model, cond, golden):
    y = model.condition_embedding(*(cond[k] for k in COND_KEYS)).detach()
    seen = {}

    def hook(c, t_part, y_part):
        seen.update(c=c, sum=t_part + y_part)
        return t_part  # drop the condition: must equal the null branch

    with torch.no_grad():
        out = model(golden["x"], golden["t"], y, hook)
    assert torch.equal(seen["c"], seen["sum"]) and torch.allclose(seen["c"], golden["c_cond"], **TOL)
    assert torch.allclose(out, golden["out_uncond"], **TOL)


def forward_flops(net: XMDPT, n: int, device: str = "cpu") -> tuple[int, int]:
    """FLOPs of condbench's forward (condition heads included) and of one block, for n samples."""
    cfg = net.config
    cond = {"pose_features": torch.zeros(n, 257, cfg.pose_dim, device=device),
            "source_features": torch.zeros(n, 257, cfg.source_dim, device=device),
            "source_latent": torch.zeros(n, 4, 32, 32, device=device)}
    x, t = torch.zeros(n, 4, 32, 32, device=device), torch.zeros(n, dtype=torch.long, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as total:
        net(x, t, net.condition_embedding(*(cond[k] for k in COND_KEYS)))
    tokens, c = torch.zeros(n, 256, cfg.hidden_size, device=device), torch.zeros(n, cfg.hidden_size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as block:
        net.blocks[0](tokens, c)
    return total.get_total_flops(), block.get_total_flops()


def test_skipping_the_unused_source_stream_saves_one_block_pass_per_block(model, cond, golden):
    """The official forward runs every block twice (noisy latent and source stream); ours once, same output
    (checked above against the official output). Counted FLOPs: ours + depth x block == official, exactly;
    at L/2 that is 162.6 instead of 324.0 GFLOP per sample and forward (counted on the meta device)."""
    ours, block = forward_flops(model, META["official_forward_batch"])
    assert ours + model.config.depth * block == META["official_forward_flops"]
    with torch.device("meta"):
        large = XMDPT(xmdpt_config("L"))
    ours_l, block_l = forward_flops(large, 1, device="meta")
    official_l = ours_l + large.config.depth * block_l
    assert (round(ours_l / 1e9, 1), round(official_l / 1e9, 1)) == (162.6, 324.0)


def test_ddim_50_respacing_is_the_official_one():
    diffusion = GaussianDiffusion.dit(50)
    assert diffusion.timestep_map.tolist() == META["ddim50_timestep_map"]
    assert diffusion.timestep_map[:4].tolist() == [0, 20, 41, 61] and diffusion.timestep_map[-1] == 999


def test_guided_output_matches_official_forward_with_cfg(model, sample_cond, golden):
    adapter = adapter_for(model)
    y = adapter.condition_embedding(sample_cond)
    for step in META["guided_steps"]:
        x = golden[f"guided_x_{step}"]
        t = adapter.sampler_timesteps()[step].expand(len(x))
        with torch.no_grad():
            ours = adapter._evaluate(x, t, y, PolicyHook(None, adapter.sampler_steps), step)
        ref = golden[f"guided_out_{step}"]
        assert torch.allclose(ours, ref, **TOL), (step, (ours - ref).abs().max())
    assert adapter.guidance_scale(0) == pytest.approx(1.989, abs=1e-3) and adapter.guidance_scale(9) == 2.0


def test_ddim_sampler_final_latents_match_official(model, sample_cond, golden):
    adapter = adapter_for(model)
    out = adapter.sample(sample_cond, PairedNoise(META["noise_seed"], range(META["num_samples"]))).samples
    ref = golden["samples"]
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max())), (out - ref).abs().max()
    assert adapter.denoiser_evaluations == 2 * META["num_samples"] * META["sampler_steps"]


def test_policy_hook_is_told_the_branch_of_every_row(model, sample_cond, monkeypatch):
    adapter = XMDPTAdapter(model, "tiny", num_steps=3)
    branches, original = [], PolicyHook.at

    def recording_at(self, step, t, branch=None):
        branches.append(branch.tolist())
        return original(self, step, t, branch)

    monkeypatch.setattr(PolicyHook, "at", recording_at)
    adapter.sample(sample_cond, PairedNoise(0, range(2)), parse_policy("tail:0.5"))
    assert branches == [[BRANCH_COND] * 2 + [BRANCH_UNCOND] * 2] * 3



def test_policies_prefix_sharing_and_microbatches_keep_results(model, sample_cond):
    adapter = XMDPTAdapter(model, "tiny", num_steps=4)

    def run(policy=None, **kwargs):
        return adapter.sample(sample_cond, PairedNoise(5, range(2)), policy, **kwargs)

    plain = run(keep_states=(2,))
    assert torch.equal(run(parse_policy("baseline")).samples, plain.samples)
    late = parse_policy("tail:0.5@last:2")
    resumed = run(late, start=plain.states[2]).samples
    assert torch.equal(resumed, run(late).samples) and not torch.equal(resumed, plain.samples)
    chunked = XMDPTAdapter(model, "tiny", num_steps=4, microbatch=3).sample(sample_cond, PairedNoise(5, range(2)))
    scale = float(plain.samples.abs().max())  # latents of size ~10^2 (random network): relative agreement
    assert torch.allclose(chunked.samples, plain.samples, rtol=1e-5, atol=1e-5 * scale)


def test_condition_part_policies_and_mask_fixed_reference(model, sample_cond):
    adapter = XMDPTAdapter(model, "tiny", num_steps=2)
    with pytest.raises(ValueError, match="set_condition_mean"):
        adapter.sample(sample_cond, PairedNoise(0, range(2)), parse_policy("topk:4,mask=fixed"))
    adapter.set_condition_mean(sample_cond)
    out = adapter.sample(sample_cond, PairedNoise(0, range(2)), parse_policy("topk:4,mask=fixed"))
    assert out.trace.mean_removed() == model.config.hidden_size - 4


def test_bad_condition_dicts_are_refused_with_the_expected_layout(model, sample_cond):
    adapter = XMDPTAdapter(model, "tiny", num_steps=2)
    with pytest.raises(ValueError, match="keys pose_features, source_features, source_latent"):
        adapter.embed({"pose_features": sample_cond["pose_features"]}, 10)
    wrong = {**sample_cond, "source_features": sample_cond["source_features"][:, :, :768]}
    with pytest.raises(ValueError, match=r"source_features.*\(2, 257, 768\), expected \(2, 257, 1536\)"):
        adapter.embed(wrong, 10)


def test_official_sizes_match_the_official_layouts_on_meta_device():
    official = json.loads((FIXTURES / "sizes_keys.json").read_text())["keys"]
    for size in ("S", "B", "L"):
        with torch.device("meta"):
            net = XMDPT(xmdpt_config(size))
        ours = {k: list(v.shape) for k, v in net.state_dict().items()}
        kept = {k: v for k, v in official[size].items() if not k.startswith(XMDPT_TRAINING_ONLY_PREFIXES)}
        assert ours == kept, size
        dropped = sorted(set(official[size]) - set(kept))
        assert dropped[0] == "mask_token" and all(k.startswith(("sideblocks.0.", "sideblocks_cross.0.")) for k in dropped[1:])
    assert dataclasses.asdict(xmdpt_config("L"))["decode_layer"] == 2


def official_file(path: Path) -> Path:
    """The fixture's tiny official state dict (side blocks included) re-saved with torch.save, as released."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(load_state_dict(WEIGHTS), path)
    return path


def test_registry_loads_xmdpt_from_an_official_file_and_drops_training_keys_by_name(tmp_path, model, cond, golden):
    import condbench
    from condbench.registry import model_entry

    path = official_file(tmp_path / "XMDPT_S_2" / "ema_0.9999_300000.pt")
    overrides = {k: v for k, v in META["config"].items() if k in ("hidden_size", "depth", "num_heads", "decode_layer")}
    adapter = condbench.load_adapter("xmdpt-s-2", ckpt=str(path), model_config=overrides)
    assert isinstance(adapter, XMDPTAdapter) and adapter.sampler_steps == 50 and adapter.cfg_channels == 8
    assert torch.allclose(adapter.embed(cond, golden["t"]), golden["c_cond"], **TOL)
    light = condbench.load_adapter("xmdpt-s-2", ckpt=str(path), model_config=overrides, embedders_only=True)
    assert torch.equal(light.embed(cond, golden["t"]), adapter.embed(cond, golden["t"]))
    assert light.model.blocks[0].attn.qkv.weight.is_meta
    entries = [model_entry(f"xmdpt-{s}-2") for s in "sbl"]
    assert [e.task for e in entries] == ["pose"] * 3 and [e.c_dim for e in entries] == [384, 768, 1024]


def test_a_checkpoint_of_another_xmdpt_size_is_refused_naming_both_sizes(tmp_path):
    import condbench

    path = tmp_path / "ema_0.9999_300000.pt"
    with torch.device("meta"):
        small = XMDPT(xmdpt_config("S"))
    state = {k: torch.zeros(v.shape[:1] if k == "t_embedder.mlp.0.weight" else (1,))
             for k, v in small.state_dict().items() if k.startswith(("t_embedder.mlp.0.weight", "blocks."))}
    torch.save(state, path)  # only what the size check reads: the S/2 hidden size and block count
    with pytest.raises(CheckpointMismatchError, match=r"holds X-MDPT-S/2 weights \(hidden size 384, 12 blocks\), "
                                                      r"but xmdpt-l-2 needs hidden size 1024 and 24 blocks"):
        condbench.load_adapter("xmdpt-l-2", ckpt=str(path))


def test_missing_xmdpt_files_say_download_by_hand_with_the_drive_page(isolated_cache):
    import condbench
    from condbench.adapters.xmdpt import XMDPTVAE
    from condbench.checkpoints import CheckpointNotFoundError

    with pytest.raises(CheckpointNotFoundError, match="(?s)XMDPT_L_2/ema_0.9999_300000.pt.*published only on a page "
                                                      r"a person downloads from \(download it by hand\): "
                                                      "https://drive.google.com/file/d/"
                                                      "1No_WJBD25HVmYLaKirrI_7k04RpOkNos.*--ckpt"):
        condbench.load_adapter("xmdpt-l-2")
    with pytest.raises(CheckpointNotFoundError, match="(?s)fine-tuned VAE not found.*drive.google.com/file/d/"
                                                      "1zjoCLuJV-_d-pq7f_N0vZXppUkq8LTP0.*give the folder as the model "
                                                      "option decoder"):
        XMDPTVAE(isolated_cache / "nowhere").load()


def tiny_vae_folder(path: Path) -> Path:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    AutoencoderKL(block_out_channels=(8, 8, 8, 8), down_block_types=("DownEncoderBlock2D",) * 4,
                  up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=4,
                  layers_per_block=1).save_pretrained(path)
    return path


def test_source_latents_are_posterior_samples_seeded_per_pair_and_decoding_gives_images(tmp_path):
    from condbench.adapters.xmdpt import XMDPTVAE, posterior_seed

    vae = XMDPTVAE(tiny_vae_folder(tmp_path / "vae"))
    images = torch.rand(3, 3, 256, 256)
    latents = vae.encode_sources(images, seed=7, indices=[4, 5, 6])
    assert latents.shape == (3, 4, 32, 32)
    posterior = vae.load().encode(images * 2 - 1).latent_dist
    eps = PairedNoise(posterior_seed(7), [4, 5, 6]).draw((4, 32, 32))
    assert torch.allclose(latents, (posterior.mean + posterior.std * eps) * 0.18215, atol=1e-6)
    again = vae.encode_sources(images[1:], seed=7, indices=[5, 6])  # pair 5 alone: the same sample
    assert torch.allclose(again, latents[1:], atol=1e-6)
    assert not torch.allclose(vae.encode_sources(images, seed=8, indices=[4, 5, 6]), latents)
    decoded = vae(latents)
    assert decoded.shape == (3, 3, 256, 256) and decoded.min() >= 0 and decoded.max() <= 1


def test_pair_conditions_give_the_adapter_its_cond_dict(tmp_path):
    from condbench.adapters.xmdpt import XMDPTVAE, pair_conditions
    from condbench.encoders.dinov2 import DINOV2_VITB14, DINOv2Spec, XMDPTEncoders, hub_dinov2_model

    def tiny(width: int, swiglu: bool):  # random tiny hub-layout DINOv2s of the widths X-MDPT reads
        return hub_dinov2_model(DINOv2Spec("tiny", width, 1, 4, swiglu, DINOV2_VITB14.weights))

    encoders, vae = XMDPTEncoders(tiny(768, False), tiny(1536, True)), XMDPTVAE(tiny_vae_folder(tmp_path / "vae"))
    sources, skeletons = torch.rand(2, 3, 256, 256), torch.rand(2, 3, 256, 256)
    cond = pair_conditions(sources, skeletons, encoders=encoders, vae=vae, seed=3, indices=[10, 11])
    assert {k: tuple(v.shape) for k, v in cond.items()} == {
        "pose_features": (2, 257, 768), "source_features": (2, 257, 1536), "source_latent": (2, 4, 32, 32)}
    assert torch.equal(cond["source_latent"], vae.encode_sources(sources, 3, [10, 11]))
    net = XMDPT(XMDPTConfig(**META["config"]))
    assert XMDPTAdapter(net, "tiny").embed(cond, 999).shape == (2, META["config"]["hidden_size"])
