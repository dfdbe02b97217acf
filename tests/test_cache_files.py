"""Every cache file condbench writes besides the run's shards has the shard cache's guarantees: the clean-FID
folder statistics, the ADM reference batch's pool_3 features, the VGGSound CAVP features and ground-truth features,
the SD3 prompt embeddings. Each is written through its real code path, damaged (truncated, replaced by text, a row
lost or a NaN behind a valid checksum), and read again: one line names the file, the file goes to quarantine, and
the value is computed again, equal to the first. A file in the format before the shard cache is never read (it
carries no checksum): it is computed once again."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from condbench.cache import ShardCache, read_shard


def _cache_file(root: Path) -> Path:
    """The one cache file under ``root`` (quarantine left out)."""
    files = [p for p in root.rglob("*.npz") if "quarantine" not in p.parts]
    assert len(files) == 1, files
    return files[0]


def _rewrite(path: Path, change: Callable[[dict], dict]) -> None:
    """The file at ``path`` written again under its own key with a valid checksum over changed content."""
    key = path.name.removesuffix(".npz")
    ShardCache(path.parent.parent, log=lambda _: None).put(key, change(read_shard(path, key)))


def _truncate(path: Path, name: str) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _text(path: Path, name: str) -> None:
    path.write_text("not a cache file\n")


def _row_lost(path: Path, name: str) -> None:
    _rewrite(path, lambda arrays: {**arrays, name: arrays[name][:-1]})


def _nan(path: Path, name: str) -> None:
    def change(arrays):
        values = arrays[name].copy()
        values.reshape(-1)[0] = np.nan
        return {**arrays, name: values}
    _rewrite(path, change)


DAMAGES = {"truncated": (_truncate, "unreadable"), "text": (_text, "unreadable"),
           "row-lost": (_row_lost, "rows, expected"), "nan": (_nan, "NaN or infinite values")}


def check_healed(root: Path, compute: Callable[[], object], same: Callable[[object, object], None], damage: str,
                 name: str, capsys) -> None:
    """Compute (writing the cache under ``root``), damage the file, compute again: one line naming the file, the
    file in ``root/quarantine``, the value equal to the first; a third call reads the file written again."""
    first = compute()
    path = _cache_file(root)
    capsys.readouterr()
    harm, problem = DAMAGES[damage]
    harm(path, name)
    same(compute(), first)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and problem in lines[0] and "moved to" in lines[0], lines
    assert len(list((root / "quarantine").iterdir())) == 1
    assert _cache_file(root) == path  # written again
    same(compute(), first)  # read back, nothing reported
    assert capsys.readouterr().out == ""


# --- clean-FID folder statistics -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inception():
    from condbench.metrics.inception import InceptionFeatures, random_state_dict

    return InceptionFeatures.from_state_dict(random_state_dict(seed=0))


@pytest.fixture
def image_folder(tmp_path) -> Path:
    folder = tmp_path / "ref"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def _same_statistics(ours, theirs) -> None:
    assert ours.count == theirs.count and ours.key == theirs.key
    np.testing.assert_array_equal(ours.mu, theirs.mu)
    np.testing.assert_array_equal(ours.sigma, theirs.sigma)


@pytest.mark.slow  # a random full-size Inception at 299 x 299, twice
@pytest.mark.parametrize("damage", DAMAGES)
def test_fid_reference_statistics(tmp_path, image_folder, inception, damage, capsys):
    from condbench.metrics.clean_fid import FolderReference

    root = tmp_path / "cache"
    check_healed(root, lambda: FolderReference.compute(image_folder, 8, inception, cache_dir=root),
                 _same_statistics, damage, "mu", capsys)


@pytest.mark.slow
def test_fid_reference_statistics_of_the_old_format_are_computed_again(tmp_path, image_folder, inception):
    from condbench.metrics.clean_fid import FolderReference

    root = tmp_path / "cache"
    fresh = FolderReference.compute(image_folder, 8, inception, cache_dir=tmp_path / "fresh")
    root.mkdir()
    np.savez(root / f"{fresh.key}.npz", mu=fresh.mu + 1, sigma=fresh.sigma, count=2)  # before the shard cache
    _same_statistics(FolderReference.compute(image_folder, 8, inception, cache_dir=root), fresh)


# --- ADM reference batch: pool_3 features of its images ----------------------------------------------------------


@pytest.fixture
def reference_batch(tmp_path):
    from condbench.metrics.inception import POOL_DIM, SFID_DIM
    from condbench.metrics.reference_batch import BatchNpzWriter, ReferenceBatch

    writer = BatchNpzWriter(tmp_path / "ref.npz")
    writer.append(torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)))
    statistics = {"mu": np.zeros(POOL_DIM, np.float32), "sigma": np.eye(POOL_DIM, dtype=np.float32),
                  "mu_s": np.zeros(SFID_DIM, np.float32), "sigma_s": np.eye(SFID_DIM, dtype=np.float32)}
    return ReferenceBatch.load(writer.close(**statistics))


@pytest.mark.slow
@pytest.mark.parametrize("damage", DAMAGES)
def test_reference_batch_pool_features(tmp_path, reference_batch, inception, damage, capsys):
    root = tmp_path / "features"
    check_healed(root, lambda: reference_batch.pool_features(inception, cache_dir=root), np.testing.assert_array_equal,
                 damage, "features", capsys)


# --- SD3 prompt embeddings --------------------------------------------------------------------------------------


def _prompt_table():
    from condbench.adapters.sd3 import PromptEmbeddingTable

    g = torch.Generator().manual_seed(0)
    return PromptEmbeddingTable({p: (torch.randn(5, 8, generator=g).bfloat16(), torch.randn(6, generator=g).bfloat16())
                                 for p in ("a cat", "a dog")})


def _same_embeddings(ours, theirs) -> None:
    for a, b in zip(ours, theirs):
        assert a.dtype == b.dtype == torch.bfloat16 and torch.equal(a, b)


@pytest.mark.parametrize("damage", ["truncated", "text", "nan"])  # no row count to check: L is the encoder's
def test_sd3_prompt_embeddings(tmp_path, damage, capsys):
    from condbench.adapters.sd3 import CachedPromptEncoder

    table = _prompt_table()
    encoder = CachedPromptEncoder(table, root=tmp_path / "cache")
    check_healed(tmp_path / "cache", lambda: encoder.encode(["a cat", "a cat"]), _same_embeddings, damage,
                 "prompt_embeds", capsys)
    assert encoder.encoded == 2  # once at first, once after the damage
    _same_embeddings(encoder.encode(["a cat"]), table.encode(["a cat"]))


def test_sd3_prompt_embeddings_of_the_old_format_are_encoded_again(tmp_path):
    from safetensors.torch import save_file

    from condbench.adapters.sd3 import CachedPromptEncoder

    table = _prompt_table()
    digest = hashlib.sha256(json.dumps({"encoder": table.identity(), "prompt": "a dog"}, sort_keys=True).encode())
    old = tmp_path / "cache" / digest.hexdigest()[:2] / f"{digest.hexdigest()}.safetensors"  # the old layout
    old.parent.mkdir(parents=True)
    save_file({"prompt_embeds": torch.zeros(5, 8), "pooled_prompt_embeds": torch.zeros(6)}, str(old))
    encoder = CachedPromptEncoder(table, root=tmp_path / "cache")
    _same_embeddings(encoder.encode(["a dog"]), table.encode(["a dog"]))
    assert encoder.encoded == 1


# --- VGGSound: CAVP features of clips without a feature file, ground-truth features -----------------------------


@pytest.fixture
def audio_task(tmp_path, monkeypatch):
    """The audio task on one clip (the first of the split), its cache in ``tmp_path / "cache"``."""
    from condbench.tasks.audio import AudioTask

    from .test_audio_task import write_clip_files

    monkeypatch.setenv("CONDBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CONDBENCH_OFFLINE", "1")
    options = write_clip_files(tmp_path)
    return AudioTask(**options, num_clips=1, clip_seconds=1.0, device="cpu"), options


def _same_audio_features(ours, theirs) -> None:
    for a, b in [*zip(ours.vggish, theirs.vggish), (ours.panns_embedding, theirs.panns_embedding),
                 (ours.panns_logits, theirs.panns_logits)]:
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow  # full-size VGGish and Cnn14 (on 1 s of sound), twice
@pytest.mark.parametrize("damage", DAMAGES)
def test_vggsound_ground_truth_features(tmp_path, audio_task, damage, capsys):
    from condbench.metrics.audio import AudioFeatureExtractor

    from .test_audio_task import write_metric_weights

    task, _ = audio_task
    weight_files = write_metric_weights(tmp_path)
    extractor = AudioFeatureExtractor.from_weights(weight_files["vggish_weights"], weight_files["panns_weights"])
    weights = {"vggish": "a" * 64, "panns": "b" * 64}
    check_healed(tmp_path / "cache" / "vggsound" / "truth_features", lambda: task._truth_features(extractor, weights),
                 _same_audio_features, damage, "logits" if damage == "row-lost" else "vggish", capsys)


@pytest.mark.slow  # CAVP (tiny) on 40 frames of 224 x 224, twice
@pytest.mark.parametrize("damage", DAMAGES)
def test_vggsound_cavp_features(tmp_path, audio_task, damage, capsys):
    from condbench.adapters.cavp import CAVPEncoder

    from .test_cavp import CONFIG, FIXTURE, checkpoint
    from .test_vggsound import write_clip

    pytest.importorskip("decord")
    from safetensors.torch import load_file

    task, options = audio_task
    (Path(options["feature_dir"]) / f"{task.clips[0].name}.npz").unlink()  # this clip's features come from CAVP
    Path(options["clip_dir"]).mkdir()
    write_clip(task.clips.video_path(0), 10.0)
    task.__dict__["_encoder"] = CAVPEncoder.from_checkpoint(checkpoint(load_file(str(FIXTURE)), tmp_path), CONFIG)
    check_healed(tmp_path / "cache" / "vggsound" / "cavp", lambda: task._cached_features(0), _same_tensor, damage,
                 "features", capsys)


def _same_tensor(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    assert ours.dtype == theirs.dtype and torch.equal(ours, theirs)
