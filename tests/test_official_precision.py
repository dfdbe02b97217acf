"""``precision: official``: the arithmetic of each release's own sampling script, on tiny random networks, on the CPU.

X-MDPT's and MDSGen's official forwards run whole under bf16 autocast, c included (MDSGen also draws its noise in
bf16); DiT's and MDT's scripts turn TF32 on. On the CPU the bf16 autocast is CPU autocast: these tests check that
c is formed (and the pair embedded) under it exactly as a direct autocast computation forms it, that the analysis
sees that same c, and that releases whose official arithmetic condbench does not know refuse the setting.
"""
import pytest
import torch

from condbench.adapters.dit import DiTAdapter
from condbench.adapters.mdsgen import MDSGenAdapter
from condbench.adapters.mdsgen_model import MDSGen
from condbench.adapters.sit import TransportAdapter
from condbench.seeding import PairedNoise

from .conftest import random_dit
from .test_precision import tiny_mdsgen_model
from .test_xmdpt_parity import META, adapter_for, cond, golden, model  # noqa: F401 (fixtures)


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """||ours - reference|| / ||reference||."""
    return float((ours - reference).norm() / reference.norm())


def bf16_autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


@pytest.fixture(scope="module")
def tiny_mdsgen() -> MDSGen:
    return tiny_mdsgen_model()


def test_official_is_recorded_as_the_arithmetic_it_means(tiny_mdsgen, model):  # noqa: F811
    dit = DiTAdapter(random_dit(), "tiny-dit", num_steps=4, precision="official").describe()["sampler"]
    assert dit == DiTAdapter(random_dit(), "tiny-dit", num_steps=4, precision="tf32").describe()["sampler"]
    mdsgen = MDSGenAdapter(tiny_mdsgen, "tiny-mdsgen", num_steps=3, precision="official").describe()["sampler"]
    assert mdsgen["precision"] == "bf16-c" and mdsgen["noise"].startswith("bf16")
    plain = MDSGenAdapter(tiny_mdsgen, "tiny-mdsgen", num_steps=3).describe()["sampler"]
    assert "precision" not in plain and plain["noise"].startswith("float32")  # fp32 keys are unchanged
    assert adapter_for(model, precision="official").describe()["sampler"]["precision"] == "bf16-c"


def test_official_is_refused_where_the_releases_arithmetic_is_unknown():
    with pytest.raises(ValueError, match="tiny-sit: precision 'official' is defined only for.*choose fp32, tf32 or bf16"):
        TransportAdapter(random_dit(), "tiny-sit", precision="official")


def test_official_mdsgen_forms_c_under_bf16_autocast_and_draws_bf16_noise(tiny_mdsgen):
    feats = torch.randn(2, 4, 16)
    adapter = MDSGenAdapter(tiny_mdsgen, "tiny-mdsgen", num_steps=3, precision="official")
    seen = []
    out = adapter.sample(feats, PairedNoise(0, range(2)), keep_states=[0])
    t = adapter.sampler_timesteps()[1].expand(2)
    x = torch.randn(2, 2, 8, 4)
    with torch.no_grad():
        adapter.denoise(x, t, feats, hook=lambda c, t_part, y_part: seen.append(c) or c)
        with bf16_autocast():
            t_part, y_part = tiny_mdsgen.embed_parts(t, feats)
            official_c = (t_part + y_part).float()
        fp32_c = MDSGenAdapter(tiny_mdsgen, "tiny-mdsgen", num_steps=3).embed(feats, t)
    assert t_part.dtype == torch.bfloat16  # the timestep part really is rounded, as under CUDA autocast
    assert torch.equal(seen[0].float(), official_c) and torch.equal(adapter.embed(feats, t), official_c)
    assert 0 < relative_error(official_c, fp32_c) < 2e-2
    noise = PairedNoise(0, range(2)).draw(adapter.latent_shape, torch.bfloat16).float()
    assert torch.equal(out.states[0].x[:, :2], noise)  # the initial noise, drawn in bf16
    assert not torch.equal(noise, PairedNoise(0, range(2)).draw(adapter.latent_shape))


def test_official_xmdpt_embeds_the_pair_and_forms_c_under_bf16_autocast(model, cond, golden):  # noqa: F811
    adapter, fp32 = adapter_for(model, precision="official"), adapter_for(model)
    t = golden["t"]
    with torch.no_grad():
        with bf16_autocast():
            y = model.condition_embedding(*(cond[k] for k in ("pose_features", "source_features", "source_latent")))
            official_c = (model.t_embedder(t) + y).float()
        seen = []
        out = adapter.denoise(golden["x"], t, cond, hook=lambda c, t_part, y_part: seen.append(c) or c)
        reference = fp32.denoise(golden["x"], t, cond)
    assert torch.equal(adapter.embed(cond, t), official_c) and torch.equal(seen[0].float(), official_c)
    assert 0 < relative_error(official_c, fp32.embed(cond, t)) < 2e-2
    assert out.dtype == torch.float32 and 0 < relative_error(out, reference) < 5e-2


def test_xmdpt_denoise_runs_the_suites_precision_like_the_sampler(model, cond, golden):  # noqa: F811
    """The block-diversity probe and the export's reader call ``denoise``: it must be the network the sampler
    calls (precision, compile), not the raw float32 module."""
    adapter = adapter_for(model, precision="bf16")
    t = golden["t"]
    with torch.no_grad():
        y = adapter.condition_embedding(cond)
        assert torch.equal(adapter.denoise(golden["x"], t, cond), adapter.network(golden["x"], t, y, None))
        assert not torch.equal(adapter.denoise(golden["x"], t, cond), model(golden["x"], t, y))
