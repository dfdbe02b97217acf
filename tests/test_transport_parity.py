"""SiT, REPA, MG and LightningDiT's sampler against the official code, on tiny random networks.

Fixture ``tests/fixtures/transport/`` made by ``tools/golden/make_transport.py`` from willisma/SiT
(947f95bd3a510e9af441d38c1e9f72e0eee873c5), sihyun-yu/REPA (67f714503e3892f993844aab088ffc5791c92613) and
hustvl/LightningDiT (2725fed42a14898744433809949834e26957bcdd); MG's network is SiT's with the forced null
row of tzco/diffusion-wo-cfg (see the script). Command::

    python tools/golden/make_transport.py --sit /work/ref/SiT --repa /work/ref/REPA \\
        --lightningdit /work/ref/LightningDiT --commits SIT,REPA,LIGHTNINGDIT

The official weights load into condbench's DiT network through the checkpoint loader (REPA's projector
keys ignored, MG's ``ema`` picked over ``model``); c and the velocity agree with the official ones to
atol 1e-5 (float32), and each sampler's final latents, on condbench's paired noise, to atol 1e-5 + rtol 1e-5.
LightningDiT's sampler runs on the MG-layout DiT and on condbench's LightningDiT network (tiny official
LightningDiT with the released options, ``lightningdit.safetensors``).
"""
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from condbench.adapters.dit_model import DiT, DiTConfig
from condbench.adapters.loading import load_network
from condbench.adapters.sit import (LIGHTNINGDIT_ODE, MG_SDE, REPA_SDE, SIT_ODE, SIT_ODE_EULER, SIT_SDE,
                                    TransportAdapter)
from condbench.policies import parse_policy
from condbench.seeding import PairedNoise

FIXTURES = Path(__file__).parent / "fixtures" / "transport"
TINY = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=16, depth=2, num_heads=2, num_classes=10)
LABELS = torch.tensor([1, 7, 3])


@pytest.fixture(scope="module")
def expected() -> dict[str, torch.Tensor]:
    return load_file(FIXTURES / "expected.safetensors")


def network(name: str, state_keys: tuple = ("ema", "model")) -> DiT:
    """The fixture's official weights in condbench's DiT: SiT with learned sigma, REPA and MG without."""
    config = DiTConfig(**TINY, class_dropout_prob=0.1, learn_sigma=name == "sit")
    file = {"sit": "sit.safetensors", "repa": "repa.safetensors", "mg": "mg.pt"}[name]
    options = {"repa": dict(ignore_prefixes=("projectors.",)), "mg": dict(state_keys=state_keys)}.get(name, {})
    model, _ = load_network(lambda: DiT(config), FIXTURES / file, **options)
    return model


ADAPTERS = {  # fixture entry -> (network, the official default sampler at the fixture's short length)
    "sit_sde": ("sit", SIT_SDE, 8),
    "sit_ode_euler": ("sit", SIT_ODE_EULER, 8),
    "sit_ode_dopri5": ("sit", SIT_ODE, 8),
    "repa_sde": ("repa", REPA_SDE, 8),
    "mg_sde": ("mg", MG_SDE, 8),
    "lightningdit_ode": ("mg", LIGHTNINGDIT_ODE, 10),
}


def test_lightningdit_sampler_on_the_lightningdit_network(expected):
    """The sampler on condbench's LightningDiT network (released options, 8 latent channels guided on [:3])."""
    from condbench.adapters.lightningdit_model import LightningDiT, LightningDiTConfig

    config = LightningDiTConfig(input_size=4, patch_size=1, in_channels=8, hidden_size=16, depth=1, num_heads=2,
                                num_classes=10)
    model, _ = load_network(lambda: LightningDiT(config), FIXTURES / "lightningdit.safetensors")
    ours = run(TransportAdapter(model, "lightningdit", spec=LIGHTNINGDIT_ODE, num_steps=10)).samples
    theirs = expected["lightningdit_net_ode/final"]
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-5), (ours - theirs).abs().max()


def adapter(entry: str) -> TransportAdapter:
    name, spec, steps = ADAPTERS[entry]
    return TransportAdapter(network(name), entry, spec=spec, num_steps=steps)


def run(a: TransportAdapter, policy=None, **kwargs):
    return a.sample(LABELS, PairedNoise(0, [0, 1, 2]), None if policy is None else parse_policy(policy), **kwargs)


@pytest.mark.parametrize("name", ["sit", "repa", "mg"])
def test_c_and_velocity_match_the_official_networks(name, expected):
    prefix = "sit" if name == "sit" else "repa"  # MG is fed REPA's inputs
    x, t, y = (expected[f"{prefix}/{k}"] for k in ("x", "t", "y"))
    model = network(name)
    with torch.no_grad():
        t_part, y_part = model.embed_parts(t, y)
        out = model(x, t, y)
    assert torch.allclose(t_part + y_part, expected[f"{name}/c"], atol=1e-5, rtol=0)
    velocity = out[:, :4]  # SiT's network also returns the unused learned-sigma half
    assert torch.allclose(velocity, expected[f"{name}/out"], atol=1e-5, rtol=0), (velocity - expected[f"{name}/out"]).abs().max()
    assert expected[f"{name}/out"].abs().mean() > 0.05  # a non-trivial output (no zero-initialised layer)


def test_repa_projectors_are_training_only_and_mg_loads_ema(expected):
    config = DiTConfig(**TINY, class_dropout_prob=0.1, learn_sigma=False)
    with pytest.raises(Exception, match="projectors"):
        load_network(lambda: DiT(config), FIXTURES / "repa.safetensors")
    model_weights = network("mg", state_keys=("model",))
    with torch.no_grad():
        t_part, y_part = model_weights.embed_parts(expected["repa/t"], expected["repa/y"])
    assert not torch.allclose(t_part + y_part, expected["mg/c"], atol=1e-3)


# dopri5 chooses its steps from error estimates, so it amplifies float rounding: on the fixture's network, weights
# perturbed by 1e-7 (relative) move its final latents by 5e-5 (measured on an AMD EPYC CPU, where the fixture made
# elsewhere differs by 5.1e-5). Its bound is set from that sensitivity; every fixed-step sampler is held to 1e-5.
TOLERANCE = {"sit_ode_dopri5": 2e-4}


@pytest.mark.parametrize("entry", list(ADAPTERS))
def test_final_latents_match_the_official_sampler(entry, expected):
    ours = run(adapter(entry)).samples
    theirs = expected[f"{entry}/final"]
    assert ours.dtype == torch.float32 and ours.shape == theirs.shape
    tolerance = TOLERANCE.get(entry, 1e-5)
    assert torch.allclose(ours, theirs, atol=tolerance, rtol=1e-5), (ours - theirs).abs().max()


def test_time_units_grids_and_guidance_intervals():
    sit, repa, lightning = adapter("sit_sde"), adapter("repa_sde"), adapter("lightningdit_ode")
    assert sit.sampler_steps == 8 and sit.sampler_timesteps()[0] == 0  # SiT: 0 is noise; last point 0.96
    assert abs(float(sit.sampler_timesteps()[-1]) - 0.96) < 1e-6
    assert repa.sampler_steps == 8 and repa.sampler_timesteps()[0] == 1.0  # REPA: 1 is noise, last t 0.04
    assert abs(float(repa.sampler_timesteps()[-1]) - 0.04) < 1e-12
    assert [repa.guidance_scale(s) for s in range(8)] == [1.0] * 3 + [1.8] * 5  # t <= 0.7 only
    assert [lightning.guidance_scale(s) for s in range(9)] == [1.0] * 3 + [6.7] * 6  # t >= 0.125 only
    assert lightning.sampler_steps == 9  # 10 grid points
    assert sit.noise_draws_before(8) == 7 and repa.noise_draws_before(3) == 3 and lightning.noise_draws_before(5) == 0
    run(repa)
    assert repa.denoiser_evaluations == 3 * (3 + 2 * 5)  # no unconditional branch outside the interval


@pytest.mark.parametrize("entry", ["sit_sde", "repa_sde", "lightningdit_ode"])
def test_baseline_is_bit_identical_and_policies_act(entry):
    a = adapter(entry)
    plain = run(a).samples
    assert torch.equal(run(a, "baseline").samples, plain)
    assert torch.equal(run(a, "tail:0").samples, plain)
    pruned = run(a, "tail:0.05")
    assert not torch.equal(pruned.samples, plain) and pruned.trace.mean_removed() > 0


@pytest.mark.parametrize("entry", ["sit_sde", "repa_sde", "lightningdit_ode"])
def test_resuming_from_a_kept_state_is_bit_identical(entry):
    a = adapter(entry)
    last = a.sampler_steps - 2
    shared = run(a, keep_states=[last])
    assert shared.states[last].step == last
    whole = run(a, "tail:0.05@last:2")
    resumed = run(a, "tail:0.05@last:2", start=shared.states[last])
    assert torch.equal(resumed.samples, whole.samples)
    assert resumed.trace.active_steps == whole.trace.active_steps == [last, last + 1]
    with pytest.raises(ValueError):
        run(a, "tail:0.05", start=shared.states[last])  # acts in the shared prefix


def test_dopri5_refuses_what_needs_fixed_steps():
    a = adapter("sit_ode_dopri5")
    with pytest.raises(ValueError, match="dopri5"):
        run(a, "tail:0.05")


def test_describe_names_the_sampler():
    d = adapter("lightningdit_ode").describe()
    assert d["sampler"]["timestep_shift"] == 0.3 and d["sampler"]["guidance_interval"] == [0.125, 1.0]
    assert d["sampler"]["cfg_channels"] == 3 and d["model_config"]["learn_sigma"] is False
    assert adapter("repa_sde").describe()["sampler"]["cfg_channels"] == 4  # REPA guides every channel
