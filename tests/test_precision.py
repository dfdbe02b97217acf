"""The ``precision`` setting (fp32 | tf32 | bf16) on tiny random networks, on the CPU.

fp32 is the network called directly, bit for bit; tf32 changes only CUDA kernels, so on the CPU it equals fp32
bit for bit and leaves PyTorch's flags as it found them; bf16 runs the layers under autocast but forms c (and
applies the policy to it) in float32, returns float32, and stays within the stated tolerances of fp32.
"""
import pytest
import torch

from condbench.adapters.dit import DiTAdapter
from condbench.adapters.mdsgen import MDSGenAdapter
from condbench.adapters.mdsgen_model import MDSGen, MDSGenConfig
from condbench.adapters.uvit_model import UViT, UViTConfig
from condbench.policies import parse_policy
from condbench.precision import Denoiser, check_precision
from condbench.seeding import PairedNoise
from condbench.suites import Suite, SuiteError, load_suite

from .conftest import random_dit

# bf16 keeps 8 bits of mantissa (relative rounding 2^-9 ~ 2e-3); through a few layers of a tiny random network
# the measured error of one forward is ~5e-3 of the output's scale, of a 12-step sampler's latents ~1e-2.
BF16_FORWARD_TOLERANCE = 2e-2
BF16_SAMPLES_TOLERANCE = 5e-2


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """max |ours - reference| / max |reference|."""
    return float((ours - reference).abs().max() / reference.abs().max())


def inputs(n: int = 6):
    torch.manual_seed(1)
    return torch.randn(n, 4, 8, 8), torch.randint(0, 1000, (n,)), torch.randint(0, 10, (n,))


def test_precision_names_are_checked():
    assert check_precision("bf16") == "bf16"
    with pytest.raises(ValueError, match="unknown precision 'fp16'; choose one of fp32, tf32, bf16, official"):
        Denoiser(random_dit(), "fp16")


def test_fp32_denoiser_is_the_network_bit_for_bit():
    model, (x, t, y) = random_dit(), inputs()
    with torch.no_grad():
        assert torch.equal(Denoiser(model, "fp32")(x, t, y, None), model(x, t, y))


def test_tf32_on_the_cpu_is_fp32_bit_for_bit_and_restores_the_flags():
    model, (x, t, y) = random_dit(), inputs()
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with torch.no_grad():
        assert torch.equal(Denoiser(model, "tf32")(x, t, y, None), model(x, t, y))
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


def test_bf16_forms_c_in_float32_and_returns_float32_close_to_fp32():
    model, (x, t, y) = random_dit(), inputs()
    seen = {}

    def hook(c, t_part, cond_part):
        seen.update(c=c.clone(), dtypes={c.dtype, t_part.dtype, cond_part.dtype})
        return c

    with torch.no_grad():
        reference = model(x, t, y)
        out = Denoiser(model, "bf16")(x, t, y, hook)
        c_fp32 = model.conditional_vector(t, y)
    assert seen["dtypes"] == {torch.float32} and torch.equal(seen["c"], c_fp32)  # c itself is exact
    assert out.dtype == torch.float32
    assert 0 < relative_error(out, reference) < BF16_FORWARD_TOLERANCE  # > 0: bf16 really ran


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_sampler_with_a_policy_stays_close_to_fp32(precision):
    model, (_, _, y) = random_dit(), inputs(4)
    policy = parse_policy("tail:0.1")
    runs = {}
    for name in ("fp32", precision):
        adapter = DiTAdapter(model, "tiny-dit", num_steps=12, cfg_scale=1.5, cfg_channels=3, precision=name)
        runs[name] = adapter.sample(y, PairedNoise(0, range(4)), policy)
    ours, reference = runs[precision], runs["fp32"]
    assert ours.samples.dtype == torch.float32
    error = relative_error(ours.samples, reference.samples)
    if precision == "tf32":
        assert error == 0.0 and ours.trace.removed_per_step == reference.trace.removed_per_step
    else:
        assert 0 < error < BF16_SAMPLES_TOLERANCE


def test_uvit_tokens_stay_float32_under_bf16():
    torch.manual_seed(0)
    model = UViT(UViTConfig(img_size=8, patch_size=2, in_chans=4, embed_dim=32, depth=3, num_heads=4,
                            num_classes=11)).eval()
    x, t, y = torch.randn(3, 4, 8, 8), torch.tensor([10.0, 500.0, 990.0]), torch.tensor([1, 2, 10])
    dtypes = []
    hook = lambda c, t_part, cond_part: dtypes.append(c.dtype) or c  # noqa: E731
    with torch.no_grad():
        out = Denoiser(model, "bf16")(x, t, y, hook)
        reference = model(x, t, y)
    assert dtypes == [torch.float32] and out.dtype == torch.float32
    assert 0 < relative_error(out, reference) < BF16_FORWARD_TOLERANCE


def tiny_mdsgen_model() -> MDSGen:
    """A tiny MDSGen with every parameter random (official inits zero the adaLN layers)."""
    torch.manual_seed(0)
    config = MDSGenConfig(latent_size=(8, 4), in_channels=2, hidden_size=32, depth=3, num_heads=4, decode_layer=1,
                          frequency_embedding_size=32, num_frames=4, feature_dim=16)
    model = MDSGen(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return model


def test_mdsgen_bf16_is_close_to_fp32():
    model = tiny_mdsgen_model()
    feats = torch.randn(2, 4, 16)
    outputs = {p: MDSGenAdapter(model, "tiny-mdsgen", num_steps=5, precision=p)
               .sample(feats, PairedNoise(0, range(2))).samples for p in ("fp32", "bf16")}
    assert 0 < relative_error(outputs["bf16"], outputs["fp32"]) < BF16_SAMPLES_TOLERANCE


def test_precision_and_compile_enter_the_description_only_when_not_the_default():
    model = random_dit()
    plain = DiTAdapter(model, "tiny-dit", num_steps=12).describe()["sampler"]
    assert "precision" not in plain and "compile" not in plain  # caches made before the setting stay valid
    fast = DiTAdapter(model, "tiny-dit", num_steps=12, precision="bf16", compile=True).describe()["sampler"]
    assert fast["precision"] == "bf16" and fast["compile"] is True


def test_suite_key_reaches_the_adapter_options(tmp_path):
    suite = load_suite("quickstart")
    assert suite.precision == "fp32" and "precision" not in suite.adapter_options("dit-digits")
    fast = Suite(**{**suite.__dict__, "precision": "bf16", "compile": True})
    assert fast.adapter_options("dit-digits") == {"precision": "bf16", "compile": True}
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ntask: digits\nmodels: [dit-digits]\npolicies: [baseline]\nprecision: fp16\n")
    with pytest.raises(SuiteError, match="key 'precision'.*'fp32', 'tf32', 'bf16' or 'official'"):
        load_suite(str(path))


def test_sd3_pipelines_refuse_the_precision_setting_and_name_their_dtype_option():
    from condbench.adapters.sd3 import SD3_RELEASES, load_sd3

    with pytest.raises(ValueError, match="runs in its model option dtype"):
        load_sd3(SD3_RELEASES[0], precision="bf16")
