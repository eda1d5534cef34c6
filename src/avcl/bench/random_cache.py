"""A prepared cache of random videos written without PyAV or librosa: smooth random JPEG frames and
random log-mel spectrograms in the format of ``docs/cache-format.md``.

For measuring the loader and the data wait of training where no videos can be decoded (a GPU machine's
own image without PyAV): ``python -m avcl.bench.random_cache OUT --videos 512``. The frames are smooth
(a coarse random image enlarged, plus a little noise) so that their JPEG size and decoding time are
those of natural video rather than of white noise.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import torch

from avcl import fileio
from avcl.data import cache as C


def _frames(rng: np.random.Generator, count: int, size: tuple[int, int]) -> np.ndarray:
    """(count, H, W, 3) uint8: a coarse random image enlarged and drifting over the frames, plus noise."""
    height, width = size
    coarse = torch.from_numpy(rng.uniform(0, 255, size=(1, 3, 6, 8)).astype(np.float32))
    big = torch.nn.functional.interpolate(
        coarse, size=(height + count, width + count), mode="bilinear", align_corners=False
    )[0]
    out = np.empty((count, height, width, 3), dtype=np.uint8)
    for k in range(count):  # a slow pan: consecutive frames differ a little, as in video
        frame = big[:, k : k + height, k : k + width].permute(1, 2, 0).numpy()
        noise = rng.normal(0, 6, size=frame.shape)
        out[k] = np.clip(frame + noise, 0, 255).astype(np.uint8)
    return out


def _write_part(args: tuple) -> list[dict]:
    """Write videos ``first..first+count`` into a shard of this process; returns their index records."""
    root, first, count, frames, size, names, fps, quality, seed, mel_frames, n_mels = args
    torch.set_num_threads(1)
    writer = C.ShardWriter(Path(root) / C.SHARDS, f"random-{first:06d}")
    records = []
    for v in range(first, first + count):
        rng = np.random.default_rng([seed, v])
        label = names[v % len(names)]
        jpegs = [C.encode_frame(f, quality) for f in _frames(rng, frames, size)]
        spectrogram = rng.normal(-40, 12, size=(n_mels, mel_frames)).astype(np.float16)
        location = writer.write_video(jpegs, spectrogram)
        records.append(
            {
                "path": f"random/{label}/video{v:05d}.mp4",
                "label": label,
                "split": "train",
                "num_frames": frames,
                "fps": fps,
                "duration": frames / fps,
                "has_audio": True,
                **location,
            }
        )
    writer.close()
    return records


def _start_cache(root: Path, size: tuple[int, int], fps: float, quality: int, mel) -> dict:
    """Create the cache's shard folder and write its settings; returns them."""
    (root / C.SHARDS).mkdir(parents=True, exist_ok=True)
    settings = {
        "format": C.FORMAT,
        "version": C.VERSION,
        "frame_size": [int(size[0]), int(size[1])],
        "fps": fps,
        "jpeg_quality": int(quality),
        "mel": dataclasses.asdict(mel),
    }
    fileio.write_json(root / C.SETTINGS, settings, indent=1)
    return settings


def write_random_cache(
    root: str | os.PathLike,
    *,
    videos: int = 512,
    frames: int = 48,
    size: tuple[int, int] = (128, 171),
    classes: int = 8,
    fps: float = 25.0,
    quality: int = C.DEFAULT_QUALITY,
    seed: int = 0,
    workers: int | None = None,
) -> Path:
    """Write a finished cache of ``videos`` random videos (``frames`` frames of ``size``, all with audio,
    all in the ``train`` split) under ``root`` (a new or empty folder; an existing finished cache is kept)
    with ``workers`` processes (default: one per core, at most 16); returns its path. The same
    ``seed`` gives the same videos whatever the number of workers."""
    import multiprocessing

    from avcl.data.audio import MelSettings

    root = Path(root)
    if (root / C.META).exists():
        return root
    mel = MelSettings()
    settings = _start_cache(root, size, fps, quality, mel)
    names = [f"class{c:02d}" for c in range(classes)]
    mel_frames = int(round(frames / fps * mel.sample_rate / mel.hop_length)) + 1
    workers = min(os.cpu_count() or 1, 16) if workers is None else max(workers, 1)
    per = -(-videos // workers)
    shared = (frames, tuple(size), names, fps, quality, seed, mel_frames, mel.n_mels)
    parts = [(str(root), first, min(per, videos - first), *shared) for first in range(0, videos, per)]
    if workers > 1 and len(parts) > 1:
        with multiprocessing.get_context("fork").Pool(len(parts)) as pool:
            results = pool.map(_write_part, parts)
    else:
        results = [_write_part(part) for part in parts]
    with open(root / C.INDEX, "a") as index:
        for records in results:
            for record in records:
                fileio.append_jsonl(index, record)
    C.write_meta(root, settings, names, skipped=0)
    return root


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("--videos", type=int, default=512)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--size", default="128x171", help="HxW (default 128x171)")
    p.add_argument("--classes", type=int, default=8)
    p.add_argument("--workers", type=int, default=None, help="processes (default: one per core, at most 16)")
    args = p.parse_args(argv)
    height, width = (int(x) for x in args.size.lower().split("x"))
    start = time.perf_counter()
    root = write_random_cache(
        args.out,
        videos=args.videos,
        frames=args.frames,
        size=(height, width),
        classes=args.classes,
        workers=args.workers,
    )
    print(
        f"random cache: {args.videos} videos x {args.frames} frames of {height}x{width} in {root} "
        f"({time.perf_counter() - start:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
