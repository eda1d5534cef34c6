"""Writing the benchmark: portable encoding (H.264 and AAC in .mp4), media hashes, the manifest, and the
check of a copy against its manifest."""

from __future__ import annotations

import contextlib
import csv
import ctypes
import hashlib
import multiprocessing
import os
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np

from avcl import fileio
from avcl.data.synth.clip import _render_clip, _VideoJob
from avcl.data.synth.tables import CLASS_ORDER, MANIFEST_COLUMNS
from avcl.errors import UserError
from avcl.progress import progress as progress_bar


@contextlib.contextmanager
def _portable_ffmpeg() -> Iterator[None]:
    """Run FFmpeg's plain C code paths (no SIMD) inside the block, whatever the CPU.

    FFmpeg picks SIMD routines by the CPU it runs on, and some of them round floats differently: the
    AAC decoder's output on an AVX-512 machine differs in the last bits from its output without SIMD.
    ``av_force_cpu_flags(0)`` selects the C routines, which every CPU runs alike (forcing *no* flag is
    safe anywhere, unlike forcing flags a CPU lacks); ``-1`` restores detection afterwards. Codecs pick
    their routines when they are opened, so everything opened inside the block keeps the C paths.
    Does nothing where PyAV's libavutil cannot be found (then the hashes are only checked on CPUs alike).
    """
    lib = _libavutil()
    if lib is None:
        yield
        return
    lib.av_force_cpu_flags(0)
    try:
        yield
    finally:
        lib.av_force_cpu_flags(-1)


_AVUTIL: list = []


def _libavutil():
    """The libavutil that PyAV loaded (ctypes handle), or None."""
    if not _AVUTIL:
        handle = None
        candidates = []
        try:
            with open("/proc/self/maps") as f:
                candidates = sorted({line.split()[-1] for line in f if "libavutil" in line and "/" in line})
        except OSError:
            pass
        root = Path(av.__file__).resolve().parent
        for folder in (root.parent / "av.libs", root / ".dylibs", root.parent / "av.dylibs"):
            candidates += sorted(str(p) for p in folder.glob("libavutil*")) if folder.is_dir() else []
        for candidate in candidates:
            try:
                handle = ctypes.CDLL(candidate)
                handle.av_force_cpu_flags.argtypes = [ctypes.c_int]
                break
            except (OSError, AttributeError):
                handle = None
        _AVUTIL.append(handle)
    return _AVUTIL[0]


def _rgb_to_yuv420p(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB -> (T, 3H/2, W) uint8 yuv420p planes (BT.601, limited range) in integer
    arithmetic, so the result is the same on every machine (swscale's SIMD conversion need not be).
    Chroma is the rounded mean of each 2x2 block."""
    rgb = frames.astype(np.int32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16
    t, h, w = r.shape
    # 4x the 2x2 mean, as four strided adds (4x faster than a sum over the reshaped block axes)
    mean = rgb[:, 0::2, 0::2] + rgb[:, 0::2, 1::2] + rgb[:, 1::2, 0::2] + rgb[:, 1::2, 1::2]
    mr, mg, mb = mean[..., 0], mean[..., 1], mean[..., 2]
    u = ((-38 * mr - 74 * mg + 112 * mb + 512) >> 10) + 128
    v = ((112 * mr - 94 * mg - 18 * mb + 512) >> 10) + 128
    out = np.empty((t, h * 3 // 2, w), np.uint8)
    out[:, :h] = y
    out[:, h : h + h // 4] = u.reshape(t, h // 4, w)
    out[:, h + h // 4 :] = v.reshape(t, h // 4, w)
    return out


# libx264: lossless (qp 0; the decoded frames are the encoder's input whatever code path it took) and
# without assembly (asm=0: the same bitstream on every CPU, which its SIMD paths do not promise).
X264_OPTIONS = {"qp": "0", "preset": "ultrafast", "x264-params": "asm=0"}


def _write_mp4(path: Path, frames: np.ndarray, audio: np.ndarray, fps: int, sample_rate: int) -> None:
    """Encode ``frames`` (T, H, W, 3) uint8 as lossless H.264 (yuv420p) and ``audio`` (S,) float32 as mono
    AAC into ``path``, the same bytes on every machine (see :data:`X264_OPTIONS`, :func:`_portable_ffmpeg`).

    One encoder thread each: generation already runs one process per core.
    """
    planes = _rgb_to_yuv420p(frames)
    with _portable_ffmpeg(), av.open(str(path), mode="w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height = frames.shape[2], frames.shape[1]
        video.pix_fmt = "yuv420p"
        video.options = dict(X264_OPTIONS)
        video.codec_context.thread_count = 1
        sound = container.add_stream("aac", rate=sample_rate)
        sound.layout = "mono"
        sound.bit_rate = 64000
        sound.options = {"aac_coder": "fast"}  # about 4x faster than the default coder search
        for i, image in enumerate(planes):
            frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode())
        chunk = sample_rate  # one second per frame object; the encoder re-cuts them into AAC frames
        for start in range(0, len(audio), chunk):
            frame = av.AudioFrame.from_ndarray(audio[None, start : start + chunk], format="fltp", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = start
            frame.time_base = Fraction(1, sample_rate)
            container.mux(sound.encode(frame))
        container.mux(sound.encode())


def media_hashes(path: str | Path) -> tuple[str, str]:
    """``(video, audio)`` sha256 hex digests of a file's decoded media, the same on every machine.

    Video: the decoded yuv420p planes of every frame, in order (H.264 decoding is bit-exact by the
    standard; the planes are taken before any conversion to RGB, whose SIMD code varies by CPU).
    Audio: the decoded float32 samples, decoded with FFmpeg's C paths (:func:`_portable_ffmpeg`), since
    the AAC decoder's SIMD output differs in the last bits between CPUs.
    """
    video, audio = hashlib.sha256(), hashlib.sha256()
    with _portable_ffmpeg(), av.open(str(path)) as container:
        for stream in container.streams:
            stream.thread_type = "SLICE"
            stream.codec_context.thread_count = 1
        for frame in container.decode(container.streams.video[0], container.streams.audio[0]):
            if isinstance(frame, av.VideoFrame):
                video.update(np.ascontiguousarray(frame.reformat(format="yuv420p").to_ndarray()).tobytes())
            else:
                audio.update(np.ascontiguousarray(frame.to_ndarray(), dtype="<f4").tobytes())
    return video.hexdigest(), audio.hexdigest()


def _make_video(job: _VideoJob) -> dict[str, str]:
    """Render and write one video (atomically: a temporary name, then a rename); return its manifest row."""
    clip = _render_clip(job)
    path = Path(job.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    try:
        _write_mp4(tmp, clip.frames, clip.audio, job.fps, job.sample_rate)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    pattern, sound = CLASS_ORDER[job.class_index]
    video_hash, audio_hash = media_hashes(path)
    return {
        "path": job.path,
        "label": f"{pattern}-{sound}",
        "pattern": pattern,
        "sound": sound,
        "frames": str(len(clip.frames)),
        "duration": f"{len(clip.frames) / job.fps:.3f}",
        "events": " ".join(str(e) for e in clip.events),
        "shape": clip.shape,
        "texture": clip.texture,
        "context": str(clip.context),
        "video_sha256": video_hash,
        "audio_sha256": audio_hash,
    }


def _write_manifest(out: Path, rows: list[dict[str, str]], names: list[str]) -> Path:
    """``manifest.csv`` (``rows``, in their order, paths relative to ``out``) and ``classes.txt``, each
    written atomically; returns the manifest's path."""
    manifest = out / "manifest.csv"
    with fileio.atomic_open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    fileio.atomic_write(out / "classes.txt", "".join(f"{name}\n" for name in names))
    return manifest


def _check_row(args: tuple[str, str, str]) -> str | None:
    path, video_hash, audio_hash = args
    if not Path(path).is_file():
        return f"{path}: missing"
    try:
        hashes = media_hashes(path)
    except (av.error.FFmpegError, IndexError) as e:
        return f"{path}: cannot be decoded ({e})"
    if hashes != (video_hash, audio_hash):
        which = [name for name, a, b in zip(("video", "audio"), hashes, (video_hash, audio_hash)) if a != b]
        return f"{path}: decoded {' and '.join(which)} differ from the manifest"
    return None


def verify_benchmark(out: str | Path, workers: int = 2, progress: bool = False) -> tuple[int, list[str]]:
    """Check a copy of a benchmark: decode every file of ``out/manifest.csv`` and compare its media hashes
    (:func:`media_hashes`) with the manifest's. Returns ``(files checked, problems)``; no problem means
    the copy decodes exactly as the one that was generated, on any machine."""
    out = Path(out)
    manifest = out / "manifest.csv"
    if not manifest.is_file():
        raise UserError(f"{manifest} not found: not a synthetic benchmark")
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and "video_sha256" not in rows[0]:
        raise UserError(f"{manifest} has no media hashes (written by an older avcl synth)")
    args = [(str(out / row["path"]), row["video_sha256"], row["audio_sha256"]) for row in rows]
    bar = progress_bar(
        total=len(args), desc="avcl synth --verify", unit="video", disable=not progress, dynamic_ncols=True
    )
    with bar:
        if workers <= 1 or len(args) < 2:
            results = []
            for a in args:
                results.append(_check_row(a))
                bar.update()
        else:
            with multiprocessing.get_context("spawn").Pool(min(workers, len(args))) as pool:
                results = []
                for r in pool.imap(_check_row, args, chunksize=4):
                    results.append(r)
                    bar.update()
    return len(args), [r for r in results if r is not None]
