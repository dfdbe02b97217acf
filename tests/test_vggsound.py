"""The VGGSound reader on real files written here: H.264/AAC mp4 clips (ffmpeg from imageio-ffmpeg), read back
through decord; wav files through soundfile; CAVP feature .npz files."""
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from condbench.adapters.cavp import CAVPConfig, CAVPEncoder
from condbench.datasets.vggsound import (AUDIO_SAMPLES, ClipError, VGGSoundClips, frame_indices, read_audio,
                                         read_features, read_frames, read_sound)
from condbench.datasets.vggsound_files import VGGSoundClip, read_split

pytest.importorskip("decord")
imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
VIDEO_FPS, SIZE = 24, (64, 48)  # (W, H); decord 0.6 mis-sizes frames whose width is not a multiple of 32


def write_clip(path: Path, seconds: float, audio: bool = True, video: bool = True) -> Path:
    """A lossless H.264 mp4 whose frame i is uniformly grey at level i (so a frame tells its index), with a
    440 Hz tone as AAC 44.1 kHz stereo."""
    n = int(round(seconds * VIDEO_FPS))
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error"]
    if video:
        cmd += ["-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{SIZE[0]}x{SIZE[1]}", "-r", str(VIDEO_FPS), "-i", "-"]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}"]
    if video:
        cmd += ["-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv420p"]
    if audio:
        cmd += ["-c:a", "aac", "-ac", "2"]
    cmd += [str(path)]
    frames = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None], SIZE[0] * SIZE[1], axis=1).tobytes()
    subprocess.run(cmd, input=frames if video else None, check=True)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vggsound")
    write_clip(root / "abc-_DEF_12_000030.mp4", 10.0)
    write_clip(root / "short_000000.mp4", 6.0)
    write_clip(root / "silent_000000.mp4", 10.0, audio=False)
    write_clip(root / "soundonly_000000.mp4", 10.0, video=False)
    data = (root / "abc-_DEF_12_000030.mp4").read_bytes()
    (root / "truncated_000000.mp4").write_bytes(data[: len(data) // 3])
    return root


def grey_levels(frames: torch.Tensor) -> np.ndarray:
    return np.round(frames.mean(dim=(1, 2, 3)).numpy() * 255).astype(int)


def test_split_csv_as_published(tmp_path):
    csv = tmp_path / "vggsound.csv"
    csv.write_text('---g-f_I2yQ,1,people marching,test\n--0PQM4-hqg,30,waterfall burbling,train\n'
                   '__2MwJ2uHu0,4,"male speech, man speaking",test\n')
    clips = read_split(csv)
    assert clips == [VGGSoundClip("---g-f_I2yQ", 1, "people marching", "test"),
                     VGGSoundClip("__2MwJ2uHu0", 4, "male speech, man speaking", "test")]
    assert clips[1].name == "__2MwJ2uHu0_000004"  # MDSGen's example file name
    assert len(read_split(csv, None)) == 3
    csv.write_text("youtube_id,start,label,split\n")
    with pytest.raises(ClipError, match="vggsound.csv:1: expected 'youtube_id,start_seconds,label,split'"):
        read_split(csv)
    with pytest.raises(ClipError, match="vggsound.csv"):
        read_split(tmp_path / "nothing.csv")


def test_frames_at_4_fps_from_the_start_by_timestamp(clips):
    frames = read_frames(clips / "abc-_DEF_12_000030.mp4")
    assert frames.shape == (40, 3, 224, 224) and frames.dtype == torch.float32
    assert 0 <= float(frames.min()) and float(frames.max()) <= 1
    expected = [6 * k for k in range(40)]  # at 24 fps the frame shown at k / 4 s is frame 6k
    import decord

    decoded = decord.VideoReader(str(clips / "abc-_DEF_12_000030.mp4")).get_batch(list(range(240))).asnumpy()
    levels = decoded.reshape(240, -1).mean(1)  # grey level of every decoded frame (the YUV round trip is lossy)
    assert grey_levels(frames).tolist() == np.round(levels[expected]).astype(int).tolist()
    assert len(set(np.round(levels[expected]).tolist())) == 40  # distinct frames, so the check can fail


def test_frame_indices_never_pass_the_last_frame():
    starts = np.arange(30) / 3.0  # 30 frames at 3 fps, 10 s
    indices = frame_indices(starts, 44)
    assert indices.max() == 29 and indices[0] == 0 and indices[4] == 3


def test_clip_too_short_missing_truncated_or_without_video_is_refused(clips):
    with pytest.raises(ClipError, match="lasts 6.00 s, shorter than the 8.16 s"):
        read_frames(clips / "short_000000.mp4")
    with pytest.raises(ClipError, match="clip not found: .*absent_000001.mp4"):
        read_frames(clips / "absent_000001.mp4")
    with pytest.raises(ClipError, match="truncated_000000.mp4.*truncated, not a video, or has no video stream"):
        read_frames(clips / "truncated_000000.mp4")
    with pytest.raises(ClipError, match="soundonly_000000.mp4.*no video stream"):
        read_frames(clips / "soundonly_000000.mp4")


def test_audio_from_the_clip_and_from_a_wav_is_16k_mono(clips, tmp_path):
    from_clip = read_audio(clips / "abc-_DEF_12_000030.mp4")
    assert from_clip.shape == (AUDIO_SAMPLES,) and from_clip.dtype == torch.float32
    spectrum = np.abs(np.fft.rfft(from_clip.numpy()))
    assert abs(np.argmax(spectrum) * 16000 / AUDIO_SAMPLES - 440) < 2
    t = np.arange(22050 * 9) / 22050
    soundfile.write(tmp_path / "tone.wav", np.stack([np.sin(2 * np.pi * 1000 * t)] * 2, axis=1) * 0.5, 22050)
    from_wav = read_audio(tmp_path / "tone.wav")
    spectrum = np.abs(np.fft.rfft(from_wav.numpy()))
    assert from_wav.shape == (AUDIO_SAMPLES,) and abs(np.argmax(spectrum) * 16000 / AUDIO_SAMPLES - 1000) < 2
    soundfile.write(tmp_path / "short.wav", np.zeros(16000 * 5), 16000)
    with pytest.raises(ClipError, match="5.00 s of sound, shorter than the 8.16 s"):
        read_audio(tmp_path / "short.wav")
    with pytest.raises(ClipError, match="silent_000000.mp4.*no sound"):
        read_audio(clips / "silent_000000.mp4")


def test_sound_is_read_as_stored_from_a_wav_and_at_16k_mono_from_a_clip(clips, tmp_path):
    stereo = np.random.default_rng(0).uniform(-0.5, 0.5, (48000 * 2, 2)).astype(np.float32)
    soundfile.write(tmp_path / "stereo.wav", stereo, 48000, subtype="FLOAT")
    sound, rate = read_sound(tmp_path / "stereo.wav")
    assert rate == 48000 and torch.equal(sound, torch.from_numpy(stereo.T.copy()))  # (C, L), untouched
    from_clip, rate = read_sound(clips / "abc-_DEF_12_000030.mp4")
    assert rate == 16000 and from_clip.shape[0] == 1
    assert torch.equal(from_clip[0, :AUDIO_SAMPLES], read_audio(clips / "abc-_DEF_12_000030.mp4"))
    stereo[100, 1] = np.nan
    soundfile.write(tmp_path / "nan.wav", stereo, 48000, subtype="FLOAT")
    with pytest.raises(ClipError, match="nan.wav holds NaN or infinite samples"):
        read_sound(tmp_path / "nan.wav")


def test_feature_files(tmp_path):
    good = np.random.default_rng(0).standard_normal((40, 512)).astype(np.float32)
    np.savez(tmp_path / "good.npz", good)
    assert torch.equal(read_features(tmp_path / "good.npz"), torch.from_numpy(good[:32]))
    np.savez(tmp_path / "short.npz", good[:20])
    with pytest.raises(ClipError, match=r"shape \(20, 512\), expected \(T, 512\) with T >= 32"):
        read_features(tmp_path / "short.npz")
    np.savez(tmp_path / "wide.npz", np.zeros((40, 768)))
    with pytest.raises(ClipError, match=r"\(40, 768\)"):
        read_features(tmp_path / "wide.npz")
    np.savez(tmp_path / "named.npz", feats=good)
    with pytest.raises(ClipError, match="arr_0"):
        read_features(tmp_path / "named.npz")
    with pytest.raises(ClipError, match="not found"):
        read_features(tmp_path / "none.npz")
    damaged = good.copy()
    damaged[31, 7] = np.nan  # in the 32 frames MDSGen reads
    np.savez(tmp_path / "nan.npz", damaged)
    with pytest.raises(ClipError, match=r"nan.npz: arr_0 holds NaN or infinite values in its first 32 frames"):
        read_features(tmp_path / "nan.npz")
    damaged[31, 7], damaged[35, 0] = 0.0, np.inf  # past the frames MDSGen reads: not used, not refused
    np.savez(tmp_path / "late.npz", damaged)
    assert torch.isfinite(read_features(tmp_path / "late.npz")).all()


def test_dataset_gives_features_from_files_or_the_encoder_and_lists_missing_files(clips, tmp_path):
    clip_list = [VGGSoundClip("abc-_DEF_12", 30, "tone", "test"), VGGSoundClip("absent", 1, "x", "test")]
    np.savez(tmp_path / "absent_000001.npz", np.ones((40, 512), dtype=np.float32))
    data = VGGSoundClips(clips, clip_list, feature_dir=tmp_path)
    assert torch.equal(data.features(1), torch.ones(32, 512))
    with pytest.raises(ClipError, match="no CAVP features for clip abc-_DEF_12_000030"):
        data.features(0)
    torch.manual_seed(0)
    encoder = CAVPEncoder(CAVPConfig(base_channels=2, stage_blocks=(1, 1, 1, 1))).eval()
    encoded = data.features(0, encoder)
    assert encoded.shape == (32, 512) and torch.allclose(encoded.norm(dim=-1), torch.ones(32))
    assert data.missing() == [clips / "absent_000001.mp4"]  # features precomputed, but no sound for it
    sound, rate = data.sound(0)  # no wav folder: the clip's own audio stream
    assert sound.shape[0] == 1 and sound.shape[1] >= 10 * 16000 - 1024 and rate == 16000
