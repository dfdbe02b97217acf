"""`condbench train digits`: deterministic, tracked, and loadable by the adapter."""
import json

import torch

import condbench
from condbench.adapters.dit_model import DiTConfig
from condbench.checkpoints import read_metadata
from condbench.tasks.digits_training import DiTTraining, train_dit, train_digits

SMALL = DiTConfig(input_size=8, patch_size=2, in_channels=1, hidden_size=32, depth=1, num_heads=2, num_classes=10)


def test_training_is_deterministic_and_tracks_cosine_and_npr():
    settings = DiTTraining(steps=4, batch_size=16, track_every=2, config=SMALL)
    first, track = train_dit(settings, log=lambda _: None)
    second, _ = train_dit(settings, log=lambda _: None)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert [p["step"] for p in track] == [1, 2, 4]
    assert all(0 < p["npr_mean"] <= 1 and -1 <= p["cosine_mean"] <= 1 for p in track)


def test_train_digits_writes_checkpoints_the_adapter_loads(tmp_path):
    settings = DiTTraining(steps=2, batch_size=8, track_every=1)
    paths = train_digits(tmp_path, settings, log=lambda _: None)
    meta = read_metadata(paths["dit"])
    assert json.loads(meta["recipe"])["steps"] == 2 and json.loads(meta["config"])["hidden_size"] == 96
    adapter = condbench.load_adapter("dit-digits", ckpt=str(paths["dit"]))
    assert adapter.embed(torch.arange(10), 999).shape == (10, 96)
    assert json.loads(paths["track"].read_text())["points"][0]["step"] == 1


def test_shipped_checkpoint_records_its_recipe():
    from condbench.tasks import asset_path
    from condbench.tasks.digits import ASSET_DIT

    recipe = json.loads(read_metadata(asset_path(ASSET_DIT))["recipe"])
    assert recipe["seed"] == 0 and recipe["steps"] == DiTTraining().steps
