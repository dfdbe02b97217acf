"""Files in the official layout of the masked-training families (side blocks and mask token beside the weights
inference uses) load into every network of the family, shipped tiny ones included; an X-MDPT file of another size
says which size it holds and what to pass."""
from __future__ import annotations

import re

import pytest
import torch

from condbench import load_adapter
from condbench.adapters.mdsgen_model import MDSGen
from condbench.adapters.xmdpt_model import XMDPT, xmdpt_config
from condbench.adapters.zoo import TINY_XMDPT
from condbench.checkpoints import CheckpointMismatchError
from condbench.tasks.audio_shapes import SHAPES_MDSGEN_CONFIG
from condbench.tasks.pose_digits import XMDPT_DIGITS_CONFIG


def official_layout(network: torch.nn.Module, side_prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """``network``'s random weights plus the training-only tensors an official file carries (each side-block
    prefix holding one of the network's block weights, and the mask token)."""
    for parameter in network.parameters():
        torch.nn.init.normal_(parameter, std=0.05)
    state = dict(network.state_dict())
    block = next(k for k in state if k.startswith("blocks.0."))
    for prefix in side_prefixes:
        state[f"{prefix}0.{block[len('blocks.0.'):]}"] = torch.randn(state[block].shape)
    state["mask_token"] = torch.zeros(1, 1, network.config.hidden_size)
    return state


@pytest.mark.parametrize("name, network, config, side_prefixes", [
    ("xmdpt-digits", XMDPT, XMDPT_DIGITS_CONFIG, ("sideblocks.", "sideblocks_cross.")),
    ("mdsgen-shapes", MDSGen, SHAPES_MDSGEN_CONFIG, ("sideblocks.",)),
])
def test_a_shipped_network_takes_a_file_in_its_familys_official_layout(tmp_path, name, network, config, side_prefixes):
    state = official_layout(network(config), side_prefixes)
    path = tmp_path / f"{name}.pt"
    torch.save(state, path)
    adapter = load_adapter(name, ckpt=str(path))
    loaded = adapter.model.state_dict()
    assert loaded.keys() == {k for k in state if not k.startswith(("sideblocks", "mask_token"))}
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)


def tiny_xmdpt_file(tmp_path) -> str:
    path = tmp_path / "ema_0.9999_300000.pt"
    torch.save(XMDPT(xmdpt_config("S", **TINY_XMDPT)).state_dict(), path)
    return str(path)


def test_an_xmdpt_file_of_no_official_size_says_so_and_how_to_run_it(tmp_path):
    path = tiny_xmdpt_file(tmp_path)
    with pytest.raises(CheckpointMismatchError) as error:
        load_adapter("xmdpt-s-2", ckpt=path)
    assert str(error.value).startswith(
        f"{path} holds X-MDPT weights of no official size (hidden size 32, 3 blocks), but xmdpt-s-2 needs hidden size "
        f"384 and 12 blocks: pass the X-MDPT-S/2 file"), str(error.value)
    assert "model_config set to its size (hidden_size: 32, depth: 3" in str(error.value)


def test_with_model_config_sizes_the_advice_names_those_sizes_not_the_official_file(tmp_path):
    path = tiny_xmdpt_file(tmp_path)
    with pytest.raises(CheckpointMismatchError) as error:
        load_adapter("xmdpt-s-2", ckpt=path, model_config={**TINY_XMDPT, "depth": 2})
    message = str(error.value)
    assert message.startswith(f"{path} holds X-MDPT weights of no official size (hidden size 32, 3 blocks), but "
                              "xmdpt-s-2 with model_config hidden_size=32, depth=2 needs hidden size 32 and 2 blocks: "
                              "pass a file of that size"), message
    assert "X-MDPT-S/2 file" not in message


def test_an_official_size_file_under_model_config_sizes_is_pointed_to_its_release(tmp_path):
    path = tmp_path / "ema_0.9999_300000.pt"
    with torch.device("meta"):
        small = XMDPT(xmdpt_config("S"))
    # only what the size check reads: the S/2 hidden size and block count
    torch.save({k: torch.zeros(v.shape[:1] if k == "t_embedder.mlp.0.weight" else (1,))
                for k, v in small.state_dict().items() if k.startswith(("t_embedder.mlp.0.weight", "blocks."))}, path)
    with pytest.raises(CheckpointMismatchError, match=re.escape(
            "holds X-MDPT-S/2 weights (hidden size 384, 12 blocks), but xmdpt-b-2 with model_config hidden_size=32 "
            "needs hidden size 32 and 12 blocks: pass a file of that size, or run this file as xmdpt-s-2 without "
            "those model_config sizes.")):
        load_adapter("xmdpt-b-2", ckpt=str(path), model_config={"hidden_size": 32, "num_heads": 4})
