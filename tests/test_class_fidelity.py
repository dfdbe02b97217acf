"""Class fidelity with tiny random classifiers (no released weights are downloaded)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from condbench.checkpoints import CheckpointNotFoundError
from condbench.metrics.imagenet_classifier import ClassFidelity


def tiny_classifier() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def test_accuracy_against_requested_labels():
    model = tiny_classifier()
    metric = ClassFidelity(model, lambda x: x.float() / 255, "tiny", batch_size=3)
    images = torch.randint(0, 256, (8, 3, 12, 12), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    with torch.no_grad():
        predicted = model(images.float() / 255).argmax(dim=1)
    labels = torch.where(torch.arange(8) < 5, predicted, (predicted + 1) % 10)  # 5 of 8 requested = predicted
    metric.update(images[:4], labels[:4])
    metric.update(images[4:].float() / 255, labels[4:])  # float input quantises back to the same bytes
    result = metric.compute()
    assert result["class_fidelity"] == 5 / 8
    assert metric.hits().tolist() == [True] * 5 + [False] * 3
    assert result["protocol"] == {"classifier": "tiny", "metric": "top-1 accuracy against the requested class",
                                  "sample_count": 8}


def test_torchvision_weights_come_from_the_hub_cache(tmp_path, monkeypatch):
    """A random ResNet-18 placed under the released file name is loaded and used with its own preprocessing."""
    from torchvision.models import resnet18

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(0)
    reference = resnet18().eval()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(reference.state_dict(), tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    metric = ClassFidelity.torchvision("resnet18", "IMAGENET1K_V1")
    images = torch.randint(0, 256, (2, 3, 64, 80), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    with torch.no_grad():
        expected = reference(metric.preprocess(images)).argmax(dim=1)
    assert torch.equal(metric.predict(images), expected)
    assert metric.name == "torchvision resnet18 IMAGENET1K_V1"


def test_missing_classifier_weights_are_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(CheckpointNotFoundError) as info:
        ClassFidelity.torchvision()
    message = str(info.value)
    assert "resnet50-11ad3fa6.pth" in message and str(tmp_path / "hub" / "checkpoints") in message
    assert "https://download.pytorch.org/models/resnet50-11ad3fa6.pth" in message and "classifier" in message
