"""Loading checkpoints: the shipped one, official-layout files, and every kind of bad file."""
import os

import pytest
import torch

import condbench
from condbench.checkpoints import (CheckpointError, CheckpointMismatchError, CheckpointNotFoundError, load_state_dict,
                                   save_safetensors)
from condbench.tasks.digits import DIGITS_DIT_CONFIG, DigitsClassifier

from .conftest import TINY, random_dit


def test_load_adapter_embed_returns_n_by_d():
    adapter = condbench.load_adapter("dit-digits")
    c = adapter.embed(torch.arange(10), 999)
    assert c.shape == (10, DIGITS_DIT_CONFIG.hidden_size)
    parts = adapter.embed_parts(torch.arange(10), 999)
    assert torch.equal(c, parts.c) and torch.allclose(c, parts.t + parts.cond)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_official_layout_files_load(tmp_path, suffix):
    model = random_dit(DIGITS_DIT_CONFIG, seed=5)
    path = tmp_path / f"dit{suffix}"
    if suffix == ".pt":
        torch.save(model.state_dict(), path)  # DiT releases are raw state dicts saved with torch.save
    else:
        save_safetensors(model.state_dict(), path, {"format": "test"})
    adapter = condbench.load_adapter("dit-digits", ckpt=str(path), num_steps=10)
    assert torch.equal(adapter.embed(torch.arange(3), 500), model.embed_parts(torch.full((3,), 500), torch.arange(3))[0]
                       + model.embed_parts(torch.full((3,), 500), torch.arange(3))[1])
    assert adapter.describe()["checkpoint"]["sha256"]
    assert adapter.num_steps == 10


def test_missing_checkpoint_names_the_file_where_it_looked_and_the_remedy(tmp_path):
    with pytest.raises(CheckpointNotFoundError) as error:
        condbench.load_adapter("dit-digits", ckpt=str(tmp_path / "nowhere" / "my_dit.safetensors"))
    message = str(error.value)
    assert "my_dit.safetensors" in message and str(tmp_path / "nowhere") in message
    assert "condbench train digits" in message


def test_another_models_checkpoint_says_which_shapes_disagree(tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(random_dit(TINY).state_dict(), path)
    with pytest.raises(CheckpointMismatchError) as error:
        condbench.load_adapter("dit-digits", ckpt=str(path))
    message = str(error.value)
    assert "shape mismatches" in message and "blocks.0.mlp.fc1.weight: file (128, 32) vs model (384, 96)" in message
    assert "missing keys: blocks.2." in message  # the tiny model has 2 blocks, the digits DiT 4


def test_a_classifier_given_as_dit_lists_missing_and_unexpected_keys(tmp_path):
    path = tmp_path / "classifier.pt"
    torch.save(DigitsClassifier().state_dict(), path)
    with pytest.raises(CheckpointMismatchError, match="unexpected keys: conv.0.bias"):
        condbench.load_adapter("dit-digits", ckpt=str(path))


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_truncated_file_is_a_clear_error(tmp_path, suffix):
    path = tmp_path / f"dit{suffix}"
    model = random_dit(DIGITS_DIT_CONFIG)
    if suffix == ".pt":
        torch.save(model.state_dict(), path)
    else:
        save_safetensors(model.state_dict(), path, {})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or not a checkpoint"):
        load_state_dict(path)


@pytest.mark.parametrize("head", [b"", b"\x80", b"\x80\x02"], ids=["noise", "pickle-byte", "pickle-header"])
def test_random_bytes_are_not_a_checkpoint_rather_than_code(tmp_path, head):
    path = tmp_path / "noise.pt"
    path.write_bytes(head + bytes(range(7, 256)) * 40)  # a leading 0x80 alone once made noise look like a pickle
    with pytest.raises(CheckpointError, match=r"not a checkpoint \(not a zip/pickle file torch can read\)") as error:
        load_state_dict(path)
    assert "could run code" not in str(error.value)


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"x_embedder.proj.weight": torch.zeros(1), "payload": RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match="refused to load"):
        condbench.load_adapter("dit-digits", ckpt=str(path))
    assert not marker.exists()


def test_ema_sub_dict_is_taken_when_asked(tmp_path):
    state = random_dit(TINY).state_dict()
    path = tmp_path / "train.pt"
    torch.save({"ema": state, "model": {}, "opt": {}}, path)
    assert set(load_state_dict(path, key="ema")) == set(state)
