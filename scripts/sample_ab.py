"""CPU time per training sample of two source trees, in one process, passes alternating on the same keys.

    python scripts/sample_ab.py OLD_SRC CACHE [--passes 31] [--batch 16] [--epochs 2]

``OLD_SRC`` is another tree's ``src`` folder (e.g. a ``git archive`` of an older commit); the other is
the tree this script belongs to. Each pass runs ``PreparedDataset.get_batch`` over the same keys (the
default ``DataConfig``, training samples, ``--epochs`` epochs of keys), the two trees taking turns, so
that both see the same load; each tree writes into the batch memory it makes itself (channels-last
where it has ``channels_last_array``). Prints ms of CPU per sample (best and median pass) and the ratio
of the medians. Both trees must import without each other: the older tree's modules are loaded first
and kept apart.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch


def load(src: str):
    """``(datasets, config, transforms)`` modules of the tree at ``src``, removed from ``sys.modules`` after."""
    sys.path.insert(0, src)
    try:
        import avcl.config as config
        import avcl.data.datasets as datasets
        import avcl.data.transforms as transforms
    finally:
        sys.path.remove(src)
        for name in [n for n in sys.modules if n == "avcl" or n.startswith("avcl.")]:
            del sys.modules[name]
    return datasets, config, transforms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old_src")
    parser.add_argument("cache")
    parser.add_argument("--passes", type=int, default=31)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in [n for n in sys.modules if n == "avcl" or n.startswith("avcl.")]:
        del sys.modules[name]
    trees = {"old": load(str(Path(args.old_src).resolve())), "new": load(str(Path(__file__).parents[1] / "src"))}
    b = args.batch
    setups = {}
    for name, (datasets, config, transforms) in trees.items():
        dataset = datasets.PreparedDataset(args.cache, "train", config.DataConfig(num_workers=0))
        video_shape, audio_shape = dataset.sample_shapes()
        make = getattr(transforms, "channels_last_array", None)
        out = {
            "video": make((b, *video_shape)) if make else np.empty((b, *video_shape), np.uint8),
            "audio": np.empty((b, *audio_shape), np.float32),
            "label": np.empty(b, np.int64),
            "index": np.empty(b, np.int64),
        }
        setups[name] = dataset, out
    sampler = trees["new"][0].EpochSampler(len(setups["new"][0]), True, 0)
    keys = []
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        keys += list(sampler)
    n = len(keys) // b * b
    times: dict[str, list[float]] = {name: [] for name in setups}
    load0 = os.getloadavg()[0]
    for p in range(args.passes):
        for name in list(setups) if p % 2 else reversed(list(setups)):
            dataset, out = setups[name]
            t = time.process_time()
            for i in range(0, n, b):
                dataset.get_batch(keys[i : i + b], out)
            times[name].append((time.process_time() - t) / n)
    print(f"{args.passes} passes of {n} samples each, load average {load0:.1f} before, {os.getloadavg()[0]:.1f} after")
    for name, values in times.items():
        best, median = 1e3 * min(values), 1e3 * float(np.median(values))
        print(
            f"{name}: {best:.3f} ms per sample (best pass), {median:.3f} (median); "
            f"{1e3 / best:.0f} and {1e3 / median:.0f} samples per CPU-second"
        )
    print(f"new / old, medians: {np.median(times['new']) / np.median(times['old']):.3f}")


if __name__ == "__main__":
    main()
