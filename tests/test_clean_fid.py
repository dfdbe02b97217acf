"""clean-fid's resize (compared with clean-fid itself), the Inception entry point, and cached folder statistics.

The Inception here has random weights (tests only); no number from it is a metric. Tests that run it at
299 x 299 on the CPU take several seconds each and are marked slow, like the ADM metric tests.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from condbench.cache import ShardCache
from condbench.datasets.image_folders import list_images
from condbench.metrics.clean_fid import (FolderReference, center_crop_resize, clean_pool_features, clean_resize,
                                         reference_key)
from condbench.metrics.inception import InceptionFeatures, random_state_dict


@pytest.fixture(scope="module")
def inception() -> InceptionFeatures:
    return InceptionFeatures.from_state_dict(random_state_dict(seed=0))


def test_clean_resize_equals_clean_fid():
    build_resizer = pytest.importorskip("cleanfid.resize").build_resizer
    images = torch.randint(0, 256, (2, 3, 37, 53), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ours = clean_resize(images)
    theirs = np.stack([build_resizer("clean")(img.permute(1, 2, 0).numpy()) for img in images])  # (N, 299, 299, 3)
    assert ours.dtype == torch.float32 and np.array_equal(ours.permute(0, 2, 3, 1).numpy(), theirs)
    assert not np.array_equal(theirs, np.round(theirs))  # kept as floats, not re-quantised


@pytest.mark.slow
def test_first_convolution_entry_equals_torch_fidelity_on_299_images(inception):
    images = torch.randint(0, 256, (1, 3, 299, 299), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    # at 299 both resizes are the identity, so the two paths into the network must agree
    assert torch.equal(clean_pool_features(inception, images), inception(images).pool.cpu())


@pytest.mark.slow
def test_folder_statistics_are_cached_under_the_files_content(tmp_path, inception):
    folder = tmp_path / "ref"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    crop = center_crop_resize(folder / "0.png", 16)
    assert crop.shape == (3, 16, 16) and crop.dtype == torch.uint8
    first = FolderReference.compute(folder, 16, inception, cache_dir=tmp_path / "cache")
    cache = ShardCache(tmp_path / "cache")
    assert first.count == 3 and first.mu.shape == (2048,) and cache.path(first.key).is_file()
    cache.put(first.key, {"mu": first.mu + 1, "sigma": first.sigma})  # a marked entry
    again = FolderReference.compute(folder, 16, inception, cache_dir=tmp_path / "cache")
    assert again.key == first.key and np.array_equal(again.mu, first.mu + 1)  # read from the cache, not recomputed
    files = list_images(folder)
    Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(folder / "0.png")
    assert reference_key(folder, files, 16, inception) != first.key
    assert reference_key(folder, files[:2], 16, inception) != reference_key(folder, files, 16, inception)
    assert reference_key(folder, files, 32, inception) != reference_key(folder, files, 16, inception)
