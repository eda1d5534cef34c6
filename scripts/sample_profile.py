"""Where the CPU time of a training sample goes: ``PreparedDataset.get_batch`` timed whole and by stage.

    python scripts/sample_profile.py CACHE [--batch 16] [--epochs 6] [--rounds 5] [--jpeg-options]

One process, one thread, the default ``DataConfig`` (16x112x112 clips, 112x112 spectrogram crops),
batches written into channels-last buffers as the loader's are. Each stage is timed with the process's
CPU clock around the real functions (wrapped for the measurement): the 16 JPEG decodes (simplejpeg
calls alone), reading the clip around them (frame table, slices), the crop and flip into the batch, the
spectrogram crop, and the rest of the sample (key and random draws, the video's row, the audio window).
Prints milliseconds per sample, the best and the median of ``--rounds`` passes over the same keys, and
the load average. ``--jpeg-options`` also times simplejpeg's ``fastdct`` and ``fastupsample`` decodes
(libjpeg-turbo's faster, less exact IDCT and chroma upsampling) on every 7th frame of the cache, with
the largest pixel difference each makes.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

import avcl.data.cache as cache_module
from avcl.config import DataConfig
from avcl.data import transforms as T
from avcl.data.datasets import EpochSampler, PreparedDataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cache")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=6, help="epochs of keys per pass (default 6)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jpeg-options", action="store_true", help="also time simplejpeg's fast decode options")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = PreparedDataset(args.cache, "train", DataConfig(num_workers=0))
    sampler = EpochSampler(len(dataset), True, 0)
    keys = []
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        keys += list(sampler)
    b = args.batch
    video_shape, audio_shape = dataset.sample_shapes()
    out = {
        # channels-last as the loader's buffers (channel-first in trees without channels_last_array)
        "video": T.channels_last_array((b, *video_shape))
        if hasattr(T, "channels_last_array")
        else np.empty((b, *video_shape), np.uint8),
        "audio": np.empty((b, *audio_shape), np.float32),
        "label": np.empty(b, np.int64),
        "index": np.empty(b, np.int64),
    }
    spent: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*a, **k):
            t = time.process_time()
            try:
                return fn(*a, **k)
            finally:
                spent[name] = spent.get(name, 0.0) + time.process_time() - t

        return wrapper

    def one_pass(stages: bool) -> dict[str, float]:
        spent.clear()
        saved = cache_module.decode_frame, dataset.cache.read_frames, T.crop_clip_into, T.spectrogram_crop
        if stages:
            cache_module.decode_frame = timed("decode", saved[0])
            dataset.cache.read_frames = timed("read", saved[1])
            T.crop_clip_into = timed("crop", saved[2])
            T.spectrogram_crop = timed("spectrogram", saved[3])
        n = 0
        t = time.process_time()
        try:
            for i in range(0, len(keys) - b + 1, b):
                dataset.get_batch(keys[i : i + b], out)
                n += b
        finally:
            if stages:
                del dataset.cache.read_frames
            cache_module.decode_frame, T.crop_clip_into, T.spectrogram_crop = saved[0], saved[2], saved[3]
        total = time.process_time() - t
        return {"total": total / n, **{k: v / n for k, v in spent.items()}}

    load = os.getloadavg()[0]
    whole, staged = [], []
    for _ in range(args.rounds):  # alternating, so that both see the same load
        whole.append(one_pass(False)["total"])
        staged.append(one_pass(True))
    rows = {
        "16 JPEG decodes (simplejpeg)": [s["decode"] for s in staged],
        "reading the clip around them": [s["read"] - s["decode"] for s in staged],
        "crop, flip into the batch": [s["crop"] for s in staged],
        "spectrogram crop": [s["spectrogram"] for s in staged],
        "the rest (keys, draws, rows, window, Python)": [
            s["total"] - s["read"] - s["crop"] - s["spectrogram"] for s in staged
        ],
        "whole sample, stages timed": [s["total"] for s in staged],
        "whole sample, untimed": whole,
    }
    print(f"{len(keys)} samples per pass, batch {b}, load average {load:.1f} before, {os.getloadavg()[0]:.1f} after")
    print("| stage | ms per sample (best) | median |")
    print("|---|---|---|")
    for name, values in rows.items():
        print(f"| {name} | {1e3 * min(values):.3f} | {1e3 * float(np.median(values)):.3f} |")
    best = min(whole)
    print(f"samples per CPU-second: {1 / best:.0f} (best pass), {1 / float(np.median(whole)):.0f} (median)")
    if args.jpeg_options:
        jpeg_options(dataset.cache, args.rounds)


def jpeg_options(cache, rounds: int) -> None:
    import simplejpeg

    e = cache.entries
    frames = []
    for row in range(len(cache)):
        table = cache.frame_table(row)
        shard, base = int(e.shard[row]), int(e.offset[row])
        for f in range(0, len(table) - 1, 7):
            frames.append(bytes(cache._shards.view(shard, base + int(table[f]), base + int(table[f + 1]))))
    height, width = cache.frame_size
    buffer = np.empty((height, width, 3), np.uint8)
    options = {
        "exact (the default)": {},
        "fastdct": {"fastdct": True},
        "fastupsample": {"fastupsample": True},
        "both": {"fastdct": True, "fastupsample": True},
    }
    times: dict[str, list[float]] = {name: [] for name in options}
    for _ in range(rounds):
        for name, kwargs in options.items():
            t = time.process_time()
            for data in frames:
                simplejpeg.decode_jpeg(data, colorspace="RGB", buffer=buffer, **kwargs)
            times[name].append((time.process_time() - t) / len(frames))
    exact = [simplejpeg.decode_jpeg(data, colorspace="RGB").astype(np.int16) for data in frames]
    print(f"\n{len(frames)} frames of {height}x{width}, load average {os.getloadavg()[0]:.1f}")
    print("| simplejpeg decode | us per frame (best) | median | largest pixel difference |")
    print("|---|---|---|---|")
    for name, kwargs in options.items():
        diff = max(
            int(np.abs(simplejpeg.decode_jpeg(data, colorspace="RGB", **kwargs).astype(np.int16) - ref).max())
            for data, ref in zip(frames, exact)
        )
        print(f"| {name} | {1e6 * min(times[name]):.1f} | {1e6 * float(np.median(times[name])):.1f} | {diff} |")


if __name__ == "__main__":
    main()
