"""Where weights come from: the remedy names the real option, and a failed download is not retried."""
import urllib.error

import pytest

import condbench
from condbench import hub
from condbench.checkpoints import CheckpointNotFoundError
from condbench.hub import WeightSource, resolve_weights


def test_a_missing_checkpoint_names_the_suite_option_that_takes_its_path(isolated_cache):
    with pytest.raises(CheckpointNotFoundError) as caught:
        condbench.load_adapter("dit-xl-2")
    message = str(caught.value)
    assert "model_options: {dit-xl-2: {ckpt: PATH}}" in message and "--ckpt PATH for condbench analyze" not in message
    assert "condbench analyze: --ckpt PATH" in message and str(isolated_cache / "weights") in message


def test_after_one_failed_download_no_other_is_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CONDBENCH_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "_failed_downloads", [])
    attempts = []

    def unreachable(source, target):
        attempts.append(source.filename)
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(hub, "_download", unreachable)
    with pytest.raises(CheckpointNotFoundError, match="downloading it from .* failed"):
        resolve_weights(WeightSource("a.pt", "http://127.0.0.1:9/a.pt"), what="first file", option="the option a")
    with pytest.raises(CheckpointNotFoundError, match="an earlier download in this run failed \\(a.pt: URLError\\)"):
        resolve_weights(WeightSource("b.pt", "http://127.0.0.1:9/b.pt"), what="second file", option="the option b")
    assert attempts == ["a.pt"]


def test_offline_hugging_face_loads_switch_the_hub_library_offline_too(monkeypatch):
    """The hub library reads HF_HUB_OFFLINE at import only: CONDBENCH_OFFLINE=1 set later must still reach it."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("CONDBENCH_OFFLINE", raising=False)
    assert hub.local_files_only() is False and huggingface_hub.constants.HF_HUB_OFFLINE is False
    monkeypatch.setenv("CONDBENCH_OFFLINE", "1")
    assert hub.local_files_only() is True and huggingface_hub.constants.HF_HUB_OFFLINE is True
