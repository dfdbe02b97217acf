"""A run checks every file it needs before any work, and reports all the missing ones in one message."""
from __future__ import annotations

import pytest

from condbench.cli import main
from condbench.preflight import MissingInputsError, check_inputs
from condbench.suites import Suite


@pytest.fixture(autouse=True)
def empty_offline_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CONDBENCH_OFFLINE", "1")


def imagenet_suite(models) -> Suite:
    return Suite(name="imagenet-test", task="imagenet", models=list(models), policies=["baseline", "tail:0.01"])


def test_missing_reference_batch_and_checkpoints_are_listed_together():
    with pytest.raises(MissingInputsError) as error:
        check_inputs(imagenet_suite(["dit-xl-2", "dit-xl-2-512"]), log=lambda _: None)
    message = str(error.value)
    for needed in ("VIRTUAL_imagenet256_labeled.npz", "openaipublic.blob.core.windows.net",
                   "DiT-XL-2-256x256.pt", "DiT-XL-2-512x512.pt", "reference_batch", "ckpt"):
        assert needed in message, needed
    assert message.count("[model ") == 2 and message.count("[task imagenet]") >= 1


def test_models_without_checkpoints_are_skipped_when_others_can_run(tmp_path):
    skipped = []
    suite = Suite(name="d", task="digits", models=["dit-digits", "dit-xl-2"], policies=["baseline"])
    assert check_inputs(suite, log=skipped.append).models == ["dit-digits"]
    assert len(skipped) == 1 and skipped[0].startswith("skipping model dit-xl-2") and "DiT-XL-2-256x256.pt" in skipped[0]
    suite = Suite(name="d", task="digits", models=["dit-digits"], policies=["baseline"],
                  model_options={"dit-digits": {"ckpt": str(tmp_path / "nope.safetensors")}})
    with pytest.raises(MissingInputsError, match="(?s)no model has its checkpoint.*nope.safetensors"):
        check_inputs(suite, log=skipped.append)


def test_tox_imagenet_entry_point_stops_at_once_with_the_list(tmp_path, capsys):
    assert main(["run", "imagenet", "-o", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "cannot run" in err and "DiT-XL-2-256x256.pt" in err and "VIRTUAL_imagenet256_labeled.npz" in err
    assert not (tmp_path / "run" / "results.json").exists()
