"""Golden fixture for the pose FID: PIDM's own ``FID`` feature path on random Inception-v3 weights.

Usage: python tools/golden/make_pidm_fid.py --official PATH/TO/PIDM [--commit SHA] [--out tests/fixtures/pidm_fid]

Runs PIDM's ``utils/metrics.py`` ``FID.compute_statistics_of_path`` (imageio read, ``cv2.resize`` to 176x256,
``/255``, batches through ``utils/inception.py`` ``InceptionV3`` built on ``torchvision.models.inception_v3(
pretrained=True)``) on a folder of a few generated 256x256 PNGs, and records the pool features it computes
and the mean it returns.

Weights: :func:`condbench.metrics.pidm_fid.random_state_dict` (seed below), written where torchvision looks
for ``inception_v3_google-0cc3c7bd.pth`` (``$TORCH_HOME/hub/checkpoints``, a temporary folder), so PIDM's
``pretrained=True`` loads them without a download (torchvision only checks the hash when it downloads).
The fixture stores the seed and the SHA-256 of the state dict; the test regenerates and checks it.

Stubs (for imports only, nothing that is compared): ``utils/metrics.py`` imports ``compare_ssim`` /
``compare_psnr`` from ``skimage.measure`` (removed in scikit-image 0.19; aliased to their new names) and
``pandas`` (only used by its Market-1501 mask LPIPS; an empty module). ``FID.__init__`` moves the model to
CUDA, so the instance is assembled with the same attributes on the CPU.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

SEED = 3
NUM_IMAGES = 3


def smooth_png(rng: np.random.Generator, path: Path) -> None:
    from PIL import Image

    low = rng.uniform(0, 255, (5, 4, 3)).astype(np.uint8)
    Image.fromarray(low).resize((256, 256), Image.BICUBIC).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--official", required=True, type=Path, help="checkout of ankanbhunia/PIDM")
    parser.add_argument("--commit")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "pidm_fid")
    args = parser.parse_args()

    from condbench.metrics.pidm_fid import INCEPTION_WEIGHTS, random_state_dict, state_dict_sha256

    with tempfile.TemporaryDirectory() as tmp:
        state = random_state_dict(SEED)
        checkpoints = Path(tmp) / "torch_home" / "hub" / "checkpoints"
        checkpoints.mkdir(parents=True)
        torch.save(state, checkpoints / INCEPTION_WEIGHTS.filename)
        os.environ["TORCH_HOME"] = str(Path(tmp) / "torch_home")

        import skimage.measure
        from skimage.metrics import peak_signal_noise_ratio, structural_similarity

        skimage.measure.compare_ssim = structural_similarity  # import-only stubs (see the docstring)
        skimage.measure.compare_psnr = peak_signal_noise_ratio
        sys.modules.setdefault("pandas", types.ModuleType("pandas"))
        sys.path.insert(0, str(args.official / "utils"))
        spec = importlib.util.spec_from_file_location("pidm_metrics", args.official / "utils" / "metrics.py")
        metrics = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(metrics)

        fid = metrics.FID.__new__(metrics.FID)  # FID.__init__ without its .cuda()
        fid.dims, fid.batch_size, fid.cuda, fid.verbose = 2048, 64, False, False
        fid.model = metrics.InceptionV3([metrics.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
        loaded = {k: v for k, v in fid.model.state_dict().items()}
        assert torch.equal(loaded["blocks.0.0.conv.weight"], state["Conv2d_1a_3x3.conv.weight"]), "weights not loaded"

        folder = Path(tmp) / "images"
        folder.mkdir()
        rng = np.random.default_rng(SEED)
        for i in range(NUM_IMAGES):
            smooth_png(rng, folder / f"img{i}.png")
        captured = {}
        original = fid.get_activations

        def recording(images, verbose=False):
            captured["activations"] = original(images, verbose)
            return captured["activations"]

        fid.get_activations = recording
        # the order PIDM reads the files in (glob order), so features can be matched to images
        order = [p.name for p in list(folder.glob("*.jpg")) + list(folder.glob("*.png"))]
        with torch.no_grad():
            mu, _ = fid.compute_statistics_of_path(str(folder), False)

        tensors = {"state_seed": torch.tensor(SEED), "features": torch.from_numpy(captured["activations"]).float(),
                   "mu": torch.from_numpy(np.asarray(mu, dtype=np.float64))}
        for name in order:
            tensors[f"png_{name}"] = torch.frombuffer(bytearray((folder / name).read_bytes()), dtype=torch.uint8).clone()
        assert np.array_equal(captured["activations"].astype(np.float32).astype(np.float64), captured["activations"])

    commit = args.commit or subprocess.run(["git", "-C", str(args.official), "rev-parse", "HEAD"], capture_output=True,
                                           text=True).stdout.strip() or "unknown"
    meta = {"official": "ankanbhunia/PIDM utils/metrics.py FID.compute_statistics_of_path + utils/inception.py",
            "commit": commit, "order": ",".join(order), "state_sha256": state_dict_sha256(state),
            "features": "float32 values of PIDM's float64 activations (exact), rows in 'order'"}
    args.out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(args.out / "pidm_fid.safetensors"), metadata=meta)
    print(f"wrote {args.out / 'pidm_fid.safetensors'}")


if __name__ == "__main__":
    main()
