"""The DDPM sampler: baseline bit-identity, paired noise, the policy hook in both guidance branches,
and the update itself against diffusers' DDPMScheduler."""
import numpy as np
import pytest
import torch

from condbench.adapters.ddpm import GaussianDiffusion, respaced_timesteps
from condbench.adapters.dit import DiTAdapter
from condbench.policies import parse_policy
from condbench.seeding import PairedNoise

LABELS = torch.tensor([0, 3, 7, 9, 1, 1])


def run(adapter, policy=None, indices=range(6), labels=LABELS):
    return adapter.sample(labels, PairedNoise(0, indices), None if policy is None else parse_policy(policy))


def test_baseline_policy_is_bit_identical_to_no_policy(tiny_adapter):
    plain = run(tiny_adapter).samples
    assert torch.equal(run(tiny_adapter, "baseline").samples, plain)
    # a mask that removes nothing goes through the whole masking path and must not move a bit either
    assert torch.equal(run(tiny_adapter, "tail:0").samples, plain)


def test_a_real_policy_changes_the_samples(tiny_adapter):
    plain = run(tiny_adapter).samples
    pruned = run(tiny_adapter, "tail:0.05")
    assert not torch.equal(pruned.samples, plain)
    assert pruned.trace.mean_removed() > 0


def test_noise_of_a_sample_depends_only_on_seed_and_index(tiny_adapter):
    whole = run(tiny_adapter, "tail:0.05").samples
    first = run(tiny_adapter, "tail:0.05", indices=range(0, 2), labels=LABELS[:2]).samples
    rest = run(tiny_adapter, "tail:0.05", indices=range(2, 6), labels=LABELS[2:]).samples
    # equal up to float rounding: matmuls may block differently for another batch size
    assert torch.allclose(torch.cat([first, rest]), whole, rtol=1e-5, atol=1e-5)
    other_seed = tiny_adapter.sample(LABELS, PairedNoise(1, range(6))).samples
    assert not torch.allclose(other_seed, run(tiny_adapter).samples)


def test_policy_acts_on_both_guidance_branches_by_default(tiny_adapter):
    seen = []
    original = tiny_adapter.model.forward

    def spy(x, t, y, hook=None):
        seen.append(y.clone())
        return original(x, t, y, hook)

    tiny_adapter.model.forward = spy
    run(tiny_adapter, "tail:0.05")
    assert all(torch.equal(y, torch.cat([LABELS, torch.full_like(LABELS, 10)])) for y in seen)
    both, cond, uncond = (run(tiny_adapter, s).samples for s in
                          ("tail:0.05", "tail:0.05,branch=cond", "tail:0.05,branch=uncond"))
    assert not torch.equal(both, cond) and not torch.equal(both, uncond) and not torch.equal(cond, uncond)


def test_schedule_steps_are_recorded(tiny_adapter):
    trace = run(tiny_adapter, "tail:0.05@last:3").trace
    assert trace.active_steps == [9, 10, 11]
    assert trace.removed_per_step[0] == 0 and trace.removed_per_step[11] > 0
    assert run(tiny_adapter, "tail:0.05@t0").trace.active_steps == [0]


def test_guidance_only_moves_the_first_cfg_channels(tiny_model):
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([500, 500]), torch.tensor([1, 2])
    adapter = DiTAdapter(tiny_model, num_steps=10, cfg_scale=4.0, cfg_channels=3)
    out = tiny_model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, 10)]))
    guided = adapter._guide(out, 2)
    cond, uncond = out[:2], out[2:]
    assert torch.allclose(guided[:, :3], uncond[:, :3] + 4.0 * (cond[:, :3] - uncond[:, :3]))
    assert torch.equal(guided[:, 3:], cond[:, 3:])  # channel 3 and the variance come from the cond branch


def test_respacing_matches_dit_space_timesteps():
    kept = respaced_timesteps(1000, 250)
    assert len(kept) == 250 and kept[0] == 0 and kept[-1] == 999
    assert kept[:5] == [0, 4, 8, 12, 16]
    assert respaced_timesteps(1000, 1000) == list(range(1000))
    with pytest.raises(ValueError):
        respaced_timesteps(1000, 0)


@pytest.mark.parametrize("num_steps", [1000, 50])
def test_ddpm_step_matches_diffusers_learned_range(num_steps):
    """One reverse step with learned-range variance equals diffusers' DDPMScheduler on the same noise."""
    diffusers = pytest.importorskip("diffusers")
    diffusion = GaussianDiffusion.dit(num_steps)
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.0001,
                                        beta_end=0.02, variance_type="learned_range", clip_sample=False)
    scheduler.set_timesteps(timesteps=[int(t) for t in diffusion.timestep_map[::-1]])
    generator = torch.Generator().manual_seed(0)
    for i in [num_steps - 1, num_steps // 2, 1]:
        t = int(diffusion.timestep_map[i])
        x = torch.randn(3, 4, 8, 8, generator=generator)
        model_out = torch.cat([torch.randn(3, 4, 8, 8, generator=generator),
                               torch.rand(3, 4, 8, 8, generator=generator) * 2 - 1], dim=1)
        noise = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(i))
        ours = diffusion.p_step(model_out, x, torch.full((3,), i), noise)
        theirs = scheduler.step(model_out, t, x, generator=torch.Generator().manual_seed(i)).prev_sample
        # diffusers keeps its schedule in float32, DiT in float64: agreement to float32 precision
        assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4), (i, (ours - theirs).abs().max())
