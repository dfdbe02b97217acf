"""U-ViT's network, c parts and DPM-Solver-fast sampler against the official code (baofff/U-ViT).

Fixture ``tests/fixtures/uvit`` was made by ``tools/golden/make_uvit.py --official <checkout of baofff/U-ViT>
--commit ce551708dc9cde9818d2af7d84dfadfeb7bd9034``: the official ``libs/uvit.py`` network with every
weight re-drawn (no zero layers), its time/label tokens and outputs, and the official ``dpm_solver_pp.py``
sampler called as ``eval_ldm_discrete.py`` calls it (8 and 7 evaluations, guidance scale 0.4 in the
official form = 1.4), from condbench's paired noise. Comparisons are float32 with atol 1e-5, rtol 1e-5.
"""
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from condbench.adapters.uvit import UViTAdapter
from condbench.adapters.uvit_model import UViT, UViTConfig, tokens_from_c
from condbench.checkpoints import CheckpointMismatchError, load_strict
from condbench.policies import parse_policy
from condbench.seeding import PairedNoise

FIXTURE = Path(__file__).parent / "fixtures" / "uvit"
TOL = dict(atol=1e-5, rtol=1e-5)


def meta() -> dict:
    with safe_open(str(FIXTURE / "outputs.safetensors"), "pt") as f:
        return json.loads(f.metadata()["meta"])


def official_model(weights: str = "weights.safetensors", config_key: str = "config") -> UViT:
    model = UViT(UViTConfig(**meta()[config_key]))
    load_strict(model, load_file(str(FIXTURE / weights)), weights)
    return model.eval()


@pytest.fixture(scope="module")
def golden() -> dict:
    return load_file(str(FIXTURE / "outputs.safetensors"))


@pytest.fixture(scope="module")
def model() -> UViT:
    return official_model()


def adapter(model: UViT, steps: int) -> UViTAdapter:
    return UViTAdapter(model, "tiny-uvit", num_steps=steps, cfg_scale=1.4)


def test_c_parts_and_output_match_official(model, golden):
    parts = adapter(model, 8).embed_parts(golden["y"], golden["t"])
    torch.testing.assert_close(parts.t, golden["time_token"], **TOL)
    torch.testing.assert_close(parts.cond, golden["label_token"], **TOL)
    torch.testing.assert_close(parts.c, golden["time_token"] + golden["label_token"], **TOL)
    with torch.no_grad():
        torch.testing.assert_close(model(golden["x"], golden["t"], golden["y"]), golden["out"], **TOL)


def test_options_the_huge_model_leaves_off_match_official(golden):
    """mlp_time_embed, conv final layer and qkv bias, on a second tiny network."""
    other = official_model("weights_options.safetensors", "config_options")
    with torch.no_grad():
        torch.testing.assert_close(other.time_token(golden["t"]), golden["time_token_options"], **TOL)
        torch.testing.assert_close(other(golden["x_options"], golden["t"], golden["y"]), golden["out_options"], **TOL)


@pytest.mark.parametrize("steps", [8, 7])  # solver orders [3, 3, 2] and [3, 3, 1]
def test_dpm_solver_matches_official(model, golden, steps):
    m = meta()
    uvit = adapter(model, steps)
    torch.testing.assert_close(uvit.sampler_timesteps(), golden[f"times_{steps}"], **TOL)
    labels = torch.tensor(m["labels"])
    out = uvit.sample(labels, PairedNoise(m["seed"], range(len(labels))))
    torch.testing.assert_close(out.samples, golden[f"final_{steps}"], **TOL)
    assert uvit.denoiser_evaluations == 2 * len(labels) * steps
    assert len(out.trace.removed_per_step) == steps


def sample(uvit: UViTAdapter, policy=None, **kw):
    return uvit.sample(torch.tensor([3, 0, 9]), PairedNoise(5, range(3)), policy, **kw)


def test_baseline_and_identity_hooks_are_bit_identical(model, golden):
    uvit = adapter(model, 8)
    assert torch.equal(sample(uvit, parse_policy("baseline")).samples, sample(uvit).samples)
    with torch.no_grad():
        plain = model(golden["x"], golden["t"], golden["y"])
        assert torch.equal(model(golden["x"], golden["t"], golden["y"], lambda c, t_part, cond_part: c), plain)


@pytest.mark.parametrize("spec", ["tail:0.1", "topk:8@t0", "drop-t@last:2", "drop-cond,branch=cond"])
def test_policies_change_the_samples(model, spec):
    uvit = adapter(model, 8)
    out = sample(uvit, parse_policy(spec))
    assert not torch.allclose(out.samples, sample(uvit).samples, atol=1e-4)
    assert torch.isfinite(out.samples).all()


def test_hook_zeroing_dims_zeroes_them_in_both_tokens(model, golden):
    dims = torch.arange(0, 32, 3)
    captured = {}

    def hook(c, t_part, cond_part):
        captured.update(c=c, t=t_part, cond=cond_part)
        out = c.clone()
        out[:, dims] = 0
        return out

    with torch.no_grad():
        changed = model(golden["x"], golden["t"], golden["y"], hook)
    assert not torch.allclose(changed, golden["out"], atol=1e-3)
    time, label = tokens_from_c(hook(captured["c"], captured["t"], captured["cond"]), captured["c"],
                                captured["t"], captured["cond"])
    assert (time[:, dims] == 0).all() and (label[:, dims] == 0).all()
    keep = torch.ones(32, dtype=torch.bool)
    keep[dims] = False
    assert torch.equal(time[:, keep], captured["t"][:, keep]) and torch.equal(label[:, keep], captured["cond"][:, keep])


def test_drop_policies_keep_one_token(model, golden):
    t_part, cond_part = model.embed_parts(golden["t"], golden["y"])
    c = t_part + cond_part
    for spec, want_time, want_label in [("drop-t", torch.zeros_like(t_part), cond_part),
                                        ("drop-cond", t_part, torch.zeros_like(cond_part))]:
        c_new = parse_policy(spec).apply(c, t_part, cond_part, step=0, num_steps=1).c
        time, label = tokens_from_c(c_new, c, t_part, cond_part)
        assert torch.equal(time, want_time) and torch.equal(label, want_label), spec
    with pytest.raises(ValueError, match="cannot map"):
        tokens_from_c(c * 0.5, c, t_part, cond_part)


def test_resuming_from_a_kept_state_reproduces_the_full_run(model):
    uvit = adapter(model, 8)
    policy = parse_policy("tail:0.1@last:4")  # active from evaluation 4, inside the solver step 3..5
    baseline = sample(uvit, keep_states=[4])
    full = sample(uvit, policy)
    resumed = sample(uvit, policy, start=baseline.states[4])
    assert torch.equal(resumed.samples, full.samples)
    assert resumed.trace.removed_per_step == full.trace.removed_per_step
    assert full.trace.active_steps == [4, 5, 6, 7]


def test_mean_embedding_is_the_mean_c_over_classes(model):
    uvit = adapter(model, 8)
    t = torch.tensor(400.0)
    all_c = uvit.embed(torch.arange(uvit.num_classes), t)
    torch.testing.assert_close(uvit.mean_embedding(t), all_c.mean(0, keepdim=True), **TOL)
    assert uvit.num_classes == 10


def test_policy_hook_traces_each_evaluation(model):
    uvit = adapter(model, 7)
    out = sample(uvit, parse_policy("topk:4"))
    assert out.trace.active_steps == list(range(7))
    assert all(v == 28 for v in out.trace.removed_per_step)  # 32 - 4 dims zeroed per row, every evaluation


def test_wrong_checkpoint_names_keys_and_shapes():
    state = load_file(str(FIXTURE / "weights.safetensors"))
    wider = UViT(UViTConfig(**{**meta()["config"], "num_classes": 12}))
    with pytest.raises(CheckpointMismatchError, match=r"label_emb\.weight: file \(11, 32\) vs model \(12, 32\)"):
        load_strict(wider, state, "weights.safetensors")
    with pytest.raises(CheckpointMismatchError, match="missing keys: .*final_layer"):
        load_strict(UViT(UViTConfig(**{**meta()["config"], "conv": True})), state, "weights.safetensors")


def test_huge_preset_on_meta_device_and_embedders_only():
    with torch.device("meta"):
        huge = UViT(UViTConfig())
    assert sum(p.numel() for p in huge.parameters()) == pytest.approx(501e6, rel=0.01)  # U-ViT-H/2: 501M
    assert huge.label_emb.weight.shape == (1001, 1152) and huge.pos_embed.shape == (1, 2 + 256, 1152)
    table = torch.randn(1001, 1152)
    load_strict(huge, {"label_emb.weight": table}, "embedders", only_prefixes=("label_emb.",))
    uvit = UViTAdapter(huge, "uvit-h")
    parts = uvit.embed_parts(torch.tensor([1, 1000]), torch.tensor(999.0))
    assert torch.equal(parts.cond, table[[1, 1000]]) and parts.c.shape == (2, 1152)
    assert uvit.sampler_steps == 50 and len(uvit.sampler_timesteps()) == 50
    assert [s.order for s in uvit.solver.steps] == [3] * 16 + [2]


def test_microbatches_with_padding_and_progress(model):
    """Guidance rows (6) in micro-batches of 4: the padded rows pass the hook unchanged."""
    policy = parse_policy("topk:4,branch=cond")
    whole = sample(adapter(model, 7), policy)
    calls = []
    chunked = UViTAdapter(model, "tiny-uvit", num_steps=7, microbatch=4)
    out = chunked.sample(torch.tensor([3, 0, 9]), PairedNoise(5, range(3)), policy,
                         progress=lambda done, total: calls.append((done, total)))
    torch.testing.assert_close(out.samples, whole.samples, **TOL)
    assert out.trace.removed_per_step == whole.trace.removed_per_step
    assert calls == [(k + 1, 7) for k in range(7)]
