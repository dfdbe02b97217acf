"""MDSGen's network, c and DPM-Solver++ 2M sampler against the official triton99/MDSGen code.

Fixtures in ``tests/fixtures/mdsgen`` were made by running the official code at commit
f51ce3d3a63d6c9913b8493dbafcd3a663cdd7ab with
``PYTHONPATH=src python tools/golden/make_mdsgen.py --official <MDSGen checkout> --commit <that commit>``:
a tiny MDSGen on the official 102x8 token grid (hidden 32, 2 heads, depth 3, decode_layer 1) whose every
parameter is redrawn by ``seeded_state`` from the stored layout (so the weights are not stored); the official
c of both branches at float timesteps, network outputs, ``forward_with_cfg`` (cfg 5, pow 0.01), the official
guidance scales at the 10 sampling times, and the final latents of ``DPM_Solver(..., 'dpmsolver++')
.sample(order=2, skip_type='time_uniform', method='multistep')`` (10 steps, 2 clips; 6 steps, 1 clip) from
condbench's PairedNoise. Comparisons are float32 within 1e-5 of the reference's scale.
"""
import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from condbench.adapters.dit_model import DiT, DiTConfig
from condbench.adapters.mdsgen import MDSGenAdapter
from condbench.adapters.mdsgen_model import (MDSGEN_B_2, MDSGEN_EMBEDDER_PREFIXES, MDSGEN_TRAINING_ONLY_PREFIXES,
                                             MDSGen, MDSGenConfig)
from condbench.adapters.mdt_model import relative_position_index
from condbench.checkpoints import CheckpointMismatchError, load_strict, read_metadata
from condbench.policies import parse_policy
from condbench.seeding import PairedNoise

from .conftest import assert_matches_official
from .golden_weights import seeded_state, weights_sum

FIXTURES = Path(__file__).parent / "fixtures" / "mdsgen"
TEXT_META = ("repo", "commit", "command", "relative_position_index_sha256")
META = {k: v if k in TEXT_META else json.loads(v) for k, v in read_metadata(FIXTURES / "golden.safetensors").items()}
LAYOUT = json.loads((FIXTURES / "layout.json").read_text())
CONFIG = MDSGenConfig(**META["config"])


def official_state() -> dict[str, torch.Tensor]:
    """The fixture's weights in the official layout, with the official relative-position index buffers."""
    state = seeded_state(LAYOUT, META["weight_seed"])
    assert weights_sum(state) == pytest.approx(META["weights_sum"], rel=1e-12)
    index = relative_position_index(CONFIG.grid)
    for key in LAYOUT:
        if key.endswith("relative_position_bias_table"):
            state[key.replace("bias_table", "index")] = index
    return state


def inputs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The golden script's latents (n, 8, 204, 16) and unit-norm features (n, 32, 512)."""
    gen = torch.Generator().manual_seed(META["input_seed"])
    x = torch.randn(n, *META["latent"], generator=gen)
    feats = torch.randn(n, 32, 512, generator=gen)
    return x, feats / feats.norm(dim=-1, keepdim=True)


@pytest.fixture(scope="module")
def golden() -> dict:
    return load_file(str(FIXTURES / "golden.safetensors"))


@pytest.fixture(scope="module")
def model() -> MDSGen:
    net = MDSGen(CONFIG)
    load_strict(net, official_state(), "fixture", ignore_prefixes=MDSGEN_TRAINING_ONLY_PREFIXES)
    return net.eval()


def adapter_for(model: MDSGen, steps: int = 10) -> MDSGenAdapter:
    return MDSGenAdapter(model, "tiny-mdsgen", num_steps=steps, cfg_scale=META["cfg_scale"], scale_pow=META["scale_pow"])


def test_relative_position_index_is_the_official_buffer():
    index = relative_position_index(CONFIG.grid).to(torch.int64).contiguous().numpy().tobytes()
    assert hashlib.sha256(index).hexdigest() == META["relative_position_index_sha256"]
    assert CONFIG.grid == (102, 8)


def test_c_of_both_branches_matches_official(model, golden):
    x, feats = inputs(3)
    t = torch.tensor(META["t"])
    adapter = adapter_for(model)
    parts = adapter.embed_parts(feats, t)
    assert_matches_official(parts.c, golden["c_cond"])
    assert torch.equal(parts.c, parts.t + parts.cond)
    with torch.no_grad():
        t_part, null_part = model.embed_parts(t, feats, keep=torch.zeros(3))
    assert torch.equal(null_part, torch.zeros_like(null_part))  # the null condition is the zero vector
    assert_matches_official(t_part + null_part, golden["c_null"])


def test_network_output_matches_official(model, golden):
    x, feats = inputs(3)
    t = torch.tensor(META["t"])
    with torch.no_grad():
        cond = model(x[:1], t[:1], feats[:1], torch.ones(1))
        null = model(x[1:2], t[2:], feats[1:2], torch.zeros(1))
    assert_matches_official(torch.cat([cond, null]), golden["out"])


def test_guidance_scales_and_guided_output_match_official(model, golden):
    adapter = adapter_for(model)
    assert torch.equal(adapter.sampler_timesteps(), golden["sampler_t"])
    scales = torch.tensor([adapter.guidance_scale(k) for k in range(adapter.sampler_steps)])
    assert torch.equal(scales, golden["scales"])
    assert 4.95 < scales[0] < 4.96 and scales[-1] == pytest.approx(META["cfg_scale"], abs=1e-4)
    x, feats = inputs(3)
    with torch.no_grad():
        guided = adapter._evaluate(x[:1], feats[:1], None, 0)  # step 0 is t = 999
    assert_matches_official(guided, golden["guided_out"])
    assert adapter.denoiser_evaluations == 2


@pytest.mark.parametrize("steps", [10, 6])  # 6 < 10: the last update drops to first order
def test_sampler_final_latents_match_official(model, golden, steps):
    n = META["runs"][str(steps)]
    _, feats = inputs(max(META["runs"].values()))
    adapter = adapter_for(model, steps)
    out = adapter.sample(feats[:n], PairedNoise(META["noise_seed"], range(n)))
    assert_matches_official(out.samples, golden[f"samples_{steps}"])
    assert adapter.denoiser_evaluations == 2 * n * steps
    assert adapter.solver.orders == ([1] + [2] * 9 if steps == 10 else [1, 2, 2, 2, 2, 1])


def test_every_network_row_is_labelled_with_its_branch(model):
    _, feats = inputs(2)
    seen = []

    class Recording:
        """A real policy whose applications are recorded."""

        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def apply(self, c, t_part, cond_part, **kwargs):
            null_rows = kwargs["branch"] == 1
            seen.append((kwargs["step"], kwargs["branch"].tolist(), bool((cond_part[null_rows] == 0).all())))
            return self.inner.apply(c, t_part, cond_part, **kwargs)

    out = adapter_for(model, 2).sample(feats, PairedNoise(0, range(2)), Recording(parse_policy("tail:0.5,branch=uncond")))
    assert seen == [(s, [0, 0, 1, 1], True) for s in range(2)]
    assert out.trace.active_steps == [0, 1] and out.trace.mean_removed() > 0


def test_prefix_sharing_continues_the_trajectory_exactly(model):
    _, feats = inputs(1)
    adapter = adapter_for(model, 4)
    late = parse_policy("tail:0.5@last:1")
    full = adapter.sample(feats, PairedNoise(3, range(1)), late).samples
    base = adapter.sample(feats, PairedNoise(3, range(1)), keep_states=[3])
    state = base.states[3]
    assert state.x.shape == (1, 16, 204, 16) and state.x[:, 8:].abs().sum() > 0  # the history travels with x
    resumed = adapter.sample(feats, PairedNoise(3, range(1)), late, start=state)
    assert torch.equal(resumed.samples, full) and not torch.equal(full, base.samples)
    assert resumed.trace.active_steps == [3]
    with pytest.raises(ValueError, match="acts before step 3"):
        adapter.sample(feats, PairedNoise(3, range(1)), parse_policy("tail:0.5"), start=state)


def test_baseline_policy_is_bit_identical_and_pruning_changes_samples(model):
    _, feats = inputs(1)
    adapter = adapter_for(model, 2)

    def run(policy):
        return adapter.sample(feats, PairedNoise(5, range(1)), policy).samples

    plain = run(None)
    assert torch.equal(run(parse_policy("baseline")), plain)
    assert not torch.equal(run(parse_policy("tail:0.5")), plain)


def test_microbatches_give_the_same_rows(model):
    x, feats = inputs(2)
    with torch.no_grad():
        whole = adapter_for(model)._evaluate(x, feats, None, 0)
        chunked = MDSGenAdapter(model, "tiny", microbatch=3)._evaluate(x, feats, None, 0)  # rows 3 + 1 padded
    assert_matches_official(chunked, whole)


def test_mean_embedding_needs_the_task_clips_then_averages_their_video_part(model):
    adapter = adapter_for(model)
    with pytest.raises(RuntimeError, match="set_reference_conditions"):
        adapter.mean_embedding(torch.tensor(999.0))
    _, feats = inputs(3)
    adapter.set_reference_conditions(feats, chunk=2)
    t = torch.tensor(500.0)
    assert torch.allclose(adapter.mean_embedding(t), adapter.embed(feats, t).mean(0, keepdim=True), atol=1e-6)


def test_features_of_the_wrong_shape_are_refused(model):
    adapter = adapter_for(model)
    with pytest.raises(ValueError, match=r"\(N, 32, 512\).*got \(2, 40, 512\)"):
        adapter.embed(torch.zeros(2, 40, 512), 999.0)


def test_b2_preset_matches_official_layout_on_meta_device():
    official = json.loads((FIXTURES / "b2_keys.json").read_text())["keys"]
    with torch.device("meta"):
        net = MDSGen(MDSGEN_B_2)
    ours = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert ours == {k: v for k, v in official.items() if not k.startswith(MDSGEN_TRAINING_ONLY_PREFIXES)}
    ignored = sorted(k for k in official if k.startswith(MDSGEN_TRAINING_ONLY_PREFIXES))
    assert ignored[0] == "mask_token" and all(k.startswith("sideblocks.0.") for k in ignored[1:])
    assert official["t_embedder.mlp.0.weight"] == [768, 204]
    assert sum(v.numel() for k, v in net.state_dict().items() if not k.endswith("_index")) == 131_633_377  # 131.6M without side blocks (WAVE2.md 2.2)


def test_training_only_keys_need_naming_and_another_models_checkpoint_is_refused():
    state = official_state()
    with pytest.raises(CheckpointMismatchError, match="unexpected keys: mask_token, sideblocks"):
        load_strict(MDSGen(CONFIG), state, "mdsgen.pt")
    dit = DiT(DiTConfig(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=4))
    with pytest.raises(CheckpointMismatchError) as error:
        load_strict(MDSGen(CONFIG), dit.state_dict(), "DiT-tiny.pt", ignore_prefixes=MDSGEN_TRAINING_ONLY_PREFIXES)
    assert "DiT-tiny.pt" in str(error.value) and "missing keys: blocks.0.attn.rel_pos_bias" in str(error.value)
    assert "unexpected keys: y_embedder.embedding_table.weight" in str(error.value)


def test_embedders_only_load_gives_c(model):
    with torch.device("meta"):
        net = MDSGen(CONFIG)
    state = {k: v for k, v in official_state().items() if k.startswith(MDSGEN_EMBEDDER_PREFIXES)}
    load_strict(net, state, "fixture", only_prefixes=MDSGEN_EMBEDDER_PREFIXES)
    _, feats = inputs(2)
    t = torch.tensor([999.0, 3.5])
    assert torch.equal(adapter_for(net).embed(feats, t), adapter_for(model).embed(feats, t))
    assert net.blocks[0].attn.qkv.weight.is_meta
