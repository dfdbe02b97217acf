"""ADM-protocol metrics against torch-fidelity 0.4 on the same (random) Inception weights.

The published Inception weights cannot be downloaded here, so both condbench's extractor and torch-fidelity's
``calculate_metrics`` load one random state dict (scaled so features are finite and vary between images).
Samples and reference images are small smooth colour fields; a quarter of the reference images are much darker,
so FID is far from 0 and Precision/Recall are strictly between 0 and 1. Full-size Inception costs about 0.2 s
per image and pass on one core, hence only 12 images a side; the parity fixture still takes ~40 s on two busy
cores, most of it scipy's sqrtm of 2048x2048 singular products (the ADM formula; FID and sFID), so the tests
that use it are marked slow.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from condbench.checkpoints import CheckpointMismatchError, CheckpointNotFoundError
from condbench.metrics.adm import AdmAccumulator, adm_inception_score, precision_recall
from condbench.metrics.inception import SFID_DIM, InceptionFeatures, as_uint8_images, random_state_dict
from condbench.metrics.reference_batch import ReferenceBatch, ReferenceBatchError, iter_batch_images

torch_fidelity = pytest.importorskip("torch_fidelity")

N = 12  # samples and reference images each


def colour_fields(n: int, seed: int, spread: float, shift: float) -> torch.Tensor:
    """uint8 (n, 3, 40, 40): upsampled 4x4 random colours, a brightness offset and pixel noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = F.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=40, mode="bilinear", align_corners=False)
    x = spread * coarse + 0.4 * torch.rand(n, 1, 1, 1, generator=g) + shift
    x = 0.9 * x.clamp(0, 1) + 0.1 * torch.rand(n, 3, 40, 40, generator=g)
    return (x * 255).round().to(torch.uint8)


class ImageSet(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


slow = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("adm")
    state = random_state_dict(seed=0)
    weights = tmp / "random-inception.pth"
    torch.save(state, weights)
    extractor = InceptionFeatures.from_state_dict(state)
    samples = colour_fields(N, 1, 0.6, 0.0)
    refs = torch.cat([colour_fields(N - 3, 2, 0.6, 0.0), colour_fields(3, 3, 0.6, -0.5)])  # 3 dark outliers

    ref_acc = AdmAccumulator(extractor, batch_size=N, npz_path=tmp / "ref.npz")
    ref_acc.update(refs)
    reference = ReferenceBatch.load(ref_acc.close(as_reference=True))

    acc = AdmAccumulator(extractor, batch_size=N, npz_path=tmp / "samples.npz")
    acc.update(samples[: N // 2])
    acc.update(samples[N // 2:].float() / 255)  # float input in [0, 1] quantises back to the same bytes
    ours = acc.compute(reference, pr_distance="exact")  # torch-fidelity's P/R use exact distances

    theirs = torch_fidelity.calculate_metrics(
        input1=ImageSet(samples), input2=ImageSet(refs), cuda=False, batch_size=N, fid=True, isc=True, prc=True,
        feature_extractor="inception-v3-compat", feature_extractor_weights_path=str(weights),
        isc_splits=1, samples_shuffle=False, prc_neighborhood=3, save_cpu_ram=True, cache=False, verbose=False)
    return dict(tmp=tmp, weights=weights, extractor=extractor, samples=samples, refs=refs, reference=reference,
                acc=acc, ours=ours, theirs=theirs)


@slow
def test_fid_matches_torch_fidelity(setup):
    ours, theirs = setup["ours"], setup["theirs"]
    assert ours["fid"] > 1e-3  # the two image distributions differ
    assert ours["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-6)


@slow
def test_inception_score_matches_torch_fidelity(setup):
    ours, theirs = setup["ours"], setup["theirs"]
    assert ours["inception_score"] > 1.01  # not the degenerate 1 of identical predictions
    assert ours["inception_score"] == pytest.approx(theirs["inception_score_mean"], rel=1e-4)
    assert ours["protocol"]["is_splits"] == 1 and ours["protocol"]["is_split_size"] == 5000


@slow
def test_precision_recall_match_torch_fidelity(setup):
    ours, theirs = setup["ours"], setup["theirs"]
    assert 0 < ours["precision"] < 1 and 0 < ours["recall"] < 1
    assert ours["precision"] == pytest.approx(theirs["precision"], rel=1e-4)
    assert ours["recall"] == pytest.approx(theirs["recall"], rel=1e-4)


@slow
def test_sfid_features_are_mixed_6d_branch1x1_in_tf_order(setup):
    """A hook on torch-fidelity's own network, flattened like the TF evaluator: NHWC, then [..., :7]."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    network = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                          feature_extractor_weights_path=str(setup["weights"]))
    grabbed = []
    network.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, o: grabbed.append(o.clone()))
    images = setup["samples"][:4]
    with torch.no_grad():
        network(images)
    nhwc = grabbed[0].numpy().transpose(0, 2, 3, 1)  # (4, 17, 17, 768)
    expected = nhwc[..., :7].reshape(4, -1)  # (4, 2023)
    ours = setup["acc"].features().spatial[:4]
    assert ours.shape == (4, SFID_DIM)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
    assert ours.std(axis=0).mean() > 1e-3
    assert setup["ours"]["sfid"] > 1e-3


@slow
def test_samples_npz_is_what_the_tf_evaluator_reads(setup):
    with np.load(setup["tmp"] / "samples.npz") as data:
        assert data.files == ["arr_0"]
        arr = data["arr_0"]
    assert arr.dtype == np.uint8 and arr.shape == (N, 40, 40, 3)
    np.testing.assert_array_equal(arr, setup["samples"].permute(0, 2, 3, 1).numpy())
    streamed = np.concatenate(list(iter_batch_images(setup["tmp"] / "samples.npz", batch_size=5)))
    np.testing.assert_array_equal(streamed, arr)


@slow
def test_reference_features_come_from_the_cache(setup):
    reference, extractor = setup["reference"], setup["extractor"]
    cache = reference.pool_cache()
    key = reference.pool_key(extractor.weights_sha256)
    assert cache.root == reference.path.parent / "reference_features"  # beside the batch, as the sidecar was
    assert cache.path(key).is_file()  # stored when the reference batch was written
    other = InceptionFeatures.from_state_dict(random_state_dict(seed=1))
    assert reference.pool_key(other.weights_sha256) != key  # other weights never reuse these features
    stored = cache.get(key)["features"]
    np.testing.assert_array_equal(stored, reference.pool_features(extractor))
    cache.path(key).unlink()  # recomputed from the npz's images, streamed, and stored again
    np.testing.assert_allclose(reference.pool_features(extractor, batch_size=N), stored, rtol=1e-5, atol=1e-6)
    assert cache.path(key).is_file()


@slow
def test_protocol_is_recorded(setup):
    protocol = setup["ours"]["protocol"]
    assert protocol["sample_count"] == N and protocol["pr_k"] == 3
    assert "Mixed_6d.branch1x1" in protocol["sfid_features"] and "not the published" in protocol["weights"]


def test_inception_score_splits_follow_the_evaluator():
    """Consecutive fixed-size splits in sample order, the shorter tail included (the evaluator's loop)."""
    logits = torch.randn(11, 6, generator=torch.Generator().manual_seed(0)).numpy() * 3

    def reference_is(part):  # the improved-gan formula, in numpy
        p = np.exp(part - part.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        return np.exp(np.mean(np.sum(p * (np.log(p) - np.log(p.mean(0, keepdims=True))), 1)))

    expected = [reference_is(logits[i:i + 4].astype(np.float64)) for i in (0, 4, 8)]
    mean, std, splits = adm_inception_score(logits, split_size=4)
    assert splits == 3 and mean == pytest.approx(np.mean(expected), rel=1e-9) and std == pytest.approx(np.std(expected))
    assert adm_inception_score(logits)[2] == 1


def test_precision_recall_excludes_self_and_uses_k():
    """Reference points on a line 0..9; a sample at 0.5 lies within every reference ball (radius 3)."""
    ref = np.arange(10, dtype=np.float64)[:, None]
    gen = np.array([[0.5], [1.5], [2.5], [100.0]])
    precision, recall = precision_recall(gen, ref, k=3)
    assert precision == 0.75  # the far sample is outside
    # sample radii (3rd neighbour, self excluded): 100.0 for the first three, 97.5 for the far one -> all covered
    assert recall == 1.0


def test_float_images_quantise_like_dit():
    x = torch.tensor([0.0, 0.5 / 255, 1.49 / 255, 1.0]).view(1, 1, 1, 4).expand(1, 3, 1, 4)
    assert as_uint8_images(x)[0, 0, 0].tolist() == [0, 1, 1, 255]


def test_missing_inception_weights_refuse_with_remedy(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDBENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("CONDBENCH_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(CheckpointNotFoundError) as info:
        InceptionFeatures.load()
    message = str(info.value)
    assert "weights-inception-2015-12-05-6726825d.pth" in message and str(tmp_path) in message
    assert "releases/download/v0.2.0" in message and "CONDBENCH_INCEPTION_WEIGHTS" in message
    with pytest.raises(CheckpointNotFoundError, match="nowhere.pth"):
        InceptionFeatures.load(tmp_path / "nowhere.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(3)}, wrong)
    with pytest.raises(CheckpointMismatchError, match="wrong.pth is not torch-fidelity's weights-inception"):
        InceptionFeatures.load(wrong)


def test_truncated_or_incomplete_reference_is_refused(tmp_path):
    good_path = tmp_path / "good.npz"
    np.savez(good_path, arr_0=np.zeros((4, 8, 8, 3), np.uint8), mu=np.zeros(2048, np.float32),
             sigma=np.eye(2048, dtype=np.float32), mu_s=np.zeros(2023, np.float32), sigma_s=np.eye(2023, dtype=np.float32))
    assert ReferenceBatch.load(good_path).num_images == 4
    good = good_path.read_bytes()
    truncated = tmp_path / "VIRTUAL_imagenet256_labeled.npz"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(ReferenceBatchError, match="VIRTUAL_imagenet256_labeled.npz.*truncated") as info:
        ReferenceBatch.load(truncated)
    assert "VIRTUAL_imagenet256_labeled.npz" in str(info.value) and "https://" in str(info.value)

    incomplete = tmp_path / "incomplete.npz"
    np.savez(incomplete, arr_0=np.zeros((4, 8, 8, 3), np.uint8), mu=np.zeros(2048), sigma=np.eye(2048))
    with pytest.raises(ReferenceBatchError, match="incomplete.npz lacks mu_s, sigma_s"):
        ReferenceBatch.load(incomplete)

    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, arr_0=np.zeros((4, 8, 8, 3), np.uint8), mu=np.zeros(2048), sigma=np.eye(2048),
             mu_s=np.zeros(2048), sigma_s=np.eye(2023))
    with pytest.raises(ReferenceBatchError, match=r"wrong.npz: mu_s must be a float array of shape \(2023,\)"):
        ReferenceBatch.load(wrong)


# --- Precision/Recall with the evaluator's arithmetic --------------------------------------------------------
def _evaluator_distance_block(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """ADM's DistanceBlock, written from evaluations/evaluator.py: `_batch_pairwise_distances` on float16 casts
    (float32 accumulation, float16 results), the float32 formula for the whole block when float16 overflows."""
    def pairwise(a, b, dtype):
        a, b = a.astype(dtype), b.astype(dtype)
        norm_a = np.square(a).astype(np.float32).sum(1).astype(dtype).reshape(-1, 1)
        norm_b = np.square(b).astype(np.float32).sum(1).astype(dtype).reshape(1, -1)
        product = (a.astype(np.float32) @ b.astype(np.float32).T).astype(dtype)
        return np.maximum((norm_a - (2 * product).astype(dtype)).astype(dtype) + norm_b, 0).astype(dtype)

    block16 = pairwise(u, v, np.float16)
    return block16.astype(np.float32) if np.isfinite(block16).all() else pairwise(u, v, np.float32)


def _evaluator_precision_recall(samples, reference, k, batch):
    """ManifoldEstimator.manifold_radii and evaluate_pr with row/col batches of ``batch``."""
    def radii(features):
        out = np.zeros(len(features), dtype=np.float32)
        for b1 in range(0, len(features), batch):
            rows = features[b1:b1 + batch]
            distances = np.concatenate([_evaluator_distance_block(rows, features[b2:b2 + batch])
                                        for b2 in range(0, len(features), batch)], axis=1)
            out[b1:b1 + batch] = np.partition(distances, np.arange(k + 1), axis=1)[:, k]
        return out

    ref_radii, gen_radii = radii(reference), radii(samples)
    ref_in, gen_in = np.zeros(len(reference), bool), np.zeros(len(samples), bool)
    for b1 in range(0, len(reference), batch):
        for b2 in range(0, len(samples), batch):
            d = _evaluator_distance_block(reference[b1:b1 + batch], samples[b2:b2 + batch])
            ref_in[b1:b1 + batch] |= (d <= gen_radii[None, b2:b2 + batch]).any(axis=1)
            gen_in[b2:b2 + batch] |= (d <= ref_radii[b1:b1 + batch, None]).any(axis=0)
    return float(gen_in.mean()), float(ref_in.mean())


def _pool_like_features(n: int, seed: int, dim: int = 64) -> np.ndarray:
    """Like Inception's pool_3 features: a large common part and small differences, so that squared norms (~1,100)
    are rounded by float16 to 0.5-1 while neighbours are only ~30 apart."""
    rng = np.random.default_rng(seed)
    return (4 + 0.7 * np.abs(rng.normal(0, 1, (n, dim)))).astype(np.float32)


def test_precision_recall_follow_the_evaluators_float16_blocks():
    samples, reference = _pool_like_features(70, 1), _pool_like_features(90, 2)
    samples[:3] *= 40  # squared norms beyond float16's range: their blocks fall back to float32
    ours = precision_recall(samples, reference, k=3, block=16)
    assert ours == _evaluator_precision_recall(samples, reference, k=3, batch=16)
    assert ours != precision_recall(samples, reference, k=3, distance="exact", block=16)  # the arithmetic matters


def test_exact_precision_recall_use_float64_distances():
    from scipy.spatial.distance import cdist

    samples, reference = _pool_like_features(40, 3).astype(np.float64), _pool_like_features(50, 4).astype(np.float64)
    ref_r = np.sort(cdist(reference, reference), axis=1)[:, 3]
    gen_r = np.sort(cdist(samples, samples), axis=1)[:, 3]
    d = cdist(samples, reference)
    expected = (float((d <= ref_r[None, :]).any(1).mean()), float((d <= gen_r[:, None]).any(0).mean()))
    assert precision_recall(samples, reference, k=3, distance="exact", block=7) == expected
    with pytest.raises(ValueError, match="distance must be one of"):
        precision_recall(samples, reference, distance="float32")
