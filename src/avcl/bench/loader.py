"""``avcl bench loader`` and ``avcl bench formats``: how fast training samples come, and why the cache
is stored the way it is.

- ``run_loader_bench``: training samples per second (a 16x112x112 clip and a 112x112 spectrogram
  crop, augmented, through a DataLoader) from the prepared cache with 0, 1, 2 workers, side by side
  with ``SourceDataset`` decoding every sample from its source video as research code does.
- ``run_format_bench``: the candidate storage formats of the cache (raw uint8, JPEG at several
  qualities through three decoders, short-GOP H.264) on given videos: bytes per 10 s of video, clips
  per second decoded, and samples per second with the same augmentation.
"""

from __future__ import annotations

import gc
import io
import os
import platform
import resource
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from avcl import fileio
from avcl.config import DataConfig
from avcl.data import transforms as T
from avcl.data.cache import DEFAULT_QUALITY, PreparedCache, decode_frame, encode_frame
from avcl.data.datasets import PreparedDataset, SourceDataset, build_loader
from avcl.data.sources import VideoItem
from avcl.errors import UserError


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_1min": load,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished (joined) child processes, such as loader workers."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def loader_rate(
    dataset, data_cfg: DataConfig, batch_size: int, seconds: float, warmup_batches: int = 2
) -> tuple[float, float, float]:
    """``(samples per second, samples per CPU-second, main-process CPU milliseconds per batch)`` drawn
    through ``build_loader`` for about ``seconds`` after ``warmup_batches`` (not counted in the first and
    third numbers); epochs follow each other.

    The second number divides by the CPU time of this process and its workers (start-up included), so
    it measures the work per sample even when other programs share the cores: it is the rate one
    fully available core would reach. The third is the CPU time the main process spends per batch
    received while measuring (with workers: receiving it; without: making it), what the training
    process pays besides its training step.
    """
    if len(dataset) == 0:
        raise UserError("nothing to measure: the dataset is empty")
    cpu0 = _cpu_seconds()
    loader = build_loader(dataset, data_cfg, batch_size, shuffle=True, seed=0, drop_last=False)
    epoch, samples, total, start, batches = 0, 0, 0, None, 0
    seen = 0
    main0 = 0.0
    while start is None or time.perf_counter() - start < seconds:
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            seen += 1
            total += len(batch["label"])
            if seen == warmup_batches:
                start, main0 = time.perf_counter(), time.process_time()
            elif start is not None:
                samples += len(batch["label"])
                batches += 1
                if time.perf_counter() - start >= seconds:
                    break
        epoch += 1
    wall = time.perf_counter() - start
    main_ms = 1e3 * (time.process_time() - main0) / max(batches, 1)
    close = getattr(loader, "close", None)
    if close is not None:
        close()
    del loader, batch  # shuts the workers down and joins them, so that their CPU time is counted
    gc.collect()
    return samples / wall, total / (_cpu_seconds() - cpu0), main_ms


def run_loader_bench(
    cache: str | os.PathLike | PreparedCache,
    *,
    workers: Sequence[int] = (0, 1, 2),
    batch_size: int = 16,
    seconds: float = 10.0,
    source_seconds: float | None = None,
    split: str | None = "train",
    out: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict:
    """Training samples/s from the cache and from the source videos, per number of loader workers.

    The samples are the default training samples (``DataConfig()``: 16 frames cropped to 112x112,
    flipped at random; the whole audio's log-mel resized to 256x256 and cropped to 112x112).
    ``split``: the split to draw from (all videos when the cache has no such split). Writes
    ``bench_loader.json`` under ``out`` when given. Returns the results.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core per loader process (workers run with one thread too)
    try:
        return _loader_bench(cache, workers, batch_size, seconds, source_seconds, split, out, progress)
    finally:
        torch.set_num_threads(threads)


def _loader_bench(cache, workers, batch_size, seconds, source_seconds, split, out, progress) -> dict:
    cache = cache if isinstance(cache, PreparedCache) else PreparedCache(cache)
    split = split if split is not None and len(cache.indices(split)) else None
    base = DataConfig()
    height, width = cache.frame_size
    if min(height, width) < base.crop_size:
        base = replace(base, crop_size=min(height, width))
    source_seconds = seconds if source_seconds is None else source_seconds
    rows = PreparedDataset(cache, split, base).rows
    e = cache.entries
    items = [VideoItem(e.path[r], e.label_name[r], e.split[r]) for r in rows]
    missing = [i.path for i in items if not os.path.exists(i.path)]
    results: dict = {
        "machine": machine(),
        "cache": str(cache.root),
        "videos": len(rows),
        "split": split,
        "frame_size": [height, width],
        "sample": {
            "clip": [base.clip_len, base.crop_size, base.crop_size],
            "audio": [base.audio_crop, base.audio_crop],
            "audio_window": base.audio_window,
            "audio_size": base.audio_size,
        },
        "batch_size": batch_size,
        "cache_bytes_per_second_of_video": round(
            cache.meta["counts"]["bytes"] / max(cache.meta["counts"]["seconds"], 1e-9)
        ),
        "cache_mb_per_10s": round(cache.meta["bytes_per_10s"] / 1e6, 3) if cache.meta["bytes_per_10s"] else None,
        "rates": [],
    }
    for w in workers:
        cfg = replace(base, num_workers=w)
        datasets = [("cache", PreparedDataset(cache, split, cfg), seconds, 2)]
        if not missing and source_seconds > 0:
            source = SourceDataset(
                items, cache.classes, cfg, size=(height, width), audio_stats=(cache.audio_mean, cache.audio_std)
            )
            datasets.append(("source", source, source_seconds, 1))
        for name, dataset, duration, warmup in datasets:
            rate, per_cpu, main_ms = loader_rate(dataset, cfg, batch_size, duration, warmup)
            results["rates"].append(
                {
                    "from": name,
                    "workers": w,
                    "samples_per_s": round(rate, 1),
                    "samples_per_cpu_s": round(per_cpu, 1),
                    "main_cpu_ms_per_batch": round(main_ms, 2),
                }
            )
            if progress:
                print(
                    f"  {name:6s} {w} workers: {rate:8.1f} samples/s, {per_cpu:8.1f} per CPU-second, "
                    f"main process {main_ms:.2f} ms CPU per batch",
                    flush=True,
                )
    if missing:
        results["source_missing"] = f"{len(missing)} source videos are gone (e.g. {missing[0]}): no source rates"
    by = {(r["from"], r["workers"]): r for r in results["rates"]}
    if ("cache", 0) in by:  # what workers keep of the in-process work per CPU-second (target: 90 % or more)
        base = by[("cache", 0)]["samples_per_cpu_s"]
        results["workers_vs_in_process"] = {
            str(w): round(by[("cache", w)]["samples_per_cpu_s"] / base, 3)
            for w in workers
            if w > 0 and ("cache", w) in by
        }
    results["speedup"] = {
        str(w): round(by[("cache", w)]["samples_per_s"] / by[("source", w)]["samples_per_s"], 1)
        for w in workers
        if ("source", w) in by
    }
    results["speedup_per_cpu"] = {
        str(w): round(by[("cache", w)]["samples_per_cpu_s"] / by[("source", w)]["samples_per_cpu_s"], 1)
        for w in workers
        if ("source", w) in by
    }
    results["machine"]["load_1min_after"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        fileio.write_json(Path(out) / "bench_loader.json", results, indent=1)
    return results


def format_loader_table(results: dict) -> str:
    by = {(r["from"], r["workers"]): r for r in results["rates"]}
    workers = sorted({r["workers"] for r in results["rates"]})
    lines = [
        "| loader workers | cache: samples/s | cache: per CPU-second | vs in-process | main CPU ms/batch "
        "| source: samples/s | source: per CPU-second | speed-up (wall / CPU) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ratio = results.get("workers_vs_in_process", {})
    for w in workers:
        cache, source = by[("cache", w)], by.get(("source", w))
        vs = f"{100 * ratio[str(w)]:.0f}%" if str(w) in ratio else "-"
        main = cache.get("main_cpu_ms_per_batch")
        head = (
            f"| {w} | {cache['samples_per_s']:.0f} | {cache['samples_per_cpu_s']:.0f} | {vs} | "
            f"{'-' if main is None else f'{main:.2f}'} |"
        )
        if source is None:
            lines.append(f"{head} - | - | - |")
            continue
        lines.append(
            f"{head} "
            f"{source['samples_per_s']:.1f} | {source['samples_per_cpu_s']:.1f} | "
            f"{results['speedup'][str(w)]:.0f}x / {results['speedup_per_cpu'][str(w)]:.0f}x |"
        )
    lines.append(
        f"\ncache: {results['cache_mb_per_10s']} MB per 10 s of video "
        f"({results['cache_bytes_per_second_of_video']} bytes/s), {results['videos']} videos, "
        f"frames {results['frame_size'][0]}x{results['frame_size'][1]}, batch {results['batch_size']}; "
        f"{results['machine']['cores']} cores, load average {results['machine']['load_1min']:.1f} before and "
        f"{results['machine']['load_1min_after']:.1f} after"
    )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ format comparison


def _encode_mp4(frames: np.ndarray, fps: float, gop: int, crf: int) -> bytes:
    """H.264 (yuv420p, no B-frames, a keyframe every ``gop`` frames) of (N, H, W, 3) frames, in memory."""
    import av

    buffer = io.BytesIO()
    n, height, width, _ = frames.shape
    pad_w, pad_h = width % 2, height % 2  # yuv420p needs even sizes
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=round(fps))
        stream.width, stream.height, stream.pix_fmt = width + pad_w, height + pad_h, "yuv420p"
        stream.options = {
            "crf": str(crf),
            "preset": "veryfast",
            "g": str(gop),
            "keyint_min": str(gop),
            "sc_threshold": "0",
            "bf": "0",
        }
        for frame in frames:
            frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return buffer.getvalue()


def _decode_mp4_clip(data: bytes, start: int, count: int, fps: float, height: int, width: int) -> np.ndarray:
    """(count, H, W, 3) frames ``start..`` of an in-memory mp4: seek to the keyframe before, decode forward."""
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        first = stream.start_time or 0
        container.seek(first + int(start / fps / stream.time_base), stream=stream, backward=True)
        out = []
        for frame in container.decode(stream):
            if round(float((frame.pts - first) * stream.time_base) * fps) >= start:
                out.append(frame.to_ndarray(format="rgb24")[:height, :width])
                if len(out) == count:
                    break
    return np.stack(out)


def run_format_bench(
    videos: Sequence[str | os.PathLike],
    *,
    size: tuple[int, int] = (128, 171),
    qualities: Sequence[int] = (75, 80, 85, 90),
    clip_len: int = 16,
    clips: int = 200,
    out: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict:
    """Bytes per 10 s and decoding speed of each candidate cache format on ``videos``.

    Every video is decoded once to ``size`` frames and stored in each format in memory. Then ``clips``
    random clips of ``clip_len`` frames are decoded (clips/s), and again with the training
    augmentation and a 112x112 crop of a 10 s spectrogram (samples/s), per CPU-second of this
    single-threaded process; each rate is the fastest of three passes over the same clips.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _format_bench(videos, size, qualities, clip_len, clips, out, progress)
    finally:
        torch.set_num_threads(threads)


def _format_bench(videos, size, qualities, clip_len, clips, out, progress) -> dict:
    from PIL import Image
    from torchvision.io import decode_jpeg

    from avcl.data.decode import iter_frames, probe

    decoded = []
    for path in videos:
        frames = np.stack(list(iter_frames(path, size=size)))
        decoded.append((frames, probe(path).fps or 25.0))
    seconds = sum(len(f) / fps for f, fps in decoded)
    rng = np.random.default_rng(0)
    cfg = DataConfig()
    crop = min(cfg.crop_size, *size)
    mel = rng.normal(-40, 15, size=(256, 1000)).astype(np.float16)  # a 10 s spectrogram
    mean, std = np.full(256, -40, np.float32), np.full(256, 15, np.float32)

    def sample(clip: np.ndarray) -> None:
        y, x = T.random_crop_box(clip.shape[1], clip.shape[2], crop, rng)
        T.crop_clip(clip, y, x, crop, bool(rng.random() < 0.5))
        ay, ax = rng.integers(0, cfg.audio_size - cfg.audio_crop + 1, size=2)
        T.spectrogram_crop(mel, mean, std, cfg.audio_size, int(ay), int(ax), cfg.audio_crop)

    def best_rate(fn: Callable[[int, int], object], picks: list[tuple[int, int]], rounds: int = 3) -> float:
        """Calls per CPU-second in the fastest of ``rounds`` passes (caches and frequency still vary a little)."""
        best = float("inf")
        for _ in range(rounds):
            t0 = time.process_time()  # CPU time of this (single-threaded) process: other programs do not count
            for v, s in picks:
                fn(v, s)
            best = min(best, time.process_time() - t0)
        return len(picks) / best

    def measure(name: str, clip_fn: Callable[[int, int], np.ndarray], n_bytes: int) -> dict:
        picks = [
            (v, int(rng.integers(0, max(len(decoded[v][0]) - clip_len, 0) + 1)))
            for v in rng.integers(0, len(decoded), size=clips)
        ]
        row = {
            "format": name,
            "mb_per_10s": round(n_bytes / seconds * 10 / 1e6, 2),
            "clips_per_cpu_s": round(best_rate(clip_fn, picks)),
            "samples_per_cpu_s": round(best_rate(lambda v, s: sample(clip_fn(v, s)), picks)),
        }
        if progress:
            print(
                f"  {name}: {row['mb_per_10s']} MB/10 s, {row['clips_per_cpu_s']} clips and "
                f"{row['samples_per_cpu_s']} samples per CPU-second",
                flush=True,
            )
        return row

    rows = [
        measure("raw uint8", lambda v, s: decoded[v][0][s : s + clip_len].copy(), sum(f.nbytes for f, _ in decoded))
    ]
    for q in qualities:
        jpegs = [[encode_frame(frame, q) for frame in frames] for frames, _ in decoded]
        n_bytes = sum(len(b) for video in jpegs for b in video)
        rows.append(
            measure(
                f"JPEG q{q}, simplejpeg",
                lambda v, s: np.stack([decode_frame(b) for b in jpegs[v][s : s + clip_len]]),
                n_bytes,
            )
        )
        if q == DEFAULT_QUALITY:  # the other decoders at the cache's quality
            tensors = [[torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in video] for video in jpegs]
            rows.append(
                measure(
                    f"JPEG q{q}, torchvision decode_jpeg",
                    lambda v, s: torch.stack(decode_jpeg(tensors[v][s : s + clip_len])).permute(0, 2, 3, 1).numpy(),
                    n_bytes,
                )
            )
            rows.append(
                measure(
                    f"JPEG q{q}, PIL",
                    lambda v, s: np.stack(
                        [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in jpegs[v][s : s + clip_len]]
                    ),
                    n_bytes,
                )
            )
    for gop, crf in ((8, 23), (16, 23), (16, 18)):
        mp4s = [_encode_mp4(frames, fps, gop, crf) for frames, fps in decoded]
        rows.append(
            measure(
                f"H.264 crf {crf}, keyframe every {gop}",
                lambda v, s: _decode_mp4_clip(mp4s[v], s, clip_len, decoded[v][1], *size),
                sum(len(m) for m in mp4s),
            )
        )
    results = {
        "machine": machine(),
        "videos": [str(v) for v in videos],
        "seconds_of_video": round(seconds, 2),
        "frame_size": list(size),
        "clip_len": clip_len,
        "rows": rows,
    }
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        fileio.write_json(Path(out) / "bench_formats.json", results, indent=1)
    return results


def format_formats_table(results: dict) -> str:
    lines = [
        f"| format | MB per 10 s | clips per CPU-second ({results['clip_len']} frames, decode only) "
        f"| samples per CPU-second (augmented, with spectrogram) |",
        "|---|---|---|---|",
    ]
    for r in results["rows"]:
        lines.append(f"| {r['format']} | {r['mb_per_10s']:.2f} | {r['clips_per_cpu_s']} | {r['samples_per_cpu_s']} |")
    return "\n".join(lines)
