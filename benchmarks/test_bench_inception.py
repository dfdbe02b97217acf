"""Throughput of the ADM Inception feature extraction on CPU (run with `tox -e bench`; printed, never asserted).

Random weights stand in for the published ones (same network, same cost): one batch of 256x256 uint8 images
through resize-to-299, pool_3, the unbiased logits and the sFID hook.
"""
import pytest
import torch

from condbench.metrics.inception import InceptionFeatures, random_state_dict

BATCH = 8


@pytest.fixture(scope="module")
def extractor():
    return InceptionFeatures.from_state_dict(random_state_dict(seed=0))


def test_inception_features_256px_cpu(benchmark, extractor):
    images = torch.randint(0, 256, (BATCH, 3, 256, 256), generator=torch.Generator().manual_seed(0),
                           dtype=torch.uint8)
    benchmark.group = f"ADM Inception features, CPU, batch {BATCH} x 256x256"
    out = benchmark.pedantic(extractor, args=(images,), rounds=3, warmup_rounds=1)
    assert out.pool.shape == (BATCH, 2048) and out.spatial.shape == (BATCH, 2023)
    if benchmark.stats is not None:  # absent under --benchmark-disable
        print(f"\nInception features: {BATCH / benchmark.stats.stats.mean:.1f} images/s "
              f"({torch.get_num_threads()} threads)")
