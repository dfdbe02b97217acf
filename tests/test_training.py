"""`condbench train digits`: deterministic, tracked, and loadable by the adapter."""
import json

import torch

import condbench
from condbench.adapters.dit_model import DiTConfig
from condbench.checkpoints import read_metadata
from condbench.tasks.digits_training import DiTTraining, train_dit

SMALL = DiTConfig(input_size=8, patch_size=2, in_channels=1, hidden_size=32, depth=1, num_heads=2, num_classes=10)


def test_training_is_deterministic_and_tracks_cosine_and_npr():
    settings = DiTTraining(steps=4, batch_size=16, track_every=2, config=SMALL)
    first, track = train_dit(settings, log=lambda _: None)
    second, _ = train_dit(settings, log=lambda _: None)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert [p["step"] for p in track] == [1, 2, 4]
    assert all(0 < p["npr_mean"] <= 1 and -1 <= p["cosine_mean"] <= 1 for p in track)


def test_train_digits_writes_checkpoints_the_adapter_loads(tmp_path, capsys):
    """Through the command line: progress of both stages, what --steps covers, files readable by others
    (the umask's mode, not safetensors' 0600) and how to use them."""
    from condbench.cli import main
    from condbench.storage import UMASK

    assert main(["train", "digits", "--steps", "2", "--track", "--track-every", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "--steps does not change it" in out and "classifier: epoch 10/40" in out and "classifier: epoch 40/40" in out
    paths = {"dit": tmp_path / "digits_dit.safetensors", "classifier": tmp_path / "digits_classifier.safetensors",
             "track": tmp_path / "digits_train_track.json"}
    assert f"{{dit-digits: {{ckpt: {paths['dit']}}}}}" in out and f"{{classifier: {paths['classifier']}}}" in out
    for path in paths.values():
        assert path.stat().st_mode & 0o777 == 0o666 & ~UMASK, path
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
