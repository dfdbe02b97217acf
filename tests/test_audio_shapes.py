"""The built-in ``audio-shapes`` task: synthetic clips through decord, the log-mel front end and Griffin-Lim against
librosa, the shipped tiny MDSGen (it must follow the video), training, and one small run with its report."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from condbench.adapters.griffin_lim import SHAPES_MEL, GriffinLimDecoder, LogMel, griffin_lim
from condbench.checkpoints import CheckpointNotFoundError, load_state_dict, read_metadata
from condbench.datasets.shapes_audio import (AUDIO_SAMPLES, FRAME_SIZE, FRAMES, SAMPLE_RATE, ShapeClips, draw_clip,
                                             render_frames, synthesize, video_features)
from condbench.policies import parse_policy
from condbench.registry import load_adapter
from condbench.runner import RunOptions, run_suite
from condbench.seeding import PairedNoise
from condbench.suites import load_suite
from condbench.tasks.audio_shapes import ShapesAudioTask, classify, load_classifier

from .audio_players import chromium_players


@pytest.fixture
def clip_dir(tmp_path) -> Path:
    return tmp_path / "clips"


def test_clips_round_trip_through_decord(clip_dir):
    clips = ShapeClips(clip_dir, seed=0, count=3).ensure_written()
    for i, clip in enumerate(clips.clips):
        frames = clips.frames(i)  # decoded from the mp4 through the VGGSound reader's decord path
        assert frames.shape == (FRAMES, 3, FRAME_SIZE, FRAME_SIZE)
        rendered = torch.from_numpy(render_frames(clip)).permute(0, 3, 1, 2).float() / 255
        assert (frames - rendered).abs().max() < 0.05  # lossless H.264 up to the YUV conversion
        assert torch.equal(video_features(frames), video_features(rendered))  # what training saw
        assert torch.equal(clips.audio(i), torch.from_numpy(synthesize(clip)))
        assert clips.audio(i).shape == (AUDIO_SAMPLES,)
    written = {p.name: p.stat().st_mtime_ns for p in clip_dir.iterdir()}
    ShapeClips(clip_dir, seed=0, count=3).ensure_written()
    assert {p.name: p.stat().st_mtime_ns for p in clip_dir.iterdir()} == written  # written once, then reused


def test_a_clip_is_a_function_of_seed_and_index_and_its_video_shows_its_sound():
    assert draw_clip(0, 5) == draw_clip(0, 5) and draw_clip(0, 5) != draw_clip(1, 5)
    clip = draw_clip(0, 5)
    features = video_features(torch.from_numpy(render_frames(clip)).permute(0, 3, 1, 2).float() / 255)  # (16, 4)
    assert features[:, 0].tolist() == [float(k >= clip.onset_frame) for k in range(FRAMES)]  # appears at the onset
    sound = synthesize(clip)
    onset = int(clip.onset_s * SAMPLE_RATE)
    assert not sound[:onset].any() and np.abs(sound[onset:onset + 800]).max() > 0.1
    higher = [draw_clip(0, i) for i in range(40)]
    by_pitch = sorted(higher, key=lambda c: c.pitch_hz)
    assert [c.row for c in by_pitch] == sorted((c.row for c in by_pitch), reverse=True)  # higher pitch, higher on screen


def test_log_mel_front_end_is_librosas_melspectrogram():
    import librosa

    wave = synthesize(draw_clip(0, 1)) + 0.01 * np.random.default_rng(0).standard_normal(AUDIO_SAMPLES).astype(np.float32)
    s = SHAPES_MEL
    expected = librosa.feature.melspectrogram(y=wave.astype(np.float64), sr=s.sample_rate, n_fft=s.n_fft,
                                              hop_length=s.hop_length, n_mels=s.n_mels, fmin=s.fmin, fmax=s.fmax,
                                              power=2.0, center=True, pad_mode="constant")
    ours = LogMel().mel_power(torch.from_numpy(wave)[None])[0].numpy()
    assert expected.shape == ours.shape == (16, 32)  # (bands, frames)
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-9)


def test_griffin_lim_is_librosas():
    import librosa

    magnitude = np.random.default_rng(1).random((SHAPES_MEL.n_fft // 2 + 1, SHAPES_MEL.frames))
    expected = librosa.griffinlim(magnitude, n_iter=6, hop_length=SHAPES_MEL.hop_length, n_fft=SHAPES_MEL.n_fft,
                                  window="hann", center=True, length=SHAPES_MEL.samples, pad_mode="constant",
                                  momentum=0.99, init=None)
    ours = griffin_lim(torch.from_numpy(magnitude)[None], LogMel(), SHAPES_MEL.samples, iterations=6)[0].numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-9)


def test_griffin_lim_decoder_gives_back_the_sound_of_each_log_mel():
    waves = torch.stack([torch.from_numpy(synthesize(draw_clip(0, i))) for i in range(4)])
    mel = LogMel()
    decoded = GriffinLimDecoder()(mel(waves))
    assert decoded.shape == (4, AUDIO_SAMPLES) and decoded.abs().max() <= 1
    errors = (mel(decoded)[:, None] - mel(waves)[None]).abs().mean(dim=(2, 3, 4))  # (decoded, source)
    assert errors.argmin(dim=1).tolist() == [0, 1, 2, 3]  # each decoded sound is nearest its own log-mel


def test_missing_classifier_names_the_file_and_how_to_make_it(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="condbench train audio-shapes") as error:
        load_classifier(tmp_path / "nope.safetensors")
    assert "nope.safetensors" in str(error.value)


# about 7 s: 3 x 16 clips sampled (25 steps, two forwards) and decoded with Griffin-Lim; fewer clips make KL too noisy
def test_shipped_model_follows_the_video(clip_dir):
    """The shipped mdsgen-shapes + classifier on 16 test clips: with the video the sound's class matches the ground
    truth's far better than with the null condition or with another clip's video (on the suite's 64 clips: KL
    2.9 vs 10.8 for the null condition)."""
    task = ShapesAudioTask(num_clips=16, clip_dir=str(clip_dir))
    adapter = load_adapter("mdsgen-shapes")
    task.prepare_adapter(adapter)
    cond, noise = task.conditions(), PairedNoise(0, range(16))
    evaluator = task.evaluator

    def kl(policy=None, conditions=cond):
        waves = adapter.decode(adapter.sample(conditions, noise, policy).samples)
        return evaluator.score(*classify(evaluator.classifier, waves), task.labels())["kl_shapes_cnn"]

    baseline, null, shuffled = kl(), kl(parse_policy("drop-cond")), kl(conditions=cond.roll(1, dims=0))
    assert baseline < 0.6 * null and baseline < 0.6 * shuffled, (baseline, null, shuffled)


def test_training_is_deterministic_and_loads_into_the_adapter(tmp_path):
    from condbench.tasks.audio_shapes_training import ShapesTraining, train_audio_shapes

    settings = ShapesTraining(train_clips=32, steps=2, batch_size=4, classifier_epochs=1)
    first = train_audio_shapes(tmp_path / "a", settings, log=lambda _: None)
    second = train_audio_shapes(tmp_path / "b", settings, log=lambda _: None)
    for kind in first:  # the same tensors and metadata (safetensors writes the metadata keys in any order)
        a, b = load_state_dict(first[kind]), load_state_dict(second[kind])
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), kind
        assert read_metadata(first[kind]) == read_metadata(second[kind]), kind
    adapter = load_adapter("mdsgen-shapes", ckpt=str(first["mdsgen"]))
    assert adapter.checkpoint["path"] == str(first["mdsgen"].resolve()) and adapter.embed_dim == 64
    load_classifier(first["classifier"])


# --- one small run of the task, shared by the tests below --------------------------------------------------------

POLICIES = ["baseline", "tail:0.1", "random-like:tail:0.1"]


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes-run")
    suite = {"name": "tiny-shapes", "task": "audio-shapes", "models": ["mdsgen-shapes"], "seed": 0, "batch_size": 8,
             "shard_size": 8, "bootstrap": 5, "keep_samples": True, "policies": POLICIES,
             "task_options": {"num_clips": 8}, "model_options": {"mdsgen-shapes": {"num_steps": 8}}}
    (root / "suite.yaml").write_text(yaml.safe_dump(suite))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONDBENCH_CACHE", str(root / "cache"))
        results = run_suite(load_suite(str(root / "suite.yaml")), root / "run", RunOptions(log=lambda _: None))
    return root, json.loads(results.read_text())


def test_the_run_records_its_own_metrics_with_paired_deltas(shapes_run):
    root, summary = shapes_run
    records = {r["policy"]: r for r in summary["records"]}
    assert list(records) == POLICIES
    task = ShapesAudioTask(num_clips=8, clip_dir=summary["tasks"]["audio-shapes"]["clip_dir"])
    for policy, record in records.items():
        with np.load(record["samples_npz"]) as kept:
            waves, labels, rate = torch.from_numpy(kept["arr_0"]), kept["labels"], int(kept["sample_rate"])
        assert waves.shape == (8, AUDIO_SAMPLES) and rate == SAMPLE_RATE and labels.tolist() == list(range(8))
        expected = task.evaluator.score(*classify(task.evaluator.classifier, waves), labels)
        for metric in ("fd_shapes_cnn", "kl_shapes_cnn", "is_shapes_cnn"):
            assert record["metrics"][metric] == pytest.approx(expected[metric], rel=1e-5, abs=1e-6), metric
        assert "NOT comparable with FD_VGG" in record["protocol"]
        if policy != "baseline":
            deltas = record["paired_vs_baseline"]
            assert set(deltas) == {"fd_shapes_cnn", "kl_shapes_cnn", "is_shapes_cnn"}
            for metric, change in deltas.items():
                assert change["delta"] == pytest.approx(record["metrics"][metric] - records["baseline"]["metrics"][metric])
    assert records["tail:0.1"]["dims_removed"] > 0
    assert (Path(summary["tasks"]["audio-shapes"]["clip_dir"]) / "truth_features").is_dir()  # the ground truth, cached


# about 7 s: most of it is starting headless Chromium
def test_the_report_plays_every_clip_in_headless_chromium(shapes_run, tmp_path):
    from condbench.reports.html import build_report

    root, _ = shapes_run
    page = build_report([root / "run"], tmp_path / "report.html").read_text()
    players = chromium_players(page, tmp_path)
    assert len(players) == len(POLICIES) * 8
    for player in players:
        assert player["error"] is None and player["ready"] >= 1
        assert player["duration"] == pytest.approx(AUDIO_SAMPLES / SAMPLE_RATE, abs=1e-3)
