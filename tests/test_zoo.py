"""Released-model loading: official-format files at tiny sizes, embedders-only analysis, checkpoint
resolution (cache, one-time download, offline errors) and the errors for bad files."""
from __future__ import annotations

import http.server
import json
import os
import threading
from pathlib import Path

import pytest
import torch

import condbench
from condbench.adapters.dit_model import DIT_SIZES, DiT, DiTConfig
from condbench.checkpoints import CheckpointError, CheckpointMismatchError, CheckpointNotFoundError, read_metadata
from condbench.cli import main
from condbench import hub
from condbench.hub import WeightSource, resolve_weights

TINY = dict(depth=2, hidden_size=32, num_heads=4, input_size=8)


def official_file(path: Path, config: DiTConfig, seed: int = 0) -> Path:
    """A raw state dict in the official key layout, saved with torch.save like DiT's release."""
    torch.manual_seed(seed)
    model = DiT(config)
    for p in model.parameters():  # adaLN-Zero would make every output trivially zero
        torch.nn.init.normal_(p, std=0.05)
    torch.save(model.state_dict(), path)
    return path


def test_dit_xl_2_loads_an_official_format_file_at_a_tiny_size(tmp_path):
    path = official_file(tmp_path / "DiT-XL-2-256x256.pt", DiTConfig(**TINY))
    adapter = condbench.load_adapter("dit-xl-2", ckpt=str(path), model_config=TINY)
    c = adapter.embed(torch.tensor([0, 7, 999]), 999)
    assert c.shape == (3, 32)
    reference = DiT(DiTConfig(**TINY))
    reference.load_state_dict(torch.load(path, weights_only=True))
    assert torch.equal(c, reference.t_embedder(torch.full((3,), 999)) + reference.y_embedder(torch.tensor([0, 7, 999])))
    assert adapter.describe()["sampler"] == {"choice": "ddpm", "name": "ddpm", "num_steps": 250, "cfg_scale": 1.5, "cfg_channels": 3,
                                             "learned_sigma": True}
    assert len(adapter.describe()["checkpoint"]["sha256"]) == 64


def test_embedders_only_reads_only_what_c_needs(tmp_path):
    path = official_file(tmp_path / "dit.pt", DiTConfig(**TINY))
    full = condbench.load_adapter("dit-xl-2", ckpt=str(path), model_config=TINY)
    light = condbench.load_adapter("dit-xl-2", ckpt=str(path), model_config=TINY, embedders_only=True)
    labels = torch.arange(10)
    assert torch.equal(light.embed(labels, 500), full.embed(labels, 500))
    meta = [name for name, p in light.model.named_parameters() if p.is_meta]
    assert meta and all(not n.startswith(("t_embedder.", "y_embedder.")) for n in meta)
    assert any(n.startswith("blocks.") for n in meta)


def test_analyze_cli_at_the_real_size_needs_only_the_embedders(tmp_path, capsys):
    """An XL-sized file holding only the embedders (6 MB of 2.7 GB) is enough for ``condbench analyze``."""
    config = DiTConfig(**DIT_SIZES["XL"])
    torch.manual_seed(0)
    with torch.device("meta"):
        skeleton = DiT(config)
    state = {k: torch.randn(v.shape) * 0.05 for k, v in skeleton.state_dict().items()
             if k.startswith(("t_embedder.", "y_embedder."))}
    torch.save(state, tmp_path / "embedders.pt")
    assert main(["analyze", "--model", "dit-xl-2", "--ckpt", str(tmp_path / "embedders.pt"), "--sweep-points", "3",
                 "-o", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert summary["c"]["dim"] == 1152 and 0 < summary["c"]["npr"]["mean"] <= 1
    assert summary["adapter"]["checkpoint"]["embedders_only"] is True
    assert "dit-xl-2: d=1152" in capsys.readouterr().out


def test_missing_checkpoint_offline_names_the_file_the_url_and_the_option(isolated_cache):
    with pytest.raises(CheckpointNotFoundError) as error:
        condbench.load_adapter("dit-xl-2")
    message = str(error.value)
    assert "DiT-XL-2-256x256.pt" in message and "https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-256x256.pt" in message
    assert "--ckpt" in message and str(isolated_cache / "weights") in message


def test_a_file_placed_in_the_cache_is_used(isolated_cache, tmp_path):
    (isolated_cache / "weights").mkdir(parents=True)
    official_file(isolated_cache / "weights" / "DiT-XL-2-256x256.pt", DiTConfig(**TINY))
    adapter = condbench.load_adapter("dit-xl-2", model_config=TINY)
    assert adapter.checkpoint["path"] == str((isolated_cache / "weights" / "DiT-XL-2-256x256.pt").resolve())


def test_wrong_models_checkpoint_says_which_keys_and_shapes_disagree(tmp_path):
    path = official_file(tmp_path / "sit-like.pt", DiTConfig(**TINY, learn_sigma=False))  # 4 output channels
    with pytest.raises(CheckpointMismatchError, match=r"final_layer.linear.weight: file \(16, 32\) vs model \(32, 32\)"):
        condbench.load_adapter("dit-xl-2", ckpt=str(path), model_config=TINY)
    with pytest.raises(CheckpointMismatchError, match="shape mismatches"):
        condbench.load_adapter("dit-xl-2", ckpt=str(Path(condbench.tasks.asset_path("digits_dit.safetensors"))))


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = official_file(tmp_path / "dit.pt", DiTConfig(**TINY))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or not a checkpoint"):
        condbench.load_adapter("dit-xl-2", ckpt=str(path), model_config=TINY)


class RunsCode:
    """A pickle payload that would create a file when unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"x_embedder.proj.weight": torch.zeros(1), "payload": RunsCode(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="could run code"):
        condbench.load_adapter("dit-xl-2", ckpt=str(tmp_path / "evil.pt"), model_config=TINY)
    assert not marker.exists()


class _Server:
    """A loopback HTTP server that serves one directory and counts requests."""

    def __init__(self, root: Path):
        counts = self.counts = {}

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                counts[self.path] = counts.get(self.path, 0) + 1
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def online_cache(tmp_path, monkeypatch) -> Path:
    """An empty cache with downloads allowed (they go to a loopback server only)."""
    monkeypatch.setenv("CONDBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("CONDBENCH_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "_failed_downloads", [])  # a download failed by an earlier test stops no other
    return tmp_path / "cache"


def test_download_happens_once_into_the_cache_and_is_verified(tmp_path, online_cache):
    published = tmp_path / "site"
    published.mkdir()
    official_file(published / "model.pt", DiTConfig(**TINY))
    server = _Server(published)
    try:
        digest = condbench.checkpoints.file_sha256(published / "model.pt")
        source = WeightSource("model.pt", f"{server.url}/model.pt", sha256=digest)
        first = resolve_weights(source, what="test model")
        second = resolve_weights(source, what="test model")
        assert first == second == tmp_path / "cache" / "weights" / "model.pt"
        assert server.counts == {"/model.pt": 1}
        assert not list((tmp_path / "cache" / "weights").glob(".*part"))  # no temporary left behind
        first.write_bytes(b"corrupt")
        with pytest.raises(CheckpointError, match="does not match the published model.pt"):
            resolve_weights(source, what="test model")
        with pytest.raises(CheckpointNotFoundError, match="downloading it from .*/missing.pt failed"):
            resolve_weights(WeightSource("missing.pt", f"{server.url}/missing.pt"), what="test model")
    finally:
        server.httpd.shutdown()


def test_list_models_prints_c_dim_sampler_and_source(capsys):
    assert main(["list", "models"]) == 0
    out = capsys.readouterr().out
    for name in condbench.registry.MODELS:
        assert name in out
    assert "1152" in out and "dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-256x256.pt" in out


def _meta(path: Path, key: str):
    """A JSON value from a fixture's safetensors metadata."""
    return json.loads(read_metadata(path)[key])


def test_mdt_xl_2_loads_the_official_layout_through_the_registry():
    """The MDT fixture holds the official file's training-only keys (side block, mask token) too."""
    weights = Path(__file__).parent / "fixtures" / "mdt" / "weights.safetensors"
    config = _meta(weights, "config")
    adapter = condbench.load_adapter("mdt-xl-2", ckpt=str(weights), model_config=config, num_steps=10)
    assert adapter.embed(torch.tensor([1, 10]), 999).shape == (2, 16)
    assert adapter.describe()["sampler"]["cfg_scale"] == 3.8
    light = condbench.load_adapter("mdt-xl-2", ckpt=str(weights), model_config=config, embedders_only=True)
    assert torch.equal(light.embed(torch.tensor([1, 10]), 999), adapter.embed(torch.tensor([1, 10]), 999))


def test_uvit_h_2_loads_through_the_registry_and_its_drive_only_file_is_explained(isolated_cache):
    weights = Path(__file__).parent / "fixtures" / "uvit" / "weights.safetensors"
    config = _meta(weights, "meta")["config"]
    adapter = condbench.load_adapter("uvit-h-2", ckpt=str(weights), model_config=config, num_steps=8)
    parts = adapter.embed_parts(torch.tensor([3, 10]), 999.0)
    assert torch.equal(parts.c, parts.t + parts.cond) and parts.c.shape == (2, 32)
    with pytest.raises(CheckpointNotFoundError, match="(?s)imagenet256_uvit_huge.pth.*drive.google.com.*--ckpt"):
        condbench.load_adapter("uvit-h-2")


FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("name, weights, prefix", [
    ("sit-xl-2", "transport/sit.safetensors", "sit"),
    ("repa-sit-xl-2", "transport/repa.safetensors", "repa"),  # carries the projector head: accepted, unused
])
def test_transport_models_load_official_layouts_through_the_registry(name, weights, prefix):
    """Fixtures made by the official SiT and REPA code (see tests/test_transport_parity.py)."""
    from safetensors.torch import load_file

    tiny = _meta(FIXTURES / weights, "tiny")
    ref = {k.split("/")[1]: v for k, v in load_file(str(FIXTURES / "transport" / "expected.safetensors")).items()
           if k.startswith(prefix + "/")}
    adapter = condbench.load_adapter(name, ckpt=str(FIXTURES / weights), model_config=tiny)
    assert torch.allclose(adapter.embed(ref["y"], ref["t"]), ref["c"], atol=1e-5)
    out = adapter.denoise(ref["x"], ref["t"], ref["y"])[:, : ref["out"].shape[1]]
    assert torch.allclose(out, ref["out"], atol=1e-5)


def test_mg_takes_the_ema_weights_of_its_training_checkpoint():
    tiny = _meta(FIXTURES / "transport" / "sit.safetensors", "tiny")
    adapter = condbench.load_adapter("mg-sit-xl-2", ckpt=str(FIXTURES / "transport" / "mg.pt"), model_config=tiny)
    ema = torch.load(FIXTURES / "transport" / "mg.pt", weights_only=True)["ema"]
    assert torch.equal(adapter.model.y_embedder.embedding_table.weight, ema["y_embedder.embedding_table.weight"])
    assert adapter.describe()["sampler"]["cfg_scale"] == 1.0


def test_a_training_checkpoint_with_its_argparse_options_loads(tmp_path):
    """MG's and LightningDiT's files are training checkpoints; their option Namespace is not code."""
    import argparse

    weights = torch.load(FIXTURES / "transport" / "mg.pt", weights_only=True)
    torch.save({**weights, "args": argparse.Namespace(lr=1e-4, model="SiT-XL/2"), "step": 7}, tmp_path / "mg.pt")
    tiny = _meta(FIXTURES / "transport" / "sit.safetensors", "tiny")
    assert condbench.load_adapter("mg-sit-xl-2", ckpt=str(tmp_path / "mg.pt"), model_config=tiny).embed_dim == 16


def test_lightningdit_loads_its_ema_and_gives_the_official_c_and_output(tmp_path):
    from safetensors.torch import load_file

    weights = FIXTURES / "lightningdit" / "released.weights.safetensors"
    config = _meta(weights, "config")
    torch.save({"ema": load_file(str(weights)), "model": {}, "config": {"note": "training"}}, tmp_path / "ckpt.pt")
    ref = load_file(str(FIXTURES / "lightningdit" / "released.io.safetensors"))
    adapter = condbench.load_adapter("lightningdit-xl-1", ckpt=str(tmp_path / "ckpt.pt"), model_config=config)
    assert torch.allclose(adapter.embed(ref["y"], ref["t"]), ref["c"], atol=1e-5)
    assert torch.allclose(adapter.denoise(ref["x"], ref["t"], ref["y"]), ref["out"], atol=1e-5)
    assert adapter.describe()["sampler"]["cfg_scale"] == 6.7


def test_mg_parts_are_named_when_the_file_is_missing(isolated_cache):
    with pytest.raises(CheckpointNotFoundError, match="(?s)SiT-XL-2-MG-a.*SiT-XL-2-MG-f.*concatenate"):
        condbench.load_adapter("mg-sit-xl-2")


def test_split_releases_are_downloaded_part_by_part_and_joined(tmp_path, online_cache):
    site = tmp_path / "site"
    site.mkdir()
    payload = (FIXTURES / "transport" / "mg.pt").read_bytes()
    third = len(payload) // 3
    for i, piece in enumerate((payload[:third], payload[third:2 * third], payload[2 * third:])):
        (site / f"part-{i}").write_bytes(piece)
    server = _Server(site)
    try:
        source = WeightSource("joined.pt", f"{server.url}/", parts=tuple(f"{server.url}/part-{i}" for i in range(3)))
        assert resolve_weights(source, what="split model").read_bytes() == payload
    finally:
        server.httpd.shutdown()
