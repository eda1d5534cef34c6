"""Small real media files for tests, written through PyAV (FFmpeg encoders and muxers).

Public helpers (a stable API that any test may import):

- ``write_video(path, *, frames=None, size=(48, 64), num_frames=25, fps=25, codec="libx264", audio=True,
  audio_codec="aac", sample_rate=24000, channels=1, audio_seconds=None, tone_hz=440.0, pix_fmt="yuv420p",
  vfr=False, gop=10, mux_options=None) -> Path``: a real video (optionally with an audio track) in the
  container implied by the file extension (.mp4, .mkv, .webm, .avi, .mov, ...). Frames move
  deterministically, so every frame differs from its neighbours, and the audio is a pure tone.
- ``write_audio(path, *, seconds=1.0, codec="aac", sample_rate=24000, channels=1, tone_hz=440.0) -> Path``:
  a file holding an audio track and no video track.
- ``write_corrupt(path, kind) -> Path``: unusable files: ``garbage`` bytes, a ``truncated`` video,
  an ``empty`` file, a ``text`` file, a ``damaged`` video (packets overwritten), all with whatever (video)
  extension ``path`` has; and ``damaged_spot``, a video with one damaged packet that still decodes.
- ``moving_frames(num_frames, height, width) -> (n, h, w, 3) uint8``: the default frame content.
- ``tone(seconds, sample_rate, channels, tone_hz) -> (channels, samples) float32``: the default audio.
- ``vfr_times(num_frames, fps) -> (n,) float``: the presentation times ``write_video(vfr=True)`` uses.
- ``has_encoder(name) -> bool``: whether the bundled FFmpeg can encode with ``name``.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.codec.codec import UnknownCodecError

# Encoders that FFmpeg marks experimental and refuses without this option.
_EXPERIMENTAL = {"vorbis", "opus"}


def has_encoder(name: str) -> bool:
    """True when the FFmpeg bundled with PyAV has an encoder called ``name``."""
    try:
        av.codec.Codec(name, "w")
    except UnknownCodecError:
        return False
    return True


def moving_frames(num_frames: int, height: int, width: int) -> np.ndarray:
    """(num_frames, height, width, 3) uint8: a colour gradient that shifts and a bright square that moves."""
    yy, xx = np.mgrid[0:height, 0:width]
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    side = max(4, min(height, width) // 4)
    for i in range(num_frames):
        frames[i, ..., 0] = (xx * 255 // max(width - 1, 1) + 7 * i) % 256
        frames[i, ..., 1] = (yy * 255 // max(height - 1, 1) + 3 * i) % 256
        frames[i, ..., 2] = (40 * i) % 256
        x0 = (3 * i) % max(width - side, 1)
        y0 = (2 * i) % max(height - side, 1)
        frames[i, y0 : y0 + side, x0 : x0 + side] = 255
    return frames


def tone(seconds: float, sample_rate: int, channels: int = 1, tone_hz: float = 440.0) -> np.ndarray:
    """(channels, round(seconds * sample_rate)) float32 sine of amplitude 0.5 (every channel the same)."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    wave = (0.5 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
    return np.repeat(wave[None], channels, axis=0)


def vfr_times(num_frames: int, fps: float) -> np.ndarray:
    """Irregular presentation times (seconds) whose mean spacing is 1/fps: gaps cycle 0.5, 1.5, 0.75, 1.25 frames."""
    gaps = np.resize(np.array([0.5, 1.5, 0.75, 1.25]), num_frames) / fps
    return np.concatenate([[0.0], np.cumsum(gaps[:-1])])


def _add_audio(container: av.container.OutputContainer, codec: str, sample_rate: int, channels: int):
    options = {"strict": "experimental"} if codec in _EXPERIMENTAL else {}
    stream = container.add_stream(codec, rate=sample_rate, options=options)
    stream.layout = "mono" if channels == 1 else "stereo"
    return stream


def _audio_frames(stream, samples: np.ndarray, sample_rate: int) -> list[av.AudioFrame]:
    """(channels, S) float32 samples cut into frames of the encoder's size and sample format."""
    layout = "mono" if samples.shape[0] == 1 else "stereo"
    fmt = stream.codec_context.format.name if stream.codec_context.format else "fltp"
    frame_size = stream.codec_context.frame_size or 1024
    resampler = av.AudioResampler(format=fmt, layout=layout, rate=sample_rate, frame_size=frame_size)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout=layout)
    frame.sample_rate = sample_rate
    frame.pts = 0
    frame.time_base = Fraction(1, sample_rate)
    return resampler.resample(frame) + resampler.resample(None)


def _mux_interleaved(container, streams_and_frames) -> None:
    """Encode every (stream, frames) pair, feeding frames in presentation-time order across streams.

    Interleaving by time as real recordings do matters: some muxers (AVI) mis-time a stream that arrives
    after all of another one.
    """
    queue = [
        (float(f.pts * f.time_base), k, i, f)
        for k, (_, frames) in enumerate(streams_and_frames)
        for i, f in enumerate(frames)
    ]
    for _, k, _, frame in sorted(queue, key=lambda item: item[:3]):
        container.mux(streams_and_frames[k][0].encode(frame))
    for stream, _ in streams_and_frames:
        container.mux(stream.encode(None))


def write_video(
    path: str | Path,
    *,
    frames: np.ndarray | None = None,
    size: tuple[int, int] = (48, 64),
    num_frames: int = 25,
    fps: float = 25,
    codec: str = "libx264",
    audio: bool = True,
    audio_codec: str = "aac",
    sample_rate: int = 24000,
    channels: int = 1,
    audio_seconds: float | None = None,
    tone_hz: float = 440.0,
    pix_fmt: str = "yuv420p",
    vfr: bool = False,
    gop: int = 10,
    mux_options: dict[str, str] | None = None,
) -> Path:
    """Write a real video file and return its path.

    ``frames``: (n, h, w, 3) uint8 RGB frames; by default ``moving_frames(num_frames, *size)`` with
    ``size = (height, width)``. ``fps`` is the frame rate; with ``vfr=True`` the frames get irregular
    presentation timestamps (mean spacing 1/fps, gaps of 0.5 to 1.5 frame periods) in a 1/1000 s
    time base. H.264 is written with B-frames, so decode order differs from presentation order, and a
    keyframe every ``gop`` frames, so that seeking lands in the middle of a video.
    The audio track, when ``audio``, is a tone of ``tone_hz`` and amplitude 0.5 lasting
    ``audio_seconds`` (default: the video's duration) at ``sample_rate`` with ``channels`` (1 or 2)
    identical channels. The container is chosen by FFmpeg from the extension. Note that FFmpeg's own
    Vorbis encoder accepts only stereo, and libx264 in ``yuv420p`` needs even sizes (use ``yuv444p``;
    VP9 and MPEG-4 accept odd sizes in ``yuv420p``).

    ``mux_options`` replaces the muxer options. By default AVI files get ``avoid_negative_ts=disabled``:
    with FFmpeg's default, the priming delay of an AAC or MP3 track makes the AVI muxer skip two video
    frames after the first one (timestamps 0, 3, 4, ...); pass ``{}`` to get such a file on purpose.
    """
    path = Path(path)
    if frames is None:
        frames = moving_frames(num_frames, *size)
    num_frames, height, width = frames.shape[:3]
    rate = Fraction(fps).limit_denominator(1001)
    time_base = Fraction(1, 1000) if vfr else 1 / rate
    times = vfr_times(num_frames, fps) if vfr else np.arange(num_frames) / rate
    if mux_options is None:
        mux_options = {"avoid_negative_ts": "disabled"} if path.suffix.lower() == ".avi" else {}
    with av.open(str(path), "w", options=mux_options) as container:
        vstream = container.add_stream(codec, rate=rate)
        vstream.width, vstream.height, vstream.pix_fmt = width, height, pix_fmt
        vstream.codec_context.time_base = time_base
        vstream.codec_context.gop_size = gop
        if codec == "libx264":
            vstream.codec_context.options = {"preset": "veryfast", "crf": "18"}
            vstream.codec_context.max_b_frames = 2
        elif codec in ("mpeg4", "libvpx-vp9"):
            vstream.codec_context.bit_rate = 2_000_000
        video_frames = []
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frames[i], format="rgb24")
            frame.pts = int(round(times[i] / time_base))
            frame.time_base = time_base
            video_frames.append(frame)
        pairs = [(vstream, video_frames)]
        if audio:
            astream = _add_audio(container, audio_codec, sample_rate, channels)
            seconds = audio_seconds if audio_seconds is not None else num_frames / fps
            pairs.append((astream, _audio_frames(astream, tone(seconds, sample_rate, channels, tone_hz), sample_rate)))
        _mux_interleaved(container, pairs)
    return path


def write_audio(
    path: str | Path,
    *,
    seconds: float = 1.0,
    codec: str = "aac",
    sample_rate: int = 24000,
    channels: int = 1,
    tone_hz: float = 440.0,
) -> Path:
    """Write a file with one audio track (a tone) and no video track, e.g. ``song.mp4`` or ``song.m4a``."""
    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = _add_audio(container, codec, sample_rate, channels)
        _mux_interleaved(
            container, [(stream, _audio_frames(stream, tone(seconds, sample_rate, channels, tone_hz), sample_rate))]
        )
    return path


def write_corrupt(path: str | Path, kind: str = "garbage") -> Path:
    """Write an unusable file at ``path``.

    ``garbage``: 64 KiB of deterministic random bytes; ``truncated``: a real H.264/AAC video cut to its
    first third (for .mp4 this loses the index at the end of the file); ``empty``: zero bytes;
    ``text``: a few lines of plain text; ``damaged``: a real H.264 video (in the container of the
    extension) whose video packets after the first are overwritten with random bytes, so that decoding
    fails; ``damaged_spot``: the same with only the middle video packet overwritten (still decodable).
    """
    path = Path(path)
    if kind == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 64 * 1024, dtype=np.uint8).tobytes())
    elif kind == "truncated":
        write_video(path, num_frames=50)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif kind in ("damaged", "damaged_spot"):
        write_video(path, num_frames=50, audio=False)
        with av.open(str(path)) as container:
            packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size and p.pos is not None and p.pos >= 0]
        chosen = packets[1:] if kind == "damaged" else [packets[len(packets) // 2]]
        data = bytearray(path.read_bytes())
        rng = np.random.default_rng(0)
        for pos, size in chosen:
            # Keep the first bytes (the H.264 length prefix) so that the demuxer still finds the packet.
            data[pos + 4 : pos + size] = rng.integers(0, 256, size - 4, dtype=np.uint8).tobytes()
        path.write_bytes(bytes(data))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("This is not a video.\nJust a note that happens to have a video extension.\n")
    else:
        raise ValueError(f"unknown kind {kind!r}: expected garbage, truncated, empty, text, damaged or damaged_spot")
    return path
