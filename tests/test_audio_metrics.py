"""Video-to-audio metrics against the code that defines them (fixtures in ``tests/fixtures/audio_metrics``).

- ``vggish.safetensors`` (``tools/golden/make_vggish.py``): harritaylor/torchvggish @f3f90969ce8fb77a05d984b892ddf662e8466377
  ``vggish_input.waveform_to_examples`` log-mel patches, and hkchengrex/av-benchmark
  @050a5cdb9bbd1a6f8cbb9fdde076992a695e2501 ``VGGish(postprocess=False)`` embeddings on random weights.
- ``panns.safetensors`` (``tools/golden/make_panns.py``): qiuqiangkong/audioset_tagging_cnn
  @d2f4b8c18eab44737fcc0de1248ae21eb43f6aa4 ``Cnn14`` 16 kHz with torchlibrosa 0.1.0, random weights (batch-norm
  statistics included): log-mel, embedding, logits, clipwise output.
- ``av_benchmark.safetensors`` (``tools/golden/make_av_benchmark.py``): av-benchmark @050a5cd
  ``AudioDataset.read_from_file`` on wav files, torchaudio 2.11 ``transforms.Resample``, and ``compute_fd``,
  ``compute_kl`` and ``compute_isc`` on stored features.

The networks are full size (the official code has no smaller configuration); the random weights are redrawn
from the fixtures' seeds, once per module. Networks are compared within 1e-5 of the reference's scale.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from condbench.checkpoints import CheckpointMismatchError, CheckpointNotFoundError
from condbench.metrics import panns, vggish
from condbench.metrics.audio import (AUDIO_PROTOCOL, AudioFeatureExtractor, AudioFeatures, audio_scores, kl_per_clip,
                                     load_clip, panns_inception_score, prepare_waveform, read_audio)
from condbench.metrics.resample import resample

from .conftest import assert_matches_official
from .golden_weights import weights_sum

FIXTURES = Path(__file__).parent / "fixtures" / "audio_metrics"


def golden(name: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = FIXTURES / f"{name}.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    return load_file(str(path)), meta


@pytest.fixture(scope="module")
def vggish_golden() -> tuple[vggish.VGGish, dict, dict]:
    io_, meta = golden("vggish")
    state = vggish.random_state_dict(int(meta["seed"]))
    assert weights_sum(state) == pytest.approx(float(meta["weights_sum"]), rel=1e-9), "the weights no longer redraw"
    model = vggish.VGGish()
    model.load_state_dict(state)
    return model.eval(), io_, meta


@pytest.fixture(scope="module")
def cnn14_golden() -> tuple[panns.Cnn14, dict, dict]:
    io_, meta = golden("panns")
    state = panns.random_state_dict(int(meta["seed"]))
    assert weights_sum(state) == pytest.approx(float(meta["weights_sum"]), rel=1e-9), "the weights no longer redraw"
    model = panns.Cnn14()
    model.load_state_dict(state)
    return model.eval(), io_, meta


@pytest.fixture
def empty_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CONDBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CONDBENCH_OFFLINE", "1")
    return tmp_path / "cache"


def constant_layout_file(path: Path, layout: dict[str, list[int]], value: float = 0.01, nest: str | None = None,
                         extra: dict | None = None) -> None:
    """A checkpoint in a released layout whose tensors are one stored number each, broadcast to their shapes
    (torch.save keeps the stride-0 views, so a 300 MB layout costs a few kB)."""
    state = {k: torch.tensor(value).expand(shape) for k, shape in layout.items()}
    torch.save({nest: state, **(extra or {})} if nest else state, path)


# --- VGGish -------------------------------------------------------------------------------------------------------

def test_vggish_log_mel_equals_torchvggish(vggish_golden):
    _, io_, _ = vggish_golden
    reference = io_["examples"]  # (N, P, 96, 64) float64
    n, p = reference.shape[:2]
    log_mel = vggish.vggish_log_mel(io_["waveforms"])  # (N, F, 64)
    assert log_mel.shape[1] == 1 + (io_["waveforms"].shape[1] - 400) // 160 > p * 96  # the partial patch is dropped
    torch.testing.assert_close(log_mel[:, :p * 96].reshape(n, p, 96, 64), reference, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(vggish.vggish_examples(io_["waveforms"]), reference.float(), atol=1e-5, rtol=1e-6)


def test_vggish_embeddings_equal_av_benchmark(vggish_golden):
    model, io_, meta = vggish_golden
    embeddings = model.embed(io_["waveforms"])
    assert embeddings.shape == (3, 2, 128)
    assert_matches_official(embeddings, io_["embeddings"])
    assert (io_["embeddings"] < 0).any(), "the last ReLU must be gone"
    assert (embeddings[0] - embeddings[1]).abs().mean() > 0.1, "different sounds must embed differently"


def test_vggish_loads_the_released_layout_and_rejects_others(vggish_golden, tmp_path):
    _, _, meta = vggish_golden
    layout = json.loads(meta["torchvggish_layout"])
    assert {k: list(v.shape) for k, v in vggish_golden[0].state_dict().items()} == layout
    released = tmp_path / vggish.VGGISH_WEIGHTS.filename
    constant_layout_file(released, layout, value=0.25)
    model = vggish.load_vggish(released)
    assert float(model.embeddings[4].bias[0].detach()) == 0.25 and not model.training

    pca_file = tmp_path / "vggish_pca_params-970ea276.pth"
    constant_layout_file(pca_file, {"pca_eigen_vectors": [128, 128], "pca_means": [128]})
    with pytest.raises(CheckpointMismatchError, match="missing keys: embeddings"):
        vggish.load_vggish(pca_file)


def test_vggish_missing_weights_name_the_file_and_url(empty_cache):
    with pytest.raises(CheckpointNotFoundError) as error:
        vggish.load_vggish()
    message = str(error.value)
    assert "vggish-10086976.pth" in message and vggish.VGGISH_WEIGHTS.url in message and str(empty_cache) in message


def test_vggish_refuses_clips_shorter_than_a_patch():
    with pytest.raises(ValueError, match="too short for one VGGish patch"):
        vggish.vggish_examples(torch.zeros(1, vggish.MIN_SAMPLES - 1))
    assert vggish.vggish_examples(torch.zeros(1, vggish.MIN_SAMPLES)).shape == (1, 1, 96, 64)


# --- PANNs Cnn14 --------------------------------------------------------------------------------------------------

def test_cnn14_log_mel_equals_librosa_and_torchlibrosa(cnn14_golden):
    import librosa

    model, io_, _ = cnn14_golden
    waves = io_["waveforms"]
    ours = model.logmel(waves)  # (N, 1, T, 64)
    for wave, mel in zip(waves.double().numpy(), ours[:, 0]):
        power = librosa.feature.melspectrogram(y=wave, sr=16000, n_fft=512, hop_length=160, win_length=512,
                                               window="hann", center=True, pad_mode="reflect", power=2.0, n_mels=64,
                                               fmin=50, fmax=8000)
        expected = librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=None).T  # (T, 64)
        np.testing.assert_allclose(mel.numpy(), expected, atol=2e-5, rtol=1e-6)
    # torchlibrosa's DFT is a float32 convolution, whose rounding (1e-7 of the frame's energy) swamps bins 70 dB
    # down: compared as power, relative to the loudest bin
    assert_matches_official(10 ** (ours / 10), 10 ** (io_["logmel"] / 10), tolerance=1e-5)
    torch.testing.assert_close(model.logmel.mel.float(), io_["melW"], atol=1e-7, rtol=1e-6)


def test_cnn14_outputs_equal_official(cnn14_golden):
    model, io_, _ = cnn14_golden
    out = model.embed(io_["waveforms"])
    assert out.embedding.shape == (3, 2048) and out.logits.shape == (3, 527)
    assert_matches_official(out.embedding, io_["embedding"])
    assert_matches_official(out.logits, io_["logits"])
    assert_matches_official(out.clipwise, io_["clipwise"])
    assert io_["embedding"].std() > 0.5 and io_["logits"].std() > 0.5, "the random network must not be degenerate"


def test_cnn14_loads_the_released_checkpoint_and_rejects_the_32k_model(cnn14_golden, tmp_path):
    model, io_, meta = cnn14_golden
    layout = json.loads(meta["official_layout"])
    network = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert network == {k: v for k, v in layout.items() if not k.startswith(panns.FRONT_END_PREFIXES)}

    def checkpoint(path: Path, mel: torch.Tensor) -> Path:
        state = {k: torch.tensor(0.5).expand(shape) for k, shape in layout.items() if k != "logmel_extractor.melW"}
        state["logmel_extractor.melW"] = mel
        # as main.py saves it: the iteration and the sampler's numpy index arrays beside the weights
        torch.save({"iteration": 580000, "model": state, "sampler": {"indexes": np.arange(6), "pointer": 2}}, path)
        return path

    model = panns.load_cnn14(checkpoint(tmp_path / panns.CNN14_16K_WEIGHTS.filename, io_["melW"]))
    assert float(model.fc_audioset.bias[0].detach()) == 0.5 and not model.training

    wrong = checkpoint(tmp_path / "Cnn14_mAP=0.431.pth", torch.rand(513, 64))  # the 32 kHz model's front end
    with pytest.raises(CheckpointMismatchError, match=r"not the 16 kHz Cnn14.*\(513, 64\)"):
        panns.load_cnn14(wrong)


def test_cnn14_missing_weights_name_the_file_and_url(empty_cache):
    with pytest.raises(CheckpointNotFoundError) as error:
        panns.load_cnn14()
    message = str(error.value)
    assert "Cnn14_16k_mAP=0.438.pth" in message and "zenodo.org/record/3987831" in message
    assert str(empty_cache) in message and "task option panns_weights" in message


# --- reading and resampling ---------------------------------------------------------------------------------------

def test_resampling_equals_torchaudio():
    io_, _ = golden("av_benchmark")
    rates = sorted(int(k.rsplit("_", 1)[1]) for k in io_ if k.startswith("resample_in_"))
    assert 44100 in rates and 8000 in rates
    for rate in rates:
        torch.testing.assert_close(resample(io_[f"resample_in_{rate}"], rate, 16000), io_[f"resample_out_{rate}"],
                                   atol=1e-6, rtol=0)


def test_clip_reading_equals_av_benchmark(tmp_path):
    io_, meta = golden("av_benchmark")
    names = [k[len("wav_"):] for k in io_ if k.startswith("wav_")]
    assert len(names) == 2
    for name in names:
        path = tmp_path / f"{name}.wav"
        path.write_bytes(io_[f"wav_{name}"].numpy().tobytes())
        clip = load_clip(path, seconds=float(meta["cut_seconds"]))
        torch.testing.assert_close(clip, io_[f"read_{name}"], atol=1e-6, rtol=0)
    assert len(io_["read_mono48k"]) < 16000 * float(meta["cut_seconds"])  # shorter clips are not padded


def test_prepare_waveform_defaults_and_bad_input():
    stereo = torch.ones(2, 16000 * 9) * torch.tensor([[0.5], [0.1]])
    clip = prepare_waveform(stereo, 16000)
    assert clip.shape == (16000 * 8,) and clip.abs().max() < 1e-6  # constant: mono 0.3, then its mean removed
    with pytest.raises(ValueError, match="float audio"):
        prepare_waveform(torch.zeros(100, dtype=torch.int16), 16000)
    with pytest.raises(ValueError, match="NaN"):
        prepare_waveform(torch.tensor([0.0, float("nan")]), 16000)
    with pytest.raises(ValueError, match="positive integers"):
        prepare_waveform(torch.zeros(100), 0)


def test_read_audio_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        read_audio(tmp_path / "missing.wav")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00not audio")
    with pytest.raises(ValueError, match="broken.wav"):
        read_audio(broken)


# --- scores -------------------------------------------------------------------------------------------------------

def fixture_features() -> tuple[AudioFeatures, AudioFeatures, dict]:
    io_, _ = golden("av_benchmark")
    gen = AudioFeatures(list(io_["vgg_gen"].numpy()), io_["emb_gen"].numpy(), io_["logits_gen"].numpy())
    gt = AudioFeatures(list(io_["vgg_gt"].numpy()), io_["emb_gt"].numpy(), io_["logits_gt"].numpy())
    return gen, gt, io_


def test_scores_equal_av_benchmark():
    gen, gt, io_ = fixture_features()
    scores = audio_scores(gen, gt)
    for ours, theirs in (("fd_vgg", "fd_vgg"), ("fd_panns", "fd_panns"), ("kl", "kl_softmax"), ("is", "is_mean"),
                         ("is_std", "is_std")):
        assert scores[ours] == pytest.approx(float(io_[theirs]), rel=1e-6), ours
    assert scores["clips"] == 40 and scores["vggish_patches"] == 120
    assert scores["protocol"]["reference"] == AUDIO_PROTOCOL["reference"] and scores["protocol"]["is_splits"] == 10
    assert scores["protocol"]["clip_seconds"] == 8.0
    json.dumps(scores)  # records are JSON


def test_is_takes_clips_in_name_order_like_av_benchmark():
    gen, gt, io_ = fixture_features()
    names = [f"id{i:03d}" for i in range(40)]  # the fixture's rows are in name order
    reverse = np.arange(40)[::-1]
    shuffled = AudioFeatures(gen.vggish, gen.panns_embedding, gen.panns_logits, names).subset(reverse)
    truth = AudioFeatures(gt.vggish, gt.panns_embedding, gt.panns_logits, names).subset(reverse)
    scores = audio_scores(shuffled, truth, clip_seconds=8.16)
    assert scores["is"] == pytest.approx(float(io_["is_mean"]), rel=1e-6)
    assert scores["kl"] == pytest.approx(float(io_["kl_softmax"]), rel=1e-6)
    assert scores["protocol"]["clip_seconds"] == 8.16
    assert audio_scores(gen.subset(reverse), gt.subset(reverse))["is"] != pytest.approx(scores["is"], rel=1e-6)


def test_kl_per_clip_is_the_textbook_divergence():
    _, _, io_ = fixture_features()
    gen, gt = io_["logits_gen"][:5].double().numpy(), io_["logits_gt"][:5].double().numpy()
    p = np.exp(gt - gt.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    q = np.exp(gen - gen.max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    np.testing.assert_allclose(kl_per_clip(gen, gt), (p * np.log(p / q)).sum(1), rtol=1e-10)
    assert np.allclose(kl_per_clip(gt, gt), 0)


def test_scores_refuse_unpaired_or_too_few_clips():
    gen, gt, _ = fixture_features()
    with pytest.raises(ValueError, match="cannot be paired"):
        audio_scores(gen.subset(range(39)), gt)
    ids = [f"clip{i}" for i in range(40)]
    swapped = ids[:3] + [ids[4], ids[3]] + ids[5:]
    with pytest.raises(ValueError, match="position 3 is 'clip4' vs 'clip3'"):
        audio_scores(AudioFeatures(gen.vggish, gen.panns_embedding, gen.panns_logits, swapped),
                     AudioFeatures(gt.vggish, gt.panns_embedding, gt.panns_logits, ids))
    with pytest.raises(ValueError, match="at least 10 clips"):
        panns_inception_score(gen.panns_logits[:9])
    with pytest.raises(ValueError, match="disagree on the number of clips"):
        AudioFeatures(gen.vggish[:3], gen.panns_embedding, gen.panns_logits)


def test_extractor_keeps_clip_order_across_lengths(vggish_golden, cnn14_golden):
    vggish_io, panns_io = vggish_golden[1], cnn14_golden[1]
    waves = vggish_io["waveforms"]  # (3, 32000), the same clips in both fixtures
    extractor = AudioFeatureExtractor(vggish_golden[0], cnn14_golden[0])
    clips = [waves[0], waves[1, :16000], waves[2]]  # batched as {32000: [0, 2], 16000: [1]}
    features = extractor(clips, clip_ids=["a", "b", "c"])
    assert features.clip_ids == ["a", "b", "c"] and [len(v) for v in features.vggish] == [2, 1, 2]
    for row in (0, 2):  # the whole clips: the official outputs
        assert_matches_official(torch.from_numpy(features.vggish[row]), vggish_io["embeddings"][row])
        assert_matches_official(torch.from_numpy(features.panns_logits[row]), panns_io["logits"][row])
        assert_matches_official(torch.from_numpy(features.panns_embedding[row]), panns_io["embedding"][row])
    alone = extractor(clips[1][None])  # batch sizes differ: float32 kernels round apart
    np.testing.assert_allclose(features.vggish[1], alone.vggish[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(features.panns_logits[1], alone.panns_logits[0], rtol=1e-4, atol=1e-4)
