"""The DeepFashion reader and the OpenPose skeleton renderer against X-MDPT's own dataset code.

Golden fixture ``tests/fixtures/pose_render`` from ``tools/golden/make_pose_render.py``: X-MDPT
(trungpx/xmdpt @83970562dce8b563ec241dd0338ed42bc341b33e) ``masked_diffusion/my_dataset.py`` ``FashionDataset``
reading an LMDB written by PIDM's ``data/prepare_data.py`` (ankanbhunia/PIDM @e4f1d880772072ee464a83240d0374bf466b6772).
"""
from __future__ import annotations

import hashlib
import json
import sys
import zlib
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from condbench.datasets import deepfashion as df
from condbench.datasets import deepfashion_files as files
from condbench.datasets import openpose as op

FIXTURE = Path(__file__).parent / "fixtures" / "pose_render" / "pose_render.safetensors"


@pytest.fixture(scope="module")
def golden():
    from safetensors import safe_open

    with safe_open(str(FIXTURE), framework="pt") as handle:
        return {k: handle.get_tensor(k) for k in handle.keys()}, dict(handle.metadata())


def unpack(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(zlib.decompress(t.numpy().tobytes()), dtype=np.float32).copy()).view(shape)


def sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().float().numpy().tobytes()).hexdigest()


def write_lmdb(path: Path, items: dict[bytes, bytes]) -> None:
    """An LMDB laid out like PIDM's prepare_data.py output (keys and values as given)."""
    import lmdb

    with lmdb.open(str(path), map_size=1 << 26) as env, env.begin(write=True) as txn:
        for key, value in items.items():
            txn.put(key, value)


def build_root(tmp_path: Path, golden) -> Path:
    """The golden dataset: pairs files, keypoint files, and the official LMDB rebuilt byte for byte."""
    tensors, meta = golden
    root = tmp_path / "deepfashion"
    root.mkdir()
    (root / "test_pairs.txt").write_text(meta["pairs"])
    (root / "train_pairs.txt").write_text(meta["train_pairs"])
    for name, text in json.loads(meta["pose_files"]).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    keys = json.loads(meta["lmdb_keys"])
    write_lmdb(root / "256-256", {k.encode(): tensors[f"lmdb_value_{n}"].numpy().tobytes() for n, k in enumerate(keys)})
    return root


def export_pngs(root: Path, golden) -> Path:
    """The LMDB's images as a folder of PNGs at their keys' paths."""
    tensors, meta = golden
    folder = root / "pngs"
    for n, key in enumerate(json.loads(meta["lmdb_keys"])):
        if key.endswith(".png"):
            (folder / key).parent.mkdir(parents=True, exist_ok=True)
            (folder / key).write_bytes(tensors[f"lmdb_value_{n}"].numpy().tobytes())
    return folder


def test_official_lmdb_layout(golden):
    """PIDM's writer: one key per image path with .png, PNG bytes, plus 'length' = the count, zero-padded."""
    tensors, meta = golden
    keys = json.loads(meta["lmdb_keys"])
    assert "length" in keys and all(k.startswith("img/") and k.endswith(".png") for k in keys if k != "length")
    assert tensors[f"lmdb_value_{keys.index('length')}"].numpy().tobytes() == b"00004"


def test_reader_equals_official_dataset(tmp_path, golden):
    tensors, meta = golden
    dataset = df.DeepFashionPairs(build_root(tmp_path, golden), "test")
    assert len(dataset) == int(meta["num_pairs"])
    for i in range(len(dataset)):
        sample = dataset[i]
        assert sha256(sample.source) == meta[f"pair{i}_source_sha256"]
        assert sha256(df.image_to_tensor(sample.target_image.permute(1, 2, 0).numpy())) == meta[f"pair{i}_target_sha256"]
        assert torch.equal(sample.pose, unpack(tensors[f"pair{i}_pose"], (3, 256, 256)))
    sample = dataset[0]
    dino_source, dino_pose = df.dinov2_inputs(sample.source[None], sample.pose[None])
    assert dino_source.shape == dino_pose.shape == (1, 3, 224, 224)
    torch.testing.assert_close(dino_source[0, :, ::2, ::2], tensors["pair0_dino_source"], atol=1e-6, rtol=0)
    torch.testing.assert_close(dino_pose[0, :, ::2, ::2], tensors["pair0_dino_pose"], atol=1e-6, rtol=0)


def test_renderer_equals_official_bit_for_bit(tmp_path, golden):
    """Extra keypoint sets: missing joints, one missing coordinate, zero-length limb, points off the canvas."""
    tensors, meta = golden
    root = build_root(tmp_path, golden)
    for k in range(int(meta["num_sets"])):
        skeleton = op.skeleton_from_file(root / "extra_pose" / f"set{k}.txt")
        assert skeleton.shape == (256, 256, 3) and skeleton.dtype == np.uint8
        official = unpack(tensors[f"set{k}_pose"], (3, 256, 256))
        assert torch.equal(df.skeleton_to_tensor(skeleton), official), f"keypoint set {k}"


def test_lmdb_and_png_folder_give_identical_tensors(tmp_path, golden):
    root = build_root(tmp_path, golden)
    from_lmdb = df.DeepFashionPairs(root, "test")
    from_pngs = df.DeepFashionPairs(root, "test", images=export_pngs(root, golden))
    assert isinstance(from_lmdb.images, files.LmdbImages) and isinstance(from_pngs.images, files.FolderImages)
    for i in range(len(from_lmdb)):
        a, b = from_lmdb[i], from_pngs[i]
        for name in ("source", "pose", "source_image", "target_image", "skeleton_image"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert files.missing_files(root) == []


def test_pairs_file_parsing(tmp_path):
    path = tmp_path / "test_pairs.txt"
    path.write_text("img/a/t.jpg,img/a/s1.jpg,img/a/s2.jpg,img/a/s3.jpg\nimg/b/t.png,img/b/s.jpg\n\n\n")
    pairs = files.read_pairs(path, seed=0)
    assert [p.line for p in pairs] == [1, 2]
    assert pairs[0].target == "img/a/t.png" and pairs[0].sources == ("img/a/s1.png", "img/a/s2.png", "img/a/s3.png")
    assert pairs[0].target_pose == "pose/a/t.txt"
    assert pairs[1].source == "img/b/s.png"
    # the source is a function of (seed, index): stable, one of the candidates, and varies with the seed
    assert [p.source for p in files.read_pairs(path, seed=0)] == [p.source for p in pairs]
    chosen = {files.read_pairs(path, seed=s)[0].source for s in range(20)}
    assert chosen <= set(pairs[0].sources) and len(chosen) > 1


@pytest.mark.parametrize("text, line", [("img/t.jpg\n", 1), ("img/t.jpg,img/s.jpg\nimg/u.jpg,\n", 2),
                                        ("img/t.jpg,img/s.jpg\n\nimg/u.jpg,img/s.jpg\n", 2)])
def test_malformed_pairs_line_names_file_and_line(tmp_path, text, line):
    path = tmp_path / "test_pairs.txt"
    path.write_text(text)
    with pytest.raises(files.DeepFashionError, match=rf"test_pairs.txt, line {line}:"):
        files.read_pairs(path)


def test_pairs_naming_missing_image(tmp_path, golden):
    root = build_root(tmp_path, golden)
    with open(root / "test_pairs.txt", "a") as handle:
        handle.write("img/WOMEN/Dresses/id_00000002/02_1_front.jpg,img/MEN/Nope/id_1/99_1_front.jpg\n")
    dataset = df.DeepFashionPairs(root, "test")
    with pytest.raises(files.DeepFashionError, match=r"'img/MEN/Nope/id_1/99_1_front.png' \(.*test_pairs.txt, line 5\) "
                                                  r"is not in the LMDB"):
        dataset[4]
    problems = files.missing_files(root)
    assert len(problems) == 1 and "line 5" in problems[0] and "99_1_front.png" in problems[0]
    with pytest.raises(files.DeepFashionError, match="1 DeepFashion file"):
        dataset.verify()


def test_missing_dataset_files_are_listed(tmp_path):
    problems = files.missing_files(tmp_path)
    assert len(problems) == 1 and "test_pairs.txt" in problems[0]
    (tmp_path / "test_pairs.txt").write_text("img/t.jpg,img/s.jpg\n")
    assert "256-256" in files.missing_files(tmp_path)[0]
    (tmp_path / "256-256").mkdir()
    problems = files.missing_files(tmp_path)
    assert len(problems) == 3 and "pose/t.txt" in problems[2]


@pytest.mark.parametrize("text, message", [
    ("1 2\n" * 17, r"expected 18 keypoints .* found 17"),
    ("1 2\n" * 5 + "1 2 3\n" + "1 2\n" * 12, r"line 6: expected two numbers"),
    ("1 2\n" * 3 + "1 x\n" + "1 2\n" * 14, r"line 4: '1 x' is not two numbers"),
    ("1 2\n" * 3 + "1 nan\n" + "1 2\n" * 14, r"line 4: '1 nan' is not finite"),
])
def test_malformed_keypoint_file(tmp_path, text, message):
    path = tmp_path / "pose.txt"
    path.write_text(text)
    with pytest.raises(op.KeypointFileError, match=message) as error:
        op.read_keypoints(path)
    assert str(path) in str(error.value)


def test_malformed_keypoint_file_in_dataset_names_pairs_line(tmp_path, golden):
    root = build_root(tmp_path, golden)
    (root / "pose/MEN/Denim/id_00000080/01_7_additional.txt").write_text("1 2\n")
    with pytest.raises(files.DeepFashionError, match=r"01_7_additional.txt: expected 18 keypoints.*line 3\)"):
        df.DeepFashionPairs(root, "test")[2]


def test_pose_image_of_wrong_size():
    with pytest.raises(files.DeepFashionError, match="expected a 256x256 RGB uint8 pose image"):
        df.skeleton_to_tensor(np.zeros((128, 128, 3), np.uint8))
    with pytest.raises(files.DeepFashionError, match=r"pose images for DINOv2: expected float \(N, 3, 256, 256\)"):
        df.dinov2_inputs(torch.zeros(1, 3, 256, 256), torch.zeros(1, 3, 224, 224))


def test_empty_skeleton_is_an_error():
    skeleton = op.render_skeleton(np.full((18, 2), -1.0))
    assert not skeleton.any()
    with pytest.raises(files.DeepFashionError, match="no keypoint is present"):
        df.skeleton_to_tensor(skeleton)


def test_image_of_wrong_size_in_lmdb(tmp_path):
    buffer = BytesIO()
    Image.new("RGB", (176, 256)).save(buffer, format="png")
    (tmp_path / "test_pairs.txt").write_text("img/t.jpg,img/s.jpg\n")
    write_lmdb(tmp_path / "256-256", {b"img/t.png": buffer.getvalue(), b"img/s.png": buffer.getvalue()})
    dataset = df.DeepFashionPairs(tmp_path)
    with pytest.raises(files.DeepFashionError, match=r"'img/s.png' .*line 1\) in the LMDB .* is a 176x256 RGB image"):
        dataset[0]


def test_dinov2_inputs_are_torchvision_resize_without_antialias():
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.functional import resize

    source, pose = torch.rand(2, 3, 256, 256) * 2 - 1, torch.rand(2, 3, 256, 256)
    ours = df.dinov2_inputs(source, pose)
    for x, y in zip((source, pose), ours):
        assert torch.equal(y, resize(x, 224, InterpolationMode.BICUBIC, antialias=False))
    assert not torch.allclose(ours[1], resize(pose, 224, InterpolationMode.BICUBIC, antialias=True))


def test_missing_lmdb_package_message(tmp_path, monkeypatch):
    (tmp_path / "data.mdb").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "lmdb", None)
    with pytest.raises(ImportError, match="pip install lmdb"):
        files.open_images(tmp_path).get("img/x.png")
