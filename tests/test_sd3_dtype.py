"""SD3 runs in the dtype its record names: the loader casts what diffusers leaves in another dtype (without
accelerate, diffusers loads SD3's transformer in float32 whatever torch_dtype asks) and describe() names each
network's dtype where they differ. Tiny random components saved in the diffusers layout, loaded by the real loader."""
from __future__ import annotations

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
import diffusers.utils.import_utils as diffusers_imports  # noqa: E402
from diffusers import AutoencoderKL, SD3Transformer2DModel  # noqa: E402

from condbench.adapters.sd3 import SD3_RELEASES, in_dtype, load_sd3, parameter_dtypes  # noqa: E402

from .test_sd3 import embedding_table, make_adapter, save_tiny_pipeline, tiny_vae  # noqa: E402

SD35 = next(r for r in SD3_RELEASES if r.name == "sd3.5-medium")  # its model card's dtype: bfloat16


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_pipeline(tmp_path_factory.mktemp("sd35-tiny"))


@pytest.fixture
def without_accelerate(monkeypatch):
    """diffusers believes accelerate is absent, as it decides it: ``is_accelerate_available()`` reads this flag."""
    monkeypatch.setattr(diffusers_imports, "_accelerate_available", False)


def load(folder, **options):
    return load_sd3(SD35, folder, encoder=embedding_table(), **options)


def test_without_accelerate_diffusers_alone_leaves_the_transformer_in_float32(folder, without_accelerate):
    """The condition the loader must correct, shown on diffusers itself (the VAE takes the dtype)."""
    transformer = SD3Transformer2DModel.from_pretrained(folder, subfolder="transformer", torch_dtype=torch.bfloat16)
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=torch.bfloat16)
    assert parameter_dtypes(transformer) == {torch.float32} and parameter_dtypes(vae) == {torch.bfloat16}


def test_without_accelerate_every_network_is_in_the_release_dtype_and_recorded_so(folder, without_accelerate):
    adapter = load(folder)
    assert parameter_dtypes(adapter.transformer) == parameter_dtypes(adapter.vae) == {torch.bfloat16}
    assert {b.dtype for b in adapter.transformer.buffers() if b.is_floating_point()} <= {torch.bfloat16}
    sampler = adapter.describe()["sampler"]
    assert sampler["dtype"] == "torch.bfloat16" and "network_dtypes" not in sampler


def test_the_cast_networks_equal_those_diffusers_loads_with_accelerate(folder, monkeypatch):
    with_accelerate = load(folder)
    monkeypatch.setattr(diffusers_imports, "_accelerate_available", False)
    cast = load(folder)
    for ours, theirs in ((cast.transformer, with_accelerate.transformer), (cast.vae, with_accelerate.vae)):
        theirs_state = theirs.state_dict()
        assert all(torch.equal(value, theirs_state[key]) and value.dtype == theirs_state[key].dtype
                   for key, value in ours.state_dict().items())


def test_networks_in_different_dtypes_are_each_recorded_and_float32_records_are_unchanged():
    adapter = make_adapter(sd35=True)
    float32 = adapter.describe()["sampler"]
    assert float32["dtype"] == "torch.float32"
    assert set(float32) == {"name", "scheduler_config", "num_steps", "cfg_scale", "negative_prompt", "height",
                            "width", "dtype", "prefix_sharing"}  # the keys records (and cache keys) always had
    adapter.vae = tiny_vae().to(torch.bfloat16)
    mixed = adapter.describe()["sampler"]
    assert mixed["network_dtypes"] == {"transformer": "torch.float32", "vae": "torch.bfloat16"}


def test_a_network_that_keeps_modules_in_float32_is_refused_not_cast(tmp_path):
    """transformers' T5 keeps ``wo`` in float32 under float16: that network counts as float16; a wholly float32
    one asked for float16 is refused with the remedy, since casting it would undo the kept modules."""
    import transformers

    transformers.T5EncoderModel(transformers.T5Config(vocab_size=32, d_model=8, d_kv=4, d_ff=16, num_layers=1,
                                                      num_heads=2)).save_pretrained(tmp_path / "t5")
    kept = transformers.T5EncoderModel.from_pretrained(tmp_path / "t5", torch_dtype=torch.float16)
    assert kept.encoder.block[0].layer[1].DenseReluDense.wo.weight.dtype == torch.float32
    assert in_dtype(kept, torch.float16, "text_encoder_3") is kept and parameter_dtypes(kept) == {torch.float16}
    whole = transformers.T5EncoderModel.from_pretrained(tmp_path / "t5", torch_dtype=torch.float32)
    with pytest.raises(ValueError, match="text_encoder_3 loaded in torch.float32, not torch.float16.*install accelerate"):
        in_dtype(whole, torch.float16, "text_encoder_3")
