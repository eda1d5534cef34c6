"""``avcl bench loader``: how fast training samples come.

``run_loader_bench``: training samples per second (a 16x112x112 clip and a 112x112 spectrogram crop,
augmented, through a DataLoader) from the prepared cache with 0, 1, 2 workers, side by side with
``SourceDataset`` decoding every sample from its source video as research code does. Why the cache is
stored the way it is: ``avcl.bench.formats``.
"""

from __future__ import annotations

import gc
import os
import resource
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from avcl import fileio
from avcl.bench.host import machine
from avcl.config import DataConfig
from avcl.data.cache import PreparedCache
from avcl.data.datasets import PreparedDataset, SourceDataset, build_loader
from avcl.data.sources import VideoItem
from avcl.engine.setup import torch_threads
from avcl.errors import UserError


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
    with torch_threads(1):  # one core per loader process (workers run with one thread too)
        return _loader_bench(cache, workers, batch_size, seconds, source_seconds, split, out, progress)


def _loader_bench(cache, workers, batch_size, seconds, source_seconds, split, out, progress) -> dict:
    cache = cache if isinstance(cache, PreparedCache) else PreparedCache(cache)
    split = split if split is not None and len(cache.indices(split)) else None
    base = _sample_config(cache)
    rows = PreparedDataset(cache, split, base).rows
    e = cache.entries
    items = [VideoItem(e.path[r], e.label_name[r], e.split[r]) for r in rows]
    missing = [i.path for i in items if not os.path.exists(i.path)]
    results = _description(cache, split, base, len(rows), batch_size)
    source_seconds = seconds if source_seconds is None else source_seconds
    for w in workers:
        cfg = replace(base, num_workers=w)
        datasets = [("cache", PreparedDataset(cache, split, cfg), seconds, 2)]
        if not missing and source_seconds > 0:
            source = SourceDataset(
                items, cache.classes, cfg, size=cache.frame_size, audio_stats=(cache.audio_mean, cache.audio_std)
            )
            datasets.append(("source", source, source_seconds, 1))
        for name, dataset, duration, warmup in datasets:
            results["rates"].append(_rate(name, dataset, cfg, batch_size, duration, warmup, progress))
    if missing:
        results["source_missing"] = f"{len(missing)} source videos are gone (e.g. {missing[0]}): no source rates"
    _add_ratios(results, workers)
    results["machine"]["load_1min_after"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        fileio.write_json(Path(out) / "bench_loader.json", results, indent=1)
    return results


def _sample_config(cache: PreparedCache) -> DataConfig:
    """The default training samples, the crop made to fit frames smaller than it."""
    base = DataConfig()
    height, width = cache.frame_size
    if min(height, width) < base.crop_size:
        base = replace(base, crop_size=min(height, width))
    return base


def _description(cache: PreparedCache, split: str | None, base: DataConfig, videos: int, batch_size: int) -> dict:
    """What the benchmark measures on which machine, with an empty list of ``rates`` to fill."""
    height, width = cache.frame_size
    return {
        "machine": machine(),
        "cache": str(cache.root),
        "videos": videos,
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


def _rate(name, dataset, cfg: DataConfig, batch_size: int, seconds: float, warmup: int, progress: bool) -> dict:
    """One row of ``rates``: the loader of ``dataset`` (``name``: cache or source) measured by :func:`loader_rate`."""
    rate, per_cpu, main_ms = loader_rate(dataset, cfg, batch_size, seconds, warmup)
    if progress:
        print(
            f"  {name:6s} {cfg.num_workers} workers: {rate:8.1f} samples/s, {per_cpu:8.1f} per CPU-second, "
            f"main process {main_ms:.2f} ms CPU per batch",
            flush=True,
        )
    return {
        "from": name,
        "workers": cfg.num_workers,
        "samples_per_s": round(rate, 1),
        "samples_per_cpu_s": round(per_cpu, 1),
        "main_cpu_ms_per_batch": round(main_ms, 2),
    }


def _add_ratios(results: dict, workers: Sequence[int]) -> None:
    """Workers against in-process loading, and the cache against the source videos, per worker count."""
    by = {(r["from"], r["workers"]): r for r in results["rates"]}
    if ("cache", 0) in by:  # what workers keep of the in-process work per CPU-second (target: 90 % or more)
        base = by[("cache", 0)]["samples_per_cpu_s"]
        results["workers_vs_in_process"] = {
            str(w): round(by[("cache", w)]["samples_per_cpu_s"] / base, 3)
            for w in workers
            if w > 0 and ("cache", w) in by
        }
    for key, rate in (("speedup", "samples_per_s"), ("speedup_per_cpu", "samples_per_cpu_s")):
        results[key] = {
            str(w): round(by[("cache", w)][rate] / by[("source", w)][rate], 1) for w in workers if ("source", w) in by
        }


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
