"""MDSGen's AudioLDM decoder offline: with CONDBENCH_OFFLINE=1 it never reaches the hub (the session's network
guard, tests/network_guard.py, fails any test that tries), whether the hub library itself is offline or not."""
import pytest
import torch

from condbench.adapters.audioldm import AudioLDMDecoder
from condbench.checkpoints import CheckpointNotFoundError
from condbench.metrics.weight_files import AUDIOLDM_REPO

from .test_audio_task import audible_audioldm_folder  # noqa: F401  (a tiny AudioLDM in the pipeline's layout)

LATENTS = torch.randn(1, 8, 4, 16, generator=torch.Generator().manual_seed(0))  # (N, 8, h, w): 64 mel bins


@pytest.fixture
def condbench_offline_only(tmp_path, monkeypatch):
    """CONDBENCH_OFFLINE=1 alone, in a process whose hub library was imported online (HF_HUB_OFFLINE is read at
    import), over an empty Hugging Face cache; returns the cache folder."""
    import huggingface_hub.constants
    from huggingface_hub.utils import _detect_agent

    cache = tmp_path / "hf"
    cache.mkdir()
    monkeypatch.setenv("CONDBENCH_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    # the agent registry an online hub library fetches once per process, before any (even local-only) download
    monkeypatch.setattr(_detect_agent, "_registry", None, raising=False)
    return cache


def test_offline_without_the_files_fails_at_once_with_the_missing_file_message(condbench_offline_only):
    with pytest.raises(CheckpointNotFoundError,
                       match="(?s)cvssp/audioldm-s-full-v2.*not in the Hugging Face cache and downloads are off.*"
                             "decoder=/path/to/audioldm-s-full-v2"):
        AudioLDMDecoder()(LATENTS)


def snapshot(cache, repo: str, files: dict) -> None:
    """``files`` (relative path -> source file) as the Hugging Face cache holds a downloaded snapshot of ``repo``."""
    commit = "0" * 40
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    for relative, source in files.items():
        target = root / "snapshots" / commit / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())


def test_offline_with_the_configs_cached_but_not_the_weights_fails_without_the_network(condbench_offline_only,
                                                                                        audible_audioldm_folder):
    snapshot(condbench_offline_only, AUDIOLDM_REPO,
             {f"{part}/config.json": audible_audioldm_folder / part / "config.json" for part in ("vae", "vocoder")})
    with pytest.raises(CheckpointNotFoundError, match="(?s)cvssp/audioldm-s-full-v2.*could not be loaded"):
        AudioLDMDecoder()(LATENTS)


def test_offline_the_cached_decoder_loads_without_the_network(condbench_offline_only, audible_audioldm_folder):
    snapshot(condbench_offline_only, AUDIOLDM_REPO,
             {str(p.relative_to(audible_audioldm_folder)): p
              for p in audible_audioldm_folder.rglob("*") if p.is_file()})
    cached = AudioLDMDecoder()(LATENTS)
    assert torch.equal(cached, AudioLDMDecoder(audible_audioldm_folder)(LATENTS))
