"""CLIP score against torchmetrics' CLIPScore on a tiny random CLIP saved to a temporary directory.

The tiny CLIP (2-layer text and vision towers, 32x32 images, a byte-level vocabulary without merges) is made
with transformers' own classes and save_pretrained; condbench and torchmetrics both load that directory.
torchmetrics 1.9 expects get_image_features/get_text_features to return tensors (transformers 4); under
transformers 5 they return an output whose pooler_output is that tensor, so torchmetrics is handed the same
directory through its documented model factory with a subclass that returns pooler_output.
"""
from __future__ import annotations

import pytest
import torch

from condbench.checkpoints import CheckpointNotFoundError
from condbench.metrics.clip_score import ClipScore, class_prompts, clip_score_of

transformers = pytest.importorskip("transformers")
pytest.importorskip("torchmetrics")


def save_tiny_clip(directory, seed: int = 0) -> None:
    from tokenizers.pre_tokenizers import ByteLevel

    chars = sorted(ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    tokenizer = transformers.CLIPTokenizer(vocab=vocab, merges=[])
    images = transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, projection_dim=16)
    special = dict(bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                   pad_token_id=vocab["<|endoftext|>"])
    config = transformers.CLIPConfig(text_config=dict(vocab_size=len(vocab), max_position_embeddings=77, **special,
                                                      **tower),
                                     vision_config=dict(image_size=32, patch_size=8, **tower), projection_dim=16)
    torch.manual_seed(seed)
    transformers.CLIPModel(config).save_pretrained(directory)
    transformers.CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(directory)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    directory = tmp_path_factory.mktemp("clip") / "openai-tiny-clip"  # torchmetrics wants "openai" in the name
    save_tiny_clip(directory, seed=3)  # per-sample scores of both signs, positive mean
    return directory


def images_and_prompts():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 40, 48), generator=g, dtype=torch.uint8)
    prompts = class_prompts([0, 1, 2, 0, 1, 2], ["tench", "goldfish", "great white shark"])
    return images, prompts


def test_matches_torchmetrics_clip_score(tiny_clip):
    from torchmetrics.multimodal.clip_score import CLIPScore

    class TensorCLIP(transformers.CLIPModel):  # transformers-5 outputs -> the tensors torchmetrics expects
        def get_image_features(self, *args, **kwargs):
            out = super().get_image_features(*args, **kwargs)
            return out if isinstance(out, torch.Tensor) else out.pooler_output

        def get_text_features(self, *args, **kwargs):
            out = super().get_text_features(*args, **kwargs)
            return out if isinstance(out, torch.Tensor) else out.pooler_output

    images, prompts = images_and_prompts()
    metric = CLIPScore(model_name_or_path=lambda: (TensorCLIP.from_pretrained(tiny_clip).eval(),
                                                   transformers.CLIPProcessor.from_pretrained(tiny_clip)))
    metric.update(images[:4], prompts[:4])
    metric.update(images[4:], prompts[4:])
    expected = float(metric.compute())

    ours = ClipScore(tiny_clip, batch_size=4)
    ours.update(images, prompts)
    result = ours.compute()
    assert abs(result["clip_score"]) > 1e-3  # a random CLIP still gives non-zero cosines
    assert result["clip_score"] == pytest.approx(expected, rel=1e-5, abs=1e-5)
    assert len(ours.scores()) == 6 and (ours.scores() < 0).any()  # clipping per sample would differ
    assert result["protocol"]["model"] == str(tiny_clip) and result["protocol"]["prompt"] == "a photo of a {class name}"
    assert ours.score(images.float() / 255, prompts).numpy() == pytest.approx(ours.scores(), abs=1e-4)


def test_reduction_clips_the_mean_at_zero():
    assert clip_score_of([-5.0, 1.0]) == 0.0 and clip_score_of([-1.0, 5.0]) == 2.0


def test_prompts_name_the_class():
    assert class_prompts(torch.tensor([1]), ["tench", "goldfish"]) == ["a photo of a goldfish"]


def test_missing_model_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDBENCH_OFFLINE", "1")
    with pytest.raises(CheckpointNotFoundError) as info:
        ClipScore("openai/clip-vit-base-patch16", cache_dir=tmp_path)
    message = str(info.value)
    assert "openai/clip-vit-base-patch16" in message and str(tmp_path) in message
    assert "save_pretrained" in message and "clip_model" in message
