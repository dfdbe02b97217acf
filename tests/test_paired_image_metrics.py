"""The pose-guided protocol's metrics against the code that defines them (PIDM ``utils/metrics.py``).

SSIM / SSIM_256 / PSNR: scikit-image called the way PIDM calls it (written out below). LPIPS: the ``lpips``
package with identical (random) AlexNet weights, inputs prepared the way PIDM prepares them. FID features:
golden fixture ``tests/fixtures/pidm_fid`` from ``tools/golden/make_pidm_fid.py`` running PIDM's own
``FID.compute_statistics_of_path`` (ankanbhunia/PIDM @e4f1d880772072ee464a83240d0374bf466b6772) on random
Inception-v3 weights. The two tests that run Inception-v3 (about 0.3 s per image on a CPU core) are marked slow,
like the ADM Inception tests.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from condbench.checkpoints import CheckpointMismatchError, CheckpointNotFoundError
from condbench.metrics import paired_image as pim
from condbench.metrics import pidm_fid

FID_FIXTURE = Path(__file__).parent / "fixtures" / "pidm_fid" / "pidm_fid.safetensors"


def image_pairs(n: int = 3, size: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets with structure and generated images that resemble them imperfectly, uint8 (N, 3, size, size)."""
    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=gen)
    target = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    generated = target + 0.08 * torch.randn(n, 3, size, size, generator=gen)
    as_u8 = lambda x: (x.clamp(0, 1) * 255).round().to(torch.uint8)  # noqa: E731
    return as_u8(generated), as_u8(target)


def pidm_reconstruction(gt_u8: np.ndarray, pred_u8: np.ndarray) -> dict[str, float]:
    """PIDM ``Reconstruction_Metrics.calculate_from_disk`` for one pair, with scikit-image's current names.

    ``compare_psnr`` -> ``peak_signal_noise_ratio``; ``compare_ssim(..., multichannel=True)`` ->
    ``structural_similarity(..., channel_axis=-1)``. scikit-image 0.17.2 (PIDM's pin) cast both images to
    float64 inside ``compare_ssim`` and NumPy 1.x turned the float32 data_range into float64 arithmetic;
    both are made explicit here because current versions would stay in float32.
    """
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    img_gt = gt_u8.astype(np.float32) / 255.0
    img_pred = pred_u8.astype(np.float32) / 255.0
    psnr = peak_signal_noise_ratio(img_gt, img_pred, data_range=1)
    ssim = structural_similarity(img_gt.astype(np.float64), img_pred.astype(np.float64), data_range=1, win_size=51,
                                 channel_axis=-1)
    img_gt_256 = img_gt * 255.0
    img_pred_256 = img_pred * 255.0
    ssim_256 = structural_similarity(img_gt_256.astype(np.float64), img_pred_256.astype(np.float64),
                                     gaussian_weights=True, sigma=1.2, use_sample_covariance=False, channel_axis=-1,
                                     data_range=float(img_pred_256.max() - img_pred_256.min()))
    return {"psnr": psnr, "ssim": ssim, "ssim_256": ssim_256}


def test_reconstruction_metrics_equal_pidm_calls():
    generated, target = image_pairs()
    ours = pim.reconstruction_metrics(generated, target)
    assert set(ours) == {"psnr", "ssim", "ssim_256"} and all(v.shape == (3,) for v in ours.values())
    for i in range(3):
        reference = pidm_reconstruction(target[i].permute(1, 2, 0).numpy(), generated[i].permute(1, 2, 0).numpy())
        for name, value in reference.items():
            assert ours[name][i] == value, name
    assert 0.2 < ours["ssim"].mean() < 0.99 and 15 < ours["psnr"].mean() < 30
    # the float64 choice moves SSIM by float32 rounding only, against the literal float32 call of PIDM's code
    from skimage.metrics import structural_similarity

    gt, pred = (x[0].permute(1, 2, 0).numpy().astype(np.float32) / 255.0 for x in (target, generated))
    literal = structural_similarity(gt, pred, data_range=1, win_size=51, channel_axis=-1)
    assert abs(literal - ours["ssim"][0]) < 1e-5


def test_reconstruction_metrics_quantise_float_images_and_see_identity():
    generated, target = image_pairs(n=2, size=64)
    as_float = pim.reconstruction_metrics(generated.float() / 255, target)
    as_uint8 = pim.reconstruction_metrics(generated, target)
    for name in as_uint8:
        np.testing.assert_array_equal(as_float[name], as_uint8[name])
    same = pim.reconstruction_metrics(target, target)
    np.testing.assert_allclose(same["ssim"], 1.0)
    np.testing.assert_allclose(same["ssim_256"], 1.0)
    assert np.isinf(same["psnr"]).all()
    with pytest.raises(ValueError, match="differ in shape"):
        pim.reconstruction_metrics(generated, target[:1])


def test_lpips_equals_lpips_package_on_pidm_inputs():
    import cv2
    import lpips
    from torchvision.models import alexnet

    torch.manual_seed(11)
    reference = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)  # lpips' linear weights, random AlexNet
    torch.manual_seed(11)
    backbone = alexnet(weights=None).state_dict()  # the same random draw, in torchvision's file layout
    assert torch.equal(reference.net.slice1[0].weight, backbone["features.0.weight"])
    ours = pim.LPIPSAlex.from_backbone_state_dict(backbone)

    generated, target = image_pairs(n=3)
    # PIDM LPIPS.calculate_from_disk: cv2.resize(imread(fn).astype(np.float32), (176, 256)) / 127.5 - 1, NCHW
    def pidm_batch(images: torch.Tensor) -> torch.Tensor:
        arrays = np.array([cv2.resize(im.permute(1, 2, 0).numpy().astype(np.float32), (176, 256)) / 127.5 - 1
                           for im in images])
        return torch.from_numpy(arrays.transpose((0, 3, 1, 2))).type(torch.FloatTensor)

    with torch.no_grad():
        expected = reference.forward(pidm_batch(generated), pidm_batch(target))[:, 0, 0, 0].double().numpy()
    got = ours(generated, target)
    assert got.shape == (3,) and (got > 0).all()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours(generated, target, batch_size=2), got, rtol=0, atol=1e-6)  # partial batch kept
    assert "drops the last partial batch" in ours.protocol()["differences"]


def test_lpips_refuses_without_the_alexnet_file(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDBENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(CheckpointNotFoundError) as error:
        pim.LPIPSAlex.load(download=False)
    message = str(error.value)
    assert "alexnet-owt-7be5be79.pth" in message and pim.ALEXNET_WEIGHTS.url in message
    assert str(tmp_path / "cache" / "weights" / "alexnet-owt-7be5be79.pth") in message
    wrong = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, wrong)
    with pytest.raises(CheckpointMismatchError, match="is not torchvision's alexnet-owt-7be5be79.pth"):
        pim.LPIPSAlex.load(wrong)
    with pytest.raises(CheckpointMismatchError, match="is not torchvision's AlexNet state dict"):
        pim.LPIPSAlex.from_backbone_state_dict({"features.0.weight": torch.zeros(64, 3, 11, 11)})


@pytest.fixture(scope="module")
def fid_golden():
    from safetensors import safe_open

    with safe_open(str(FID_FIXTURE), framework="pt") as handle:
        tensors, meta = {k: handle.get_tensor(k) for k in handle.keys()}, dict(handle.metadata())
    state = pidm_fid.random_state_dict(int(tensors["state_seed"]))
    assert pidm_fid.state_dict_sha256(state) == meta["state_sha256"], "random weights differ from the golden run's"
    return tensors, meta, pidm_fid.PidmInception.from_state_dict(state)


def write_fixture_images(folder: Path, tensors, meta) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    order = meta["order"].split(",")
    for name in order:
        (folder / name).write_bytes(tensors[f"png_{name}"].numpy().tobytes())
    return order


@pytest.mark.slow
def test_fid_features_equal_pidm_feature_path(tmp_path, fid_golden):
    """Slow-ish by nature (Inception-v3 at 299 px, about 0.3 s per image on a CPU core): three images, two passes."""
    tensors, meta, extractor = fid_golden
    order = write_fixture_images(tmp_path / "train", tensors, meta)
    images = torch.stack([torch.from_numpy(pidm_fid.read_rgb(tmp_path / "train" / n)).permute(2, 0, 1) for n in order])
    features = extractor.features(images, batch_size=2)
    golden = tensors["features"].numpy()
    assert features.shape == (len(order), 2048) and golden.std() > 1e-3
    np.testing.assert_allclose(features, golden, rtol=0, atol=1e-5 * max(1.0, np.abs(golden).max()))

    stats = pidm_fid.reference_statistics(tmp_path / "train", extractor, batch_size=2, cache_dir=tmp_path / "cache")
    assert stats.count == len(order)
    np.testing.assert_allclose(stats.mu, tensors["mu"].numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(stats.sigma, np.cov(golden.astype(np.float64), rowvar=False), rtol=0, atol=1e-5)


@pytest.mark.slow
def test_reference_statistics_cached_by_folder_contents(tmp_path, fid_golden, monkeypatch):
    tensors, meta, extractor = fid_golden
    folder = tmp_path / "train"
    order = write_fixture_images(folder, tensors, meta)
    for name in order[2:]:  # two images keep the test fast
        (folder / name).unlink()
    first = pidm_fid.reference_statistics(folder, extractor, cache_dir=tmp_path / "cache")
    assert not list(folder.glob("*.npz")), "nothing is written beside the images"

    def no_compute(*args, **kwargs):
        raise AssertionError("recomputed although the folder did not change")

    monkeypatch.setattr(extractor, "forward_unit", no_compute)
    again = pidm_fid.reference_statistics(folder, extractor, cache_dir=tmp_path / "cache")
    assert again.key == first.key and np.array_equal(again.mu, first.mu) and np.array_equal(again.sigma, first.sigma)
    (folder / order[0]).write_bytes((folder / order[1]).read_bytes())  # changed content: a new key, a recomputation
    with pytest.raises(AssertionError, match="recomputed"):
        pidm_fid.reference_statistics(folder, extractor, cache_dir=tmp_path / "cache")


def test_fid_refuses_without_the_inception_file(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDBENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(CheckpointNotFoundError) as error:
        pidm_fid.PidmInception.load(download=False)
    message = str(error.value)
    assert "inception_v3_google-0cc3c7bd.pth" in message and pidm_fid.INCEPTION_WEIGHTS.url in message
    with pytest.raises(CheckpointMismatchError, match="is not torchvision's Inception-v3"):
        pidm_fid.PidmInception.from_state_dict({"fc.weight": torch.zeros(1000, 2048)})


def test_fid_protocol_records_the_differences(fid_golden):
    protocol = fid_golden[2].protocol()
    assert "drops the last partial batch of 64" in protocol["differences"]
    assert protocol["weights"].startswith("state-dict (not the published")
