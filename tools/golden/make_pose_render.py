"""Golden fixture for the DeepFashion reader: X-MDPT's own dataset class on a tiny dataset written by PIDM's own LMDB writer.

Usage: python tools/golden/make_pose_render.py --official PATH/TO/xmdpt --pidm PATH/TO/PIDM [--out tests/fixtures/pose_render]

1. Draws a few "high-resolution" person images (smooth random pictures saved as JPEG at the paths a pairs file
   names), OpenPose keypoint files (``np.savetxt``, 18 rows ``x y``, some keypoints -1 = missing, some off the
   canvas) and ``test_pairs.txt`` / ``train_pairs.txt``.
2. Runs PIDM's ``data/prepare_data.py`` ``prepare_data`` (the official writer) to build ``ROOT/256-256``.
3. Loads X-MDPT's ``masked_diffusion/my_dataset.py`` ``FashionDataset(is_inference=True, labels_required=True)``
   from the checkout (imported by file path, so the package's training imports are not needed) and records, per
   pair, its ``source_image`` and ``target_image`` ([-1, 1]) and ``target_skeleton`` (the pose in [0, 1]); and
   ``get_label_tensor`` on extra keypoint sets (empty joints, coincident points, points off the canvas).
4. The DINOv2 inputs are ``torchvision.transforms.functional.resize(t, 224, BICUBIC, antialias=False)`` of the
   official 256-px tensors: X-MDPT pins torchvision 0.13.1, whose tensor ``Resize`` had no antialias, while
   torchvision >= 0.17 antialiases by default (so calling its ``__getitem__``'s own resize here would not be
   the official result).

Saved: every key/value of the official LMDB (so the test rebuilds it byte for byte), the keypoint files' text,
the pairs files, and the official tensors: skeletons as zlib-compressed float32 bytes (lossless; most of a skeleton is zero), the
[-1, 1] images as SHA-256 of their float32 bytes (exact on every platform), the DINOv2 inputs of the first pair
as values at every other pixel (interpolation can differ in the last bit between CPUs).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

IMAGES = ["img/WOMEN/Dresses/id_00000002/02_1_front", "img/WOMEN/Dresses/id_00000002/02_2_side",
          "img/MEN/Denim/id_00000080/01_7_additional", "img/WOMEN/Blouses_Shirts/id_00000004/03_4_full"]
PAIRS = [(0, 1), (1, 2), (2, 3), (3, 0)]  # (target, source), one source per line


def keypoint_sets(rng: np.random.Generator) -> list[np.ndarray]:
    """Keypoint sets in the 176x256 frame (+40 px border in x): typical, with missing joints, edge cases."""
    def person() -> np.ndarray:
        return np.stack([rng.uniform(45, 210, 18), rng.uniform(5, 250, 18)], axis=1).round(1)

    full = person()
    partly = person()
    partly[[3, 4, 9, 14, 16]] = -1  # missing joints, limbs through them skipped
    only_x = person()
    only_x[5, 0] = -1  # one coordinate missing: the joint and its limbs are skipped
    only_x[11, 1] = -1
    edges = person()
    edges[0] = edges[1]  # a zero-length limb
    edges[2] = (10.0, -20.0)  # off the canvas after the -40 shift
    edges[7] = (300.0, 260.5)  # beyond the right/bottom edge
    few = np.full((18, 2), -1.0)
    few[[1, 2, 3]] = person()[[1, 2, 3]]
    integers = np.floor(person())  # integer pixel values, as OpenPose files mostly hold
    return [full, partly, only_x, edges, few, integers]


def smooth_image(rng: np.random.Generator, width: int, height: int):
    from PIL import Image

    low = (rng.uniform(0, 255, (6, 4, 3))).astype(np.uint8)
    return Image.fromarray(low).resize((width, height), Image.BICUBIC)


def load_official_dataset_module(xmdpt: Path):
    spec = importlib.util.spec_from_file_location("xmdpt_my_dataset", xmdpt / "masked_diffusion" / "my_dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def packed(t: torch.Tensor) -> torch.Tensor:
    """float32 tensor -> zlib-compressed raw bytes as uint8 (lossless)."""
    raw = t.detach().contiguous().float().numpy().tobytes()
    return torch.frombuffer(bytearray(zlib.compress(raw, 9)), dtype=torch.uint8).clone()


def digest(t: torch.Tensor) -> str:
    """SHA-256 of a tensor's float32 bytes (C order)."""
    import hashlib

    return hashlib.sha256(t.detach().contiguous().float().numpy().tobytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--official", required=True, type=Path, help="checkout of trungpx/xmdpt")
    parser.add_argument("--pidm", required=True, type=Path, help="checkout of ankanbhunia/PIDM (its LMDB writer)")
    parser.add_argument("--commit", help="X-MDPT commit (default: git rev-parse HEAD in --official)")
    parser.add_argument("--pidm-commit", help="PIDM commit (default: git rev-parse HEAD in --pidm)")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "pose_render")
    args = parser.parse_args()
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    rng = np.random.default_rng(12)
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "deepfashion"
        for name in IMAGES:
            path = root / f"{name}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            smooth_image(rng, 220, 320).save(path, quality=95)
        sets = keypoint_sets(rng)
        pose_texts = {}
        for k, keypoints in enumerate(sets):
            pose_file = root / "extra_pose" / f"set{k}.txt"
            pose_file.parent.mkdir(parents=True, exist_ok=True)
            np.savetxt(pose_file, keypoints)
            pose_texts[f"extra_pose/set{k}.txt"] = pose_file.read_text()
        for i, name in enumerate(IMAGES):  # the pairs' targets use sets 0..3
            pose_file = root / f"{name.replace('img/', 'pose/')}.txt"
            pose_file.parent.mkdir(parents=True, exist_ok=True)
            np.savetxt(pose_file, sets[i])
            pose_texts[f"{name.replace('img/', 'pose/')}.txt"] = pose_file.read_text()
        pairs_text = "".join(f"{IMAGES[t]}.jpg,{IMAGES[s]}.jpg\n" for t, s in PAIRS)
        (root / "test_pairs.txt").write_text(pairs_text)
        (root / "train_pairs.txt").write_text(f"{IMAGES[0]}.jpg,{IMAGES[3]}.jpg\n")

        sys.path.insert(0, str(args.pidm / "data"))
        from prepare_data import prepare_data  # PIDM's official LMDB writer

        prepare_data(root=str(root), dataset="deepfashion", out=str(root), n_worker=1, sizes=[(256, 256)], chunksize=1)
        import lmdb

        with lmdb.open(str(root / "256-256"), readonly=True, lock=False) as env, env.begin() as txn:
            items = sorted((bytes(k), bytes(v)) for k, v in txn.cursor())
        for n, (key, value) in enumerate(items):
            tensors[f"lmdb_value_{n}"] = torch.frombuffer(bytearray(value), dtype=torch.uint8).clone()
        meta["lmdb_keys"] = json.dumps([key.decode("utf-8") for key, _ in items])

        official = load_official_dataset_module(args.official)
        dataset = official.FashionDataset(data_dir=str(root) + "/", is_inference=True, labels_required=True)
        for i in range(len(dataset)):
            item, _ = dataset[i]
            # images in [-1, 1] are exact functions of the PNG bytes on every platform: their SHA-256 suffices
            meta[f"pair{i}_source_sha256"] = digest(item["source_image"])  # (3, 256, 256) in [-1, 1]
            meta[f"pair{i}_target_sha256"] = digest(item["target_image"])
            tensors[f"pair{i}_pose"] = packed(item["target_skeleton"])  # (3, 256, 256) in [0, 1]
            if i == 0:  # interpolation may differ in the last bit across CPUs: values, every other pixel
                for name, t in (("source", item["source_image"]), ("pose", item["target_skeleton"])):
                    resized = TF.resize(t, 224, InterpolationMode.BICUBIC, antialias=False)  # torchvision 0.13.1
                    tensors[f"pair{i}_dino_{name}"] = resized[:, ::2, ::2].contiguous()  # (3, 112, 112)
        image, param = dataset.get_image_tensor(f"{IMAGES[0]}.png")
        for k in range(len(sets)):
            pose, _ = dataset.get_label_tensor(str(root / "extra_pose" / f"set{k}.txt"), image, param)
            tensors[f"set{k}_pose"] = packed(pose)

    def commit(path: Path, given: str | None) -> str:
        return given or subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True,
                                       text=True).stdout.strip() or "unknown"

    meta.update({
        "official": "trungpx/xmdpt masked_diffusion/my_dataset.py FashionDataset (test-time __getitem__, "
                    "get_label_tensor); LMDB by ankanbhunia/PIDM data/prepare_data.py",
        "xmdpt_commit": commit(args.official, args.commit), "pidm_commit": commit(args.pidm, args.pidm_commit),
        "pairs": pairs_text, "train_pairs": f"{IMAGES[0]}.jpg,{IMAGES[3]}.jpg\n", "pose_files": json.dumps(pose_texts),
        "num_pairs": str(len(PAIRS)), "num_sets": str(len(sets)),
        "dino_resize": "torchvision.transforms.functional.resize(t, 224, BICUBIC, antialias=False)",
        "packing": "*_pose: zlib-compressed float32 bytes, C order, (3,256,256); *_sha256: of float32 bytes; "
                   "pair0_dino_*: float32 (3,112,112) = the 224-px tensor [:, ::2, ::2]",
    })
    args.out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(args.out / "pose_render.safetensors"), metadata=meta)
    print(f"wrote {args.out / 'pose_render.safetensors'}")


if __name__ == "__main__":
    main()
