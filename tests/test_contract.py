"""The adapter contract: every built-in adapter honours it on its tiny configuration, and an adapter broken on
purpose breaks exactly the rule it breaks, named in the message."""
from __future__ import annotations

import pytest
import torch

from condbench.adapters.base import EmbeddingParts
from condbench.adapters.dit import DiTAdapter
from condbench.adapters.dit_model import DiT
from condbench.cli import main
from condbench import contract
from condbench.contract import RULES, ContractCase, RuleResult
from condbench.registry import MODELS, ModelEntry, model_entry
from condbench.testing import ContractError, assert_adapter_contract, check_adapter_contract

BUILT_IN = {name: entry for name, entry in MODELS.items() if entry.origin == "built-in"}
WITH_CASE = [name for name, entry in BUILT_IN.items() if entry.contract_case is not None]


# decoders that need their released files (VA-VAE, U-ViT's autoencoder, AudioLDM): the decode rule is skipped
NO_TINY_DECODER = ("lightningdit-xl-1", "uvit-h-2", "mdsgen-b-2")


@pytest.fixture(scope="module")
def tiny_sd_vae(tmp_path_factory):
    """A diffusers AutoencoderKL folder with SD's 8x upsampling at a tiny width (random weights)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("vae")
    AutoencoderKL(block_out_channels=(4,) * 4, down_block_types=("DownEncoderBlock2D",) * 4,
                  up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=2,
                  layers_per_block=1).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("name", WITH_CASE)
def test_every_built_in_adapter_honours_the_contract(name, tiny_sd_vae, isolated_cache):
    """ImageNet latent models and X-MDPT decode with a tiny SD-VAE where they take one; SD3 cases carry their own tiny
    pipeline folder."""
    entry = model_entry(name)
    sd_vae = entry.task in ("imagenet", "pose") and name not in NO_TINY_DECODER
    case = entry.contract_case(None, **({"decoder": str(tiny_sd_vae)} if sd_vae else {}))
    results = {r.rule: r for r in assert_adapter_contract(case)}
    assert list(results) == list(RULES)
    skipped = {rule for rule, r in results.items() if r.passed is None}
    assert skipped == ({"decode"} if name in NO_TINY_DECODER else set()), results


def test_every_built_in_adapter_has_a_contract_case():
    """X-MDPT's DeepFashion releases too: random pair conditions at a tiny size (their decoder, the released VAE
    folder, is skipped by name when absent)."""
    assert sorted(set(BUILT_IN) - set(WITH_CASE)) == []


# --- adapters broken on purpose, one per rule (all on the shipped digits DiT, 3 steps) ---------------------------

class DoubleC(DiTAdapter):
    def embed_parts(self, cond, t):
        parts = super().embed_parts(cond, t)
        return EmbeddingParts(parts.c.double(), parts.t.double(), parts.cond.double())


class PartsDoNotSum(DiTAdapter):
    def embed_parts(self, cond, t):
        parts = super().embed_parts(cond, t)
        return EmbeddingParts(parts.c, parts.t, parts.cond * 2)


class SkipsTheLastStep(DiTAdapter):
    def _evaluate(self, x, t, y, hooks, step):
        if step == self.sampler_steps - 1:
            hooks.trace.removed_per_step.append(0.0)
            hooks = None
        return super()._evaluate(x, t, y, hooks, step)


class IgnoresTheHook(DiT):
    """Calls the hook but feeds the blocks the original c."""

    def conditional_vector(self, t, y, hook=None):
        c = super().conditional_vector(t, y)
        if hook is not None:
            hook(c, *self.embed_parts(t, y))
        return c


class BaselineDiffers(DiTAdapter):
    def sample(self, cond, noise, policy=None, progress=None, **options):
        out = super().sample(cond, noise, policy, progress, **options)
        if policy is not None and policy.is_baseline:
            out.samples = out.samples + 1e-6
        return out


class NoiseFromTheGlobalGenerator(DiTAdapter):
    def _begin(self, cond, noise, policy, start):
        y, x, first, hooks = super()._begin(cond, noise, policy, start)
        return y, torch.randn_like(x), first, hooks


class ForgetsTheNoiseItDrew(DiTAdapter):
    """Resumes from a kept state with the noise stream at its start (DDPM draws noise at every step)."""

    def noise_draws_before(self, step):
        return 0


class OneTraceForAGroup(DiTAdapter):
    """Hands back a single trace where several policies were sampled together (a hand-made trace, say)."""

    def sample(self, cond, noise, policy=None, progress=None, **options):
        out = super().sample(cond, noise, policy, progress, **options)
        out.trace = out.trace[0] if isinstance(out.trace, list) else out.trace
        return out


class NoCheckpointHash(DiTAdapter):
    def describe(self):
        return {k: v for k, v in super().describe().items() if k != "checkpoint"}


def broken_case(kind: type = DiTAdapter, network: type = DiT, **options) -> ContractCase:
    case = model_entry("dit-digits").contract_case(None)
    model = case.adapter.model
    if network is not DiT:
        rebuilt = network(model.config)
        rebuilt.load_state_dict(model.state_dict())
        model = rebuilt
    settings = {"num_steps": 3, "cfg_scale": case.adapter.cfg_scale, "cfg_channels": case.adapter.cfg_channels,
                "checkpoint": case.adapter.checkpoint, **options}
    case.adapter = kind(model, "broken-digits", **settings)
    return case


# PartsDoNotSum's embed_parts also disagrees with the parts its network hands the hook; noise from the global
# generator also makes two runs (baseline, no policy) differ: two rules see each of these
# A sampler that breaks the trace, the baseline or the noise also breaks sampling policies together.
ALSO_BROKEN = {"parts-sum": {"hook-every-step"}, "hook-every-step": {"policies-together"},
               "baseline-identical": {"policies-together"}, "noise-paired": {"baseline-identical", "policies-together", "stored-round-trip"}}


@pytest.mark.parametrize("rule, case", [
    ("c-shape", lambda: broken_case(DoubleC)),
    ("parts-sum", lambda: broken_case(PartsDoNotSum)),
    ("hook-every-step", lambda: broken_case(SkipsTheLastStep)),
    ("hook-reaches-network", lambda: broken_case(network=IgnoresTheHook)),
    ("baseline-identical", lambda: broken_case(BaselineDiffers)),
    ("noise-paired", lambda: broken_case(NoiseFromTheGlobalGenerator)),
    ("policies-together", lambda: broken_case(OneTraceForAGroup)),
    ("stored-round-trip", lambda: broken_case(ForgetsTheNoiseItDrew)),
    ("describe", lambda: broken_case(NoCheckpointHash)),
    ("decode", lambda: broken_case(decoder=lambda samples: samples)),  # model space [-1, 1], not images in [0, 1]
])
def test_an_adapter_broken_on_purpose_breaks_the_rule_named(rule, case):
    case = case()
    broken = {r.rule for r in check_adapter_contract(case) if r.passed is False}
    assert broken == {rule} | ALSO_BROKEN.get(rule, set())
    with pytest.raises(ContractError, match=f"rule '{rule}' broken"):
        assert_adapter_contract(case)


def test_check_adapter_cli_passes_and_names_the_broken_rule(monkeypatch, capsys):
    assert main(["check-adapter", "dit-digits"]) == 0
    assert "dit-digits: honours the adapter contract (10 of 10 rules checked)" in capsys.readouterr().out
    entry = model_entry("dit-digits")
    monkeypatch.setitem(MODELS, "broken-digits", ModelEntry(
        "broken-digits", "digits", 96, "-", "-", entry.factory,
        contract_case=lambda ckpt=None, **_: broken_case(PartsDoNotSum)))
    assert main(["check-adapter", "broken-digits"]) == 1
    out = capsys.readouterr().out
    assert "FAIL parts-sum" in out and "broken-digits: breaks rule(s) parts-sum" in out
    monkeypatch.setitem(MODELS, "no-case", ModelEntry("no-case", "digits", 96, "-", "-", entry.factory))
    assert main(["check-adapter", "no-case"]) == 2
    assert "gives no contract case" in capsys.readouterr().err


def bf16_sd35_case() -> ContractCase:
    """A tiny SD3.5 pipeline in bfloat16, the release's dtype (tests/test_sd3.py's random components)."""
    pytest.importorskip("diffusers")
    from .test_runner_dtypes import tiny_sd35
    from .test_sd3 import PROMPTS

    return ContractCase(tiny_sd35(torch.bfloat16), PROMPTS, (3, 8, 8))


def stored_round_trip(case: ContractCase) -> RuleResult:
    return next(r for r in check_adapter_contract(case) if r.rule == "stored-round-trip")


def test_a_bfloat16_adapter_round_trips_what_the_runner_stores():
    result = stored_round_trip(bf16_sd35_case())
    assert result.passed is True and result.detail.startswith("state torch.bfloat16 at step 2 bit for bit"), result


def test_the_round_trip_rule_catches_the_runner_s_old_numpy_conversion(monkeypatch):
    """The runner stored kept states with ``x.cpu().numpy()`` until bfloat16 models crashed the text suite."""
    monkeypatch.setattr(contract, "state_arrays", lambda x: {"x": x.cpu().numpy()})
    result = stored_round_trip(bf16_sd35_case())
    assert result.passed is False and "Got unsupported ScalarType BFloat16" in result.detail, result
