"""Decoding real files written through PyAV: containers and codecs, sizes, frame rates, seeking, errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from media import has_encoder, moving_frames, vfr_times, write_audio, write_corrupt, write_video

from avcl.data import decode
from avcl.data.decode import DecodeError, iter_frames, probe, read_audio, read_frames
from avcl.errors import UserError

# (file name, write_video keywords); every file holds 25 frames of 64x48 at 25 fps, 1 s of a 440 Hz tone.
CONTAINERS = [
    ("h264_aac.mp4", dict(codec="libx264", audio_codec="aac")),
    ("h264_aac.mov", dict(codec="libx264", audio_codec="aac")),
    ("mpeg4_flac.mkv", dict(codec="mpeg4", audio_codec="flac")),
    ("h264_vorbis.mkv", dict(codec="libx264", audio_codec="vorbis", channels=2)),  # FFmpeg's Vorbis: stereo only
    ("h264_aac.mkv", dict(codec="libx264", audio_codec="aac")),
    ("vp9_opus.webm", dict(codec="libvpx-vp9", audio_codec="libopus", sample_rate=48000)),
    ("mpeg4_mp3.avi", dict(codec="mpeg4", audio_codec="libmp3lame")),
]


def _skip_without(*encoders: str) -> None:
    missing = [name for name in encoders if not has_encoder(name)]
    if missing:
        pytest.skip(f"the FFmpeg bundled with PyAV has no {', '.join(missing)} encoder")


def _peak_hz(wave: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / sample_rate)[spectrum.argmax()])


@pytest.mark.parametrize("name,options", CONTAINERS, ids=[name for name, _ in CONTAINERS])
def test_containers_and_codecs(tmp_path, name, options):
    _skip_without(options["codec"], options["audio_codec"])
    path = write_video(tmp_path / name, **options)

    info = probe(path)
    assert (info.width, info.height) == (64, 48)
    assert info.fps == pytest.approx(25.0)
    assert abs(info.num_frames - 25) <= 1  # Matroska states no count: round(duration * fps), audio included
    assert info.duration == pytest.approx(1.0, abs=0.1)
    assert info.has_audio and info.audio_rate == options.get("sample_rate", 24000)
    assert info.audio_channels == options.get("channels", 1)

    frames = np.stack(list(iter_frames(path, size=None)))
    assert frames.shape == (25, 48, 64, 3) and frames.dtype == np.uint8
    # Lossy, but each decoded frame is its own source frame, in presentation order (B-frames reordered).
    source = moving_frames(25, 48, 64).astype(np.int16)
    errors = np.abs(frames[:, None].astype(np.int16) - source[None]).mean(axis=(2, 3, 4))  # (decoded, source)
    assert (errors.argmin(axis=1) == np.arange(25)).all()
    assert errors.diagonal().max() < 12

    resized = next(iter_frames(path))
    assert resized.shape == (128, 171, 3) and resized.dtype == np.uint8

    wave = read_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    # Encoder priming and padding: MP4, Matroska and Ogg carry what to trim, AVI does not (LAME's 1105
    # priming samples stay), and the last codec frame is padded: within 1.5 MP3 frames of 1152 samples.
    assert abs(len(wave) - 24000) <= 1728
    assert _peak_hz(wave, 24000) == pytest.approx(440, abs=5)
    assert np.abs(wave).max() <= 1.0


def test_no_audio_track(tmp_path):
    path = write_video(tmp_path / "silent.mp4", audio=False)
    info = probe(path)
    assert not info.has_audio and info.audio_rate is None and info.audio_channels is None
    assert len(list(iter_frames(path, size=(24, 32)))) == 25
    with pytest.raises(DecodeError) as caught:
        read_audio(path)
    assert caught.value.reason == "no_audio_stream"


def test_stereo_48k_becomes_mono_24k(tmp_path):
    path = write_video(tmp_path / "stereo.mp4", sample_rate=48000, channels=2, audio_seconds=2.0, num_frames=50)
    assert (probe(path).audio_rate, probe(path).audio_channels) == (48000, 2)
    wave = read_audio(path, sample_rate=24000)
    assert abs(len(wave) - 48000) <= 1200
    assert _peak_hz(wave, 24000) == pytest.approx(440, abs=3)
    # Channels are averaged (as librosa.to_mono): both hold a tone of amplitude 0.5, so does the mix.
    assert np.abs(wave[4000:-4000]).max() == pytest.approx(0.5, abs=0.03)
    assert len(read_audio(path, sample_rate=16000)) == pytest.approx(len(wave) * 2 / 3, abs=2)


@pytest.mark.parametrize(
    "name,codec,pix_fmt",
    [("odd.mp4", "libx264", "yuv444p"), ("odd.webm", "libvpx-vp9", "yuv420p"), ("odd.avi", "mpeg4", "yuv420p")],
)
def test_odd_frame_size(tmp_path, name, codec, pix_fmt):
    # libx264 refuses odd sizes in 4:2:0; 4:4:4 H.264, VP9 and MPEG-4 part 2 store 65x49 as it is.
    _skip_without(codec)
    path = write_video(tmp_path / name, size=(49, 65), codec=codec, pix_fmt=pix_fmt, audio=False)
    assert (probe(path).width, probe(path).height) == (65, 49)
    frames = list(iter_frames(path, size=None))
    assert len(frames) == 25 and frames[0].shape == (49, 65, 3)
    assert next(iter_frames(path, size=(32, 40))).shape == (32, 40, 3)


@pytest.mark.parametrize("name", ["vfr.mp4", "vfr.mkv"])
def test_variable_frame_rate_resampling(tmp_path, name):
    path = write_video(tmp_path / name, vfr=True, num_frames=40, fps=25, audio=False)
    decoded = list(iter_frames(path, size=(24, 32)))
    assert len(decoded) == 40  # fps=None: every decoded frame
    info = probe(path)
    for fps in (25, 50):
        resampled = list(iter_frames(path, size=(24, 32), fps=fps))
        assert abs(len(resampled) - info.duration * fps) <= 2
    # Constant-rate output frame k shows the source frame on screen at time k / fps.
    times = vfr_times(40, 25)
    resampled = list(iter_frames(path, size=(24, 32), fps=50))
    for k, frame in enumerate(resampled[: int(times[-1] * 50)]):
        shown = np.searchsorted(times, k / 50 + 1e-6, side="right") - 1
        assert np.array_equal(frame, decoded[shown]), k


@pytest.mark.parametrize(
    "name,options",
    [
        ("bframes.mp4", dict(codec="libx264")),
        ("cues.mkv", dict(codec="libx264")),
        ("vp9.webm", dict(codec="libvpx-vp9", audio_codec="libopus", sample_rate=48000)),
        ("mpeg4.avi", dict(codec="mpeg4", audio_codec="libmp3lame")),
        ("skipped.avi", dict(codec="mpeg4", audio_codec="libmp3lame", mux_options={})),  # timestamps 0, 3, 4, ...
        ("vfr.mp4", dict(codec="libx264", vfr=True)),
        ("vfr.mkv", dict(codec="libx264", vfr=True)),
    ],
)
def test_read_frames_matches_iter_frames(tmp_path, name, options):
    _skip_without(options["codec"], options.get("audio_codec", "aac"))
    path = write_video(tmp_path / name, num_frames=60, **options)
    full = np.stack(list(iter_frames(path, size=(32, 40))))
    assert len(full) == 60
    for start in (0, 1, 17, 30, 44):
        clip = read_frames(path, start, 16, size=(32, 40))
        assert clip.shape == (16, 32, 40, 3)
        assert np.array_equal(clip, full[start : start + 16]), start
    # Past the end the last frame repeats.
    tail = read_frames(path, 55, 8, size=(32, 40))
    assert np.array_equal(tail[:5], full[55:]) and all(np.array_equal(f, full[-1]) for f in tail[5:])
    beyond = read_frames(path, 100, 2, size=(32, 40))
    assert np.array_equal(beyond, np.stack([full[-1], full[-1]]))
    # A single decoder thread (one per worker process) decodes the same frames.
    assert np.array_equal(read_frames(path, 30, 4, size=(32, 40), threads=1), full[30:34])
    assert np.array_equal(np.stack(list(iter_frames(path, size=(32, 40), threads=1))), full)


def test_read_frames_seeks_on_constant_rate_streams(tmp_path):
    # The fast path (seek to a keyframe, decode forward) is taken, not the decode-from-the-start fallback.
    path = write_video(tmp_path / "cfr.mp4", num_frames=60, audio=False)
    with decode._open(str(path)) as container:
        stream = decode._open_video(container, str(path))
        frames = decode._read_after_seek(container, stream, str(path), 40, 4, decode._ToRGB((32, 40)))
    assert frames is not None and len(frames) == 4
    # The irregular index of a VFR file sends it to the fallback.
    vfr = write_video(tmp_path / "vfr.mp4", num_frames=60, vfr=True, audio=False)
    with decode._open(str(vfr)) as container:
        stream = decode._open_video(container, str(vfr))
        assert decode._read_after_seek(container, stream, str(vfr), 40, 4, decode._ToRGB((32, 40))) is None


@pytest.mark.parametrize(
    "kind,reason",
    [
        ("garbage", "unreadable"),
        ("truncated", "unreadable"),
        ("empty", "empty"),
        ("text", "unreadable"),
        ("damaged", "decode_failed"),
    ],
)
def test_unusable_files(tmp_path, kind, reason):
    path = write_corrupt(tmp_path / f"{kind}.mp4", kind)
    calls = [lambda: list(iter_frames(path)), lambda: read_frames(path, 10, 4)]
    if kind != "damaged":  # a damaged file has an intact container (and no audio track): only decoding fails
        calls += [lambda: probe(path), lambda: read_audio(path)]
    for call in calls:
        with pytest.raises(DecodeError) as caught:
            call()
        error = caught.value
        assert error.reason == reason
        assert error.path == str(path) and str(error).startswith(f"{path}: ")
        assert isinstance(error, UserError)


def test_one_damaged_packet_is_skipped(tmp_path):
    path = write_corrupt(tmp_path / "spot.mkv", "damaged_spot")
    assert 45 <= len(list(iter_frames(path, size=(24, 32)))) <= 50


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = write_audio(tmp_path / "song.mp4", seconds=1.0)
    for call in (probe, lambda p: list(iter_frames(p)), lambda p: read_frames(p, 0, 2)):
        with pytest.raises(DecodeError) as caught:
            call(path)
        assert caught.value.reason == "no_video_stream" and "audio" in str(caught.value)
    assert abs(len(read_audio(path)) - 24000) <= 1200


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DecodeError, match="file not found") as caught:
        probe(tmp_path / "nope.mp4")
    assert caught.value.reason == "unreadable"
    with pytest.raises(DecodeError, match="folder") as caught:
        read_audio(tmp_path)
    assert caught.value.reason == "unreadable"


def test_decode_error_pickles_and_checks_reason():
    error = DecodeError("/data/x.mp4", "too_short", "12 frames, a clip needs 16")
    again = pickle.loads(pickle.dumps(error))
    assert (again.path, again.reason, str(again)) == (
        "/data/x.mp4",
        "too_short",
        "/data/x.mp4: 12 frames, a clip needs 16",
    )
    assert str(DecodeError("a.mp4", "no_audio_stream")) == "a.mp4: no audio stream"
    with pytest.raises(ValueError, match="unknown DecodeError reason"):
        DecodeError("a.mp4", "bad luck")


def test_bad_arguments(tmp_path):
    path = write_video(tmp_path / "v.mp4", audio=False)
    with pytest.raises(ValueError):
        read_frames(path, -1, 4)
    with pytest.raises(ValueError):
        list(iter_frames(path, fps=0))
    with pytest.raises(ValueError):
        list(iter_frames(path, size=(0, 10)))
