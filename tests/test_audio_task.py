"""The ``audio`` task (VGGSound / MDSGen): its preflight, and a whole run on tiny real components."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from condbench.cli import main
from condbench.metrics import panns, vggish
from condbench.metrics.audio import AudioFeatureExtractor, AudioFeatures, audio_scores, load_clip, prepare_waveform
from condbench.runner import RunOptions, run_suite
from condbench.suites import load_suite

from .audio_players import chromium_players
from .test_mdsgen_loading import VOCODER
from .test_mdsgen_parity import CONFIG, official_state


@pytest.fixture
def offline_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("CONDBENCH_CACHE", str(cache))
    monkeypatch.setenv("CONDBENCH_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))  # an empty Hugging Face cache: AudioLDM is absent
    return cache


def test_run_without_files_stops_at_once_listing_every_missing_file(offline_cache, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "audio", "-o", str(out)]) == 2
    message = capsys.readouterr().err
    assert message.count("error:") == 1 and "6 file(s) missing" in message  # mdsgen-b-2's checkpoint and decoder
    for needed in ("vggsound.csv", "vggsound/vggsound.csv", "cavp_epoch66.ckpt", "vggish-10086976.pth",
                   "Cnn14_16k_mAP=0.438.pth", "mdsgen_audioldm.pt", "download it by hand", "audioldm-s-full-v2",
                   "task option cavp_weights", "task option vggish_weights", "task option panns_weights"):
        assert needed in message, needed
    assert "[model mdsgen-b-2]" in message and message.count("[task audio]") == 4
    assert not (out / "results.jsonl").exists()  # no work started


def test_preflight_names_each_missing_clip_of_the_split(offline_cache, tmp_path, capsys):
    csv = tmp_path / "vggsound.csv"
    csv.write_text('abc,4,"dog, barking",test\nxyz,10,cat,train\nqrs,30,rain,test\n')
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: s\ntask: audio\nmodels: [mdsgen-b-2]\npolicies: [baseline]\n"
                     f"task_options: {{csv: {csv}, clip_dir: {tmp_path / 'clips'}}}\n")
    assert main(["run", str(suite), "-o", str(tmp_path / "run")]) == 2
    message = capsys.readouterr().err
    assert "4 VGGSound clip file(s) missing (of 2 test clips" in message  # video and sound of each test clip
    assert str(tmp_path / "clips" / "abc_000004.mp4") in message and "qrs_000030.mp4" in message
    assert "xyz_000010" not in message  # a train clip


# --- a whole run on tiny real components ------------------------------------------------------------------------

CLIPS = [("clipA", 0, "dog barking"), ("clipB", 12, "rain"), ("clipC", 3, "engine"), ("clipD", 40, "bird song")]


def write_clip_files(root: Path) -> dict:
    """The split, CAVP feature files (T=40 frames) and 8.2 s ground-truth sounds of four test clips."""
    import soundfile


    features, sounds = root / "features", root / "sounds"
    features.mkdir()
    sounds.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for k, (youtube_id, start, label) in enumerate(CLIPS):
        name = f"{youtube_id}_{start:06d}"
        feats = rng.standard_normal((40, 512)).astype(np.float32)
        np.savez(features / f"{name}.npz", feats / np.linalg.norm(feats, axis=1, keepdims=True))
        t = np.arange(int(8.2 * 16000)) / 16000
        tone = 0.3 * np.sin(2 * np.pi * (220 * (k + 1)) * t) * (t > 0.5 * k) + 0.01 * rng.standard_normal(len(t))
        soundfile.write(sounds / f"{name}.wav", tone.astype(np.float32), 16000, subtype="FLOAT")
        rows.append(f"{youtube_id},{start},{label},test")
    (root / "vggsound.csv").write_text("\n".join(rows + ["other,1,cat,train"]) + "\n")
    return {"csv": str(root / "vggsound.csv"), "clip_dir": str(root / "clips"), "feature_dir": str(features),
            "audio_dir": str(sounds)}


def write_metric_weights(root: Path) -> dict:
    """TEST ONLY random VGGish and Cnn14 16 kHz weights in the published files' layouts (no metric in a table
    ever runs on these: they make the pipeline's numbers checkable end to end)."""
    torch.save(vggish.random_state_dict(0), root / "vggish.pth")
    state = {**panns.random_state_dict(0), "logmel_extractor.melW": panns.panns_mel_filters().float()}
    torch.save({"model": state}, root / "cnn14.pth")
    return {"vggish_weights": str(root / "vggish.pth"), "panns_weights": str(root / "cnn14.pth")}


@pytest.mark.slow  # full-size VGGish and Cnn14 (no smaller configuration) four times: about a minute on 2 busy cores
def test_ground_truth_features_are_computed_once_and_keyed_by_the_sound_files(offline_cache, tmp_path):
    from condbench.tasks.audio import AudioTask

    options = {**write_clip_files(tmp_path), **write_metric_weights(tmp_path)}
    task = AudioTask(**options, num_clips=2, device="cpu")
    extractor = AudioFeatureExtractor.from_weights(options["vggish_weights"], options["panns_weights"])
    weights = {"vggish": "a" * 64, "panns": "b" * 64}
    first = task._truth_features(extractor, weights)
    cached = list((offline_cache / "vggsound" / "truth_features").rglob("*.npz"))
    assert len(cached) == 1
    again = task._truth_features(extractor, weights)  # read back from the cache
    assert np.array_equal(first.panns_logits, again.panns_logits) and len(first) == 2
    direct = extractor([load_clip(task.clips.audio_path(i), 8.0) for i in range(2)])
    assert np.array_equal(first.panns_logits, direct.panns_logits.astype(np.float32))
    assert np.array_equal(np.stack(first.vggish), np.stack(direct.vggish).astype(np.float32))
    sound = task.clips.audio_path(0)
    os.utime(sound, ns=(sound.stat().st_atime_ns, sound.stat().st_mtime_ns + 10**9))  # the file changed
    task._truth_features(extractor, weights)
    task._truth_features(extractor, {**weights, "panns": "c" * 64})  # other weights
    assert len(list((offline_cache / "vggsound" / "truth_features").rglob("*.npz"))) == 3


def write_recording(path: Path, rate: int, seconds: float, subtype: str, seed: int) -> Path:
    """A stereo wav as VGGSound's are stored (44.1 or 48 kHz): a tone, noise, a tone near 8 kHz (where resamplers
    differ most) and a different offset on each channel (the order of mean removal and resampling shows)."""
    import soundfile

    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    left = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(len(t)) + 0.1
    right = 0.2 * np.sin(2 * np.pi * 7500 * t + 1.0) - 0.05 * (t > seconds / 2)
    soundfile.write(path, np.stack([left, right], axis=1).astype(np.float32), rate, subtype=subtype)
    return path


def test_ground_truth_is_read_exactly_as_load_clip_reads_the_file(offline_cache, tmp_path):
    """av-benchmark's reading (load_clip, checked bit-exact against it in test_audio_metrics): whole-file mean
    removed before torchaudio's resampler, clips shorter than the cut scored unpadded."""
    from condbench.tasks.audio import AudioTask

    sounds = tmp_path / "sounds"
    sounds.mkdir()
    recordings = {"hi44k_000000": (44100, 9.5, "PCM_16"), "hi48k_000001": (48000, 9.5, "FLOAT"),
                  "short_000002": (44100, 5.0, "PCM_16")}
    for seed, (name, (rate, seconds, subtype)) in enumerate(recordings.items()):
        write_recording(sounds / f"{name}.wav", rate, seconds, subtype, seed)
    (tmp_path / "vggsound.csv").write_text("hi44k,0,a,test\nhi48k,1,b,test\nshort,2,c,test\n")
    task = AudioTask(csv=str(tmp_path / "vggsound.csv"), clip_dir=str(tmp_path / "clips"), audio_dir=str(sounds),
                     device="cpu")
    for i, name in enumerate(recordings):
        assert torch.equal(task.truth_waveform(i), load_clip(sounds / f"{name}.wav", task.clip_seconds)), name
    assert task.truth_waveform(0).shape == (8 * 16000,) and task.truth_waveform(2).shape == (5 * 16000,)


def test_ground_truth_features_of_clips_of_different_lengths_are_cached_as_computed(tmp_path):
    from condbench.tasks.audio_metrics import truth_arrays, truth_from_arrays

    rng = np.random.default_rng(0)
    features = AudioFeatures([rng.standard_normal((8, 128)), rng.standard_normal((5, 128))],
                             rng.standard_normal((2, 2048)), rng.standard_normal((2, 527)))
    loaded = truth_from_arrays(truth_arrays(features))
    assert [v.shape for v in loaded.vggish] == [(8, 128), (5, 128)]
    for ours, stored in [*zip(loaded.vggish, features.vggish), (loaded.panns_embedding, features.panns_embedding),
                         (loaded.panns_logits, features.panns_logits)]:
        assert ours.dtype == np.float64 and np.array_equal(ours, stored.astype(np.float32))


def test_the_protocol_says_how_each_side_is_read():
    from condbench.metrics.audio import AUDIO_PROTOCOL
    from condbench.metrics.panns import Cnn14
    from condbench.metrics.vggish import VGGish
    from condbench.tasks.audio import TRUTH_READING
    from condbench.tasks.audio_metrics import AudioEvaluator

    truth = AudioFeatures([np.zeros((8, 128))], np.zeros((1, 2048)), np.zeros((1, 527)))
    evaluator = AudioEvaluator(AudioFeatureExtractor(VGGish(), Cnn14()), truth, ["clip_000000"], 8.0,
                               truth_reading=TRUTH_READING, weights={"vggish": "a" * 64, "panns": "b" * 64})
    line = evaluator.protocol_line()
    assert f"generated clips: the decoder's 16000 Hz waveform read as av-benchmark reads a file " \
           f"({AUDIO_PROTOCOL['reading']}); ground truth: {TRUTH_READING};" in line
    assert "whole clip's mean subtracted, before resampling" in line and "shorter clips not padded" in line
    assert "a clip without a wav: the mp4's audio stream decoded by decord" in line and "swresample" in line


@pytest.fixture(scope="module")
def audible_audioldm_folder(tmp_path_factory) -> Path:
    """Tiny random AudioLDM VAE + vocoder (the pipeline's folder layout) whose weights are redrawn at unit gain,
    so the sound is audible (transformers' own init makes ~1e-9 waveforms that every metric sees as silence)."""
    from diffusers import AutoencoderKL
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    root = tmp_path_factory.mktemp("audioldm")
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=1, out_channels=1, latent_channels=8, block_out_channels=(4, 4, 8),
                        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                        layers_per_block=1, norm_num_groups=2, sample_size=64)
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(**VOCODER))
    with torch.no_grad():
        for name, p in vocoder.named_parameters():
            if p.dim() > 1:
                p.normal_(0, p.shape[1:].numel() ** -0.5)
    vae.save_pretrained(root / "vae")
    vocoder.save_pretrained(root / "vocoder")
    return root


def test_nan_cavp_features_stop_the_run_with_one_line_naming_the_file(offline_cache, tmp_path, capsys,
                                                                     audible_audioldm_folder):
    options = {**write_clip_files(tmp_path), **write_metric_weights(tmp_path), "device": "cpu"}
    damaged = Path(options["feature_dir"]) / "clipB_000012.npz"
    with np.load(damaged) as saved:
        features = saved["arr_0"]
    features[3, 5] = np.nan
    np.savez(damaged, features)
    torch.save(official_state(), tmp_path / "mdsgen_audioldm.pt")
    config = {k: v for k, v in CONFIG.to_dict().items() if k in ("hidden_size", "depth", "num_heads", "decode_layer")}
    suite = {"name": "nan-features", "task": "audio", "models": ["mdsgen-b-2"], "policies": ["baseline"],
             "task_options": options,
             "model_options": {"mdsgen-b-2": {"ckpt": str(tmp_path / "mdsgen_audioldm.pt"), "model_config": config,
                                              "num_steps": 4, "decoder": str(audible_audioldm_folder)}}}
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    assert main(["run", str(tmp_path / "suite.yaml"), "-o", str(tmp_path / "run")]) == 2
    message = capsys.readouterr().err.strip()
    assert message.count("\n") == 0 and "Traceback" not in message, message
    assert f"{damaged}: arr_0 holds NaN or infinite values" in message and "compute the CAVP features" in message


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory, audible_audioldm_folder):
    """One run of a tiny suite: baseline, a pruning policy and its random-like control, samples kept.

    The metric networks are full size (VGGish and Cnn14 have no smaller configuration) and each cell's FD_PANNs
    is a 2048-d matrix square root: the run takes minutes on 2 busy cores, hence few clips and resamples."""
    root = tmp_path_factory.mktemp("audio")
    torch.save(official_state(), root / "mdsgen_audioldm.pt")
    config = {k: v for k, v in CONFIG.to_dict().items() if k in ("hidden_size", "depth", "num_heads", "decode_layer")}
    suite = {"name": "tiny-audio", "task": "audio", "models": ["mdsgen-b-2"], "seed": 3, "batch_size": 3,
             "shard_size": 2, "bootstrap": 3, "keep_samples": True,
             "policies": ["baseline", "topk:16", "random-like:topk:16"],
             "task_options": {**write_clip_files(root), **write_metric_weights(root), "is_splits": 2, "device": "cpu"},
             "model_options": {"mdsgen-b-2": {"ckpt": str(root / "mdsgen_audioldm.pt"), "model_config": config,
                                              "num_steps": 4, "decoder": str(audible_audioldm_folder)}}}
    (root / "suite.yaml").write_text(yaml.safe_dump(suite))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONDBENCH_CACHE", str(root / "cache"))
        patch.setenv("CONDBENCH_OFFLINE", "1")
        results = run_suite(load_suite(str(root / "suite.yaml")), root / "run", RunOptions(log=lambda _: None))
    return root, suite, results


# minutes on 2 CPU cores: full-size VGGish/Cnn14 on every cell and a 2048-d matrix square root per FD_PANNs
slow_run = pytest.mark.slow


@slow_run
def test_recorded_metrics_are_the_av_benchmark_scores_of_the_kept_waveforms(audio_run):
    root, suite, results = audio_run
    summary = json.loads(results.read_text())
    options = suite["task_options"]
    extractor = AudioFeatureExtractor.from_weights(options["vggish_weights"], options["panns_weights"])
    names = [f"{y}_{s:06d}" for y, s, _ in CLIPS]
    truth = extractor([load_clip(Path(options["audio_dir"]) / f"{n}.wav", 8.0) for n in names], names)
    assert [r["policy"] for r in summary["records"]] == suite["policies"]
    for record in summary["records"]:
        with np.load(record["samples_npz"]) as kept:
            waves, labels, rate = kept["arr_0"], kept["labels"], int(kept["sample_rate"])
        assert waves.shape == (4, 130592) and waves.dtype == np.float32 and rate == 16000
        assert 1e-3 < waves.std() and np.abs(waves).max() <= 1.0  # audible sound, not silence
        assert labels.tolist() == [0, 1, 2, 3]
        generated = extractor([prepare_waveform(torch.from_numpy(w), rate, 8.0) for w in waves], names)
        expected = audio_scores(generated, truth, is_splits=2, clip_seconds=8.0)
        for metric in ("fd_vgg", "fd_panns", "kl", "is", "is_std"):
            assert record["metrics"][metric] == pytest.approx(expected[metric], rel=1e-5, abs=1e-6), metric
        assert record["metrics"]["clips"] == 4 and record["metrics"]["vggish_patches"] == 4 * 8
        assert "av-benchmark" in record["protocol"] and "8 s" in record["protocol"]
        assert "ground truth: {name}.wav of audio_dir read exactly as av-benchmark reads a file" in record["protocol"]
    grid = np.load(root / "run" / "samples_grid.npz")
    with np.load(summary["records"][0]["samples_npz"]) as kept:
        assert np.array_equal(grid[next(iter(grid.files))], kept["arr_0"])  # the report's clips: the first ones


@slow_run
def test_a_pruning_policy_has_paired_deltas_against_the_baseline(audio_run):
    _, _, results = audio_run
    records = {r["policy"]: r for r in json.loads(results.read_text())["records"]}
    base = records["baseline"]
    assert base["paired_vs_baseline"] == {}
    for policy in ("topk:16", "random-like:topk:16"):
        record = records[policy]
        assert record["dims_removed"] == 16 and record["dims_removed_fraction"] == 0.5
        deltas = record["paired_vs_baseline"]
        assert set(deltas) == {"fd_vgg", "fd_panns", "kl", "is"}
        for metric, change in deltas.items():
            assert change["delta"] == pytest.approx(record["metrics"][metric] - base["metrics"][metric])
            low, high = change["ci95"]
            assert low <= change["delta"] <= high and change["resamples"] == 3
        assert record["metrics"]["kl"] != base["metrics"]["kl"]  # pruning changed the sound


@slow_run
def test_the_report_plays_every_clip_in_headless_chromium(audio_run, tmp_path):
    """The report's players load in a real browser and last as long as the generated sound (8.162 s)."""
    from condbench.reports.html import build_report

    root, suite, _ = audio_run
    page = build_report([root / "run"], tmp_path / "report.html").read_text()
    assert page.count("<audio") == 3 * 4 and page.count("data:audio/wav;base64,") == 3 * 4
    assert "mel spectrogram of clip 3" in page and "FD_VGG" in page and "FD_PANNs" in page
    players = chromium_players(page, tmp_path)
    assert len(players) == 12
    for player in players:
        assert player["error"] is None and player["ready"] >= 1
        assert player["duration"] == pytest.approx(130592 / 16000, abs=1e-3)
        assert player["duration"] == pytest.approx(player["expected"], abs=1e-3)
