"""Decoding video frames and audio with PyAV (FFmpeg).

- ``probe(path) -> VideoInfo``: container metadata only, no decoding.
- ``iter_frames(path, size, fps)``: every frame (or a constant-rate resampling), resized, one at a time.
- ``read_frames(path, start, count, size) -> (count, H, W, 3) uint8``: seek near ``start``, decode forward.
- ``read_audio(path, sample_rate) -> (S,) float32``: the whole audio track, mono, resampled.

Frames are resized by FFmpeg's swscale (bilinear) while converting to RGB, which is much faster than
converting at full size and resizing afterwards. Every failure is a ``DecodeError`` that names the
file and a short reason code; raw PyAV exceptions never escape.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from avcl.errors import UserError

# The reason codes of DecodeError, with the message used when no detail is given.
REASONS: dict[str, str] = {
    "unreadable": "not a media file FFmpeg can read",
    "empty": "the file holds no frames",
    "no_video_stream": "no video stream",
    "no_audio_stream": "no audio stream",
    "too_short": "too short",
    "decode_failed": "decoding failed",
}

DEFAULT_SIZE = (128, 171)  # (height, width), the VCOP convention (METHOD.md section 1)
MAX_BAD_PACKETS = 8  # damaged packets skipped per stream before a file counts as undecodable


class DecodeError(UserError):
    """A file that cannot be used. ``path`` names it, ``reason`` is one of ``REASONS``.

    ``str()`` is ``'<path>: <human message>'``. The error pickles, so worker processes can send it back.
    """

    def __init__(self, path: str | os.PathLike, reason: str, detail: str | None = None) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown DecodeError reason {reason!r}; expected one of {sorted(REASONS)}")
        self.path = str(path)
        self.reason = reason
        self.detail = detail or REASONS[reason]
        super().__init__(f"{self.path}: {self.detail}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason, self.detail))


@dataclass
class VideoInfo:
    """Container metadata of one video file (``probe``)."""

    path: str
    width: int
    height: int
    fps: float  # the stream's average frame rate
    num_frames: int  # as the container states it, else round(duration * fps)
    duration: float  # seconds
    has_audio: bool
    audio_rate: int | None
    audio_channels: int | None


def _ffmpeg_message(error: BaseException) -> str:
    """The FFmpeg error text without PyAV's errno prefix and repeated file name."""
    if isinstance(error, av.FFmpegError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


@contextmanager
def _open(path: str | os.PathLike) -> Iterator[av.container.InputContainer]:
    """Open ``path`` for reading; any failure to open becomes a DecodeError."""
    path = str(path)
    if not os.path.exists(path):
        raise DecodeError(path, "unreadable", "file not found")
    if os.path.isdir(path):
        raise DecodeError(path, "unreadable", "is a folder, not a file")
    if os.path.getsize(path) == 0:
        raise DecodeError(path, "empty", "the file is empty (0 bytes)")
    try:
        container = av.open(path, metadata_errors="ignore")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise DecodeError(path, "unreadable", f"not a media file FFmpeg can read ({_ffmpeg_message(error)})") from error
    try:
        yield container
    finally:
        container.close()


def _video_stream(container, path: str) -> av.video.stream.VideoStream:
    # Cover art (an attached picture) is exposed as a one-frame video stream; it is not a video.
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "nothing"
        raise DecodeError(path, "no_video_stream", f"no video stream (the file holds: {kinds})")
    return streams[0]


def _frame_rate(stream) -> float:
    """Average frame rate of a video stream, falling back to FFmpeg's guess; 0.0 when unknown."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and rate > 0:
            return float(rate)
    return 0.0


def _duration(container, stream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def _count_packets(container, stream) -> int:
    """Video packets of ``stream``, demuxed without decoding (one frame each); 0 when unreadable."""
    count = 0
    try:
        for packet in container.demux(stream):
            count += packet.size > 0  # the demuxer ends with an empty flush packet
        container.seek(0)
    except av.FFmpegError:
        return 0
    return count


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read the container metadata of ``path`` (no frames are decoded).

    ``num_frames`` is the count the container states; containers that state none (Matroska, WebM,
    some AVI) have their packets counted, which reads the file but decodes nothing; only when that fails
    is it ``round(duration * fps)``, an estimate. Raises DecodeError.
    """
    path = str(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        fps = _frame_rate(stream)
        duration = _duration(container, stream)
        num_frames = stream.frames or _count_packets(container, stream) or round(duration * fps)
        audio = container.streams.audio[0] if container.streams.audio else None
        return VideoInfo(
            path=path,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=fps,
            num_frames=int(num_frames),
            duration=duration,
            has_audio=audio is not None,
            audio_rate=audio.codec_context.sample_rate if audio is not None else None,
            audio_channels=audio.codec_context.channels if audio is not None else None,
        )


class _ToRGB:
    """Converts decoded frames to upright (H, W, 3) uint8 RGB of ``size = (height, width)`` (None: source size).

    swscale resizes and converts in one pass; keeping one reformatter reuses its scaling context, which
    makes the conversion several times faster than ``frame.to_ndarray(width=..., height=...)`` per frame.
    """

    def __init__(self, size: tuple[int, int] | None) -> None:
        if size is not None and (len(size) != 2 or min(size) < 1):
            raise ValueError(f"size must be (height, width) with positive values or None, got {size!r}")
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.reformatter = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        # Phone videos store portrait frames sideways with a display matrix: the frame is shown turned
        # counter-clockwise by ``frame.rotation`` degrees, as players (and ffmpeg's autorotate) show it.
        turns = round(frame.rotation / 90) % 4 if frame.rotation else 0
        height, width = self.size if self.size is not None else (frame.height, frame.width)
        if turns % 2 and self.size is not None:  # resize to the stored orientation, then turn
            height, width = width, height
        rgb = self.reformatter.reformat(frame, width=width, height=height, format="rgb24", interpolation="BILINEAR")
        array = rgb.to_ndarray()
        return np.ascontiguousarray(np.rot90(array, turns) if turns else array)


def _decoded(container, stream, path: str) -> Iterator[av.frame.Frame]:
    """Decoded frames of ``stream`` from the current position.

    A packet the decoder rejects is skipped, as the ffmpeg command does, so that one damaged spot does not
    lose a whole video; more than ``MAX_BAD_PACKETS`` of them, or a read error, raise DecodeError.
    """
    bad = 0
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.InvalidDataError as error:
                bad += 1
                if bad > MAX_BAD_PACKETS:
                    raise DecodeError(
                        path,
                        "decode_failed",
                        f"decoding failed: more than {MAX_BAD_PACKETS} damaged packets ({_ffmpeg_message(error)})",
                    ) from error
                continue
            yield from frames
    except av.FFmpegError as error:
        raise DecodeError(path, "decode_failed", f"decoding failed ({_ffmpeg_message(error)})") from error


def _open_video(container, path: str, threads: int = 0):
    stream = _video_stream(container, path)
    # Frame and slice threads make one decoder several times faster on a multi-core machine; with one
    # decoder per core (worker processes) a single thread each avoids oversubscription.
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = threads
    return stream


def iter_frames(
    path: str | os.PathLike,
    size: tuple[int, int] | None = DEFAULT_SIZE,
    fps: float | None = None,
    *,
    threads: int = 0,
) -> Iterator[np.ndarray]:
    """Yield (H, W, 3) uint8 RGB frames in presentation order, resized to ``size = (height, width)``.

    ``fps=None`` yields every decoded frame. A number resamples to that constant rate by presentation
    time: output frame k shows the source frame on screen at ``t0 + k / fps`` (``t0`` the first
    frame's time), so frames are duplicated or dropped; this is what variable-frame-rate sources need.
    The last source frame lasts one frame period of its own. Only one decoded frame is held at a time.

    ``threads``: decoder threads, 0 for one per core (see ``_open_video``). Raises DecodeError
    (``no_video_stream``, ``unreadable``, ``decode_failed``, ``empty``).
    """
    path = str(path)
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    to_rgb = _ToRGB(size)
    with _open(path) as container:
        stream = _open_video(container, path, threads)
        if fps is None:
            count = 0
            for frame in _decoded(container, stream, path):
                count += 1
                yield to_rgb(frame)
            if count == 0:
                raise DecodeError(path, "empty", "no video frame could be decoded")
            return
        yield from _resample(_decoded(container, stream, path), path, to_rgb, fps, _frame_rate(stream))


def _resample(
    frames: Iterator[av.VideoFrame], path: str, to_rgb: _ToRGB, fps: float, source_fps: float
) -> Iterator[np.ndarray]:
    """Constant-rate resampling by presentation time (see ``iter_frames``)."""
    period = 1.0 / (source_fps or fps)  # how long a frame lasts when its successor gives no time
    current: av.VideoFrame | None = None
    current_time = 0.0
    current_rgb: np.ndarray | None = None
    t0: float | None = None
    k = 0  # next output frame, due at t0 + k / fps
    for frame in frames:
        # Frames without a timestamp (or going back in time) follow their predecessor by one period.
        time = frame.time
        if time is None or (current is not None and time <= current_time):
            time = current_time + period if current is not None else 0.0
        if current is None:
            t0 = time
        else:
            while t0 + k / fps < time - 1e-9:  # output times before this frame show the current one
                if current_rgb is None:
                    current_rgb = to_rgb(current)
                yield current_rgb.copy()
                k += 1
        current, current_time, current_rgb = frame, time, None
    if current is None:
        raise DecodeError(path, "empty", "no video frame could be decoded")
    last_period = float(current.duration * current.time_base) if current.duration and current.time_base else period
    end = current_time + last_period
    current_rgb = to_rgb(current)
    while t0 + k / fps < end - 1e-9:
        yield current_rgb.copy()
        k += 1


def read_frames(
    path: str | os.PathLike,
    start: int,
    count: int,
    size: tuple[int, int] | None = DEFAULT_SIZE,
    *,
    threads: int = 0,
) -> np.ndarray:
    """(count, H, W, 3) uint8: ``count`` consecutive decoded frames from frame index ``start``.

    The frames are those ``iter_frames(path, size)`` yields at positions ``start .. start+count-1``.
    This is per-sample decoding as research code does it: open the file, seek to the keyframe at or
    before ``start`` (its time computed from the frame rate), decode forward, and check that the decoded
    timestamps sit on the frame grid. Streams whose timestamps are irregular (variable frame rate,
    frames skipped by the muxer, missing timestamps), as the demuxer's index or the decoded frames show,
    are decoded from the beginning instead, counting frames. When the video ends early the last frame is
    repeated. ``threads`` as in ``iter_frames``.
    """
    path = str(path)
    if start < 0 or count < 1:
        raise ValueError(f"need start >= 0 and count >= 1, got start={start}, count={count}")
    to_rgb = _ToRGB(size)
    frames = None
    if start > 0:
        with _open(path) as container:
            frames = _read_after_seek(container, _open_video(container, path, threads), path, start, count, to_rgb)
    if frames is None:  # start == 0, or the seek was not usable: count frames from a fresh start
        with _open(path) as container:
            stream = _open_video(container, path, threads)
            frames = _read_sequential(_decoded(container, stream, path), start, count, to_rgb)
    if not frames:
        raise DecodeError(path, "empty", "no video frame could be decoded")
    frames += [frames[-1]] * (count - len(frames))
    return np.stack(frames)


def _read_sequential(frames: Iterator[av.VideoFrame], start: int, count: int, to_rgb: _ToRGB) -> list[np.ndarray]:
    """Count decoded frames from the current position (the beginning); keep frames start..start+count-1.

    When the video has ``start`` frames or fewer, the last frame is kept so that it can be repeated.
    """
    out: list[np.ndarray] = []
    last = None
    for index, frame in enumerate(frames):
        if index >= start:
            out.append(to_rgb(frame))
            if len(out) == count:
                break
        last = frame
    if not out and last is not None:
        out.append(to_rgb(last))
    return out


def _read_after_seek(container, stream, path: str, start: int, count: int, to_rgb: _ToRGB) -> list[np.ndarray] | None:
    """Seek near ``start`` and decode forward; None when timestamps do not allow it (caller falls back)."""
    rate = stream.average_rate or stream.guessed_rate
    time_base = stream.time_base
    if not rate or rate <= 0 or time_base is None:
        return None
    first_pts = stream.start_time or 0
    ticks_per_frame = 1 / (rate * time_base)  # the frame period in time_base units (exact, a Fraction)
    target = first_pts + math.floor(start * ticks_per_frame)
    if _index_has_gaps(stream, ticks_per_frame, target):
        return None
    try:
        container.seek(target, stream=stream, backward=True, any_frame=False)
    except av.FFmpegError:
        return None
    out: list[np.ndarray] = []
    last = None
    previous_index = None
    for frame in _decoded(container, stream, path):
        if frame.pts is None:
            return None
        position = (frame.pts - first_pts) / ticks_per_frame
        index = round(position)
        # Irregular timestamps: off the frame grid, or not one period after the previous frame.
        if abs(position - index) > 0.25 or (previous_index is not None and index != previous_index + 1):
            return None
        if previous_index is None and index > start:
            return None  # the seek landed after the frame we need
        previous_index = index
        if index >= start:
            out.append(to_rgb(frame))
            if len(out) == count:
                break
        last = frame
    if not out:
        if last is None:
            return None
        out.append(to_rgb(last))
    return out


def _index_has_gaps(stream, ticks_per_frame, until: int) -> bool:
    """True when the demuxer's index shows frames off the regular grid before timestamp ``until``.

    MP4, MOV and AVI index every packet; their timestamps (decode times, regular too with B-frames) then
    reveal frames the muxer skipped and variable frame rates before the seek point, which decoding after
    the seek cannot see. Indexes of keyframes only (Matroska cues) prove nothing and pass.
    """
    entries = stream.index_entries
    every_packet = any(not entry.is_keyframe for entry in entries[:16]) or 0 < stream.frames <= len(entries)
    if len(entries) < 2 or not every_packet:
        return False
    times = sorted(entry.timestamp for entry in entries if entry.timestamp <= until + ticks_per_frame)
    return any(abs((b - a) / ticks_per_frame - 1) > 0.25 for a, b in zip(times, times[1:]))


def read_audio(path: str | os.PathLike, sample_rate: int = 24000) -> np.ndarray:
    """(S,) float32 mono in [-1, 1]: the whole first audio track, resampled to ``sample_rate``.

    PyAV's AudioResampler (swresample) changes the rate and sample format; the channels are then
    averaged, as ``librosa.to_mono`` does (swresample's own downmix would scale a stereo tone by sqrt 2).
    Raises DecodeError (``no_audio_stream``, ``unreadable``, ``decode_failed``, ``empty``).
    """
    path = str(path)
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    with _open(path) as container:
        if not container.streams.audio:
            raise DecodeError(path, "no_audio_stream", "no audio stream")
        stream = container.streams.audio[0]
        stream.thread_type = "AUTO"
        resampler = av.AudioResampler(format="fltp", rate=sample_rate)
        chunks: list[np.ndarray] = []
        try:
            for frame in _decoded(container, stream, path):
                chunks += [out.to_ndarray().mean(axis=0) for out in resampler.resample(frame)]
            chunks += [out.to_ndarray().mean(axis=0) for out in resampler.resample(None)]
        except (av.FFmpegError, ValueError) as error:  # ValueError: the audio format changes mid-stream
            raise DecodeError(path, "decode_failed", f"audio resampling failed ({_ffmpeg_message(error)})") from error
    if not chunks:
        raise DecodeError(path, "empty", "no audio could be decoded")
    return np.clip(np.concatenate(chunks).astype(np.float32, copy=False), -1.0, 1.0)
