"""One setting of scripts/loader_ab.sh: CACHE WORKERS BATCH SECONDS -> one JSON line."""

import gc
import json
import os
import resource
import sys
import time

import torch

torch.set_num_threads(1)
from dataclasses import replace

from avcl.config import DataConfig
from avcl.data.cache import PreparedCache
from avcl.data.datasets import PreparedDataset, build_loader

cache, workers, batch, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])


def cpu():
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


cfg = replace(DataConfig(), num_workers=workers)
ds = PreparedDataset(PreparedCache(cache), "train", cfg)
c0 = cpu()
load0 = os.getloadavg()[0]
loader = build_loader(ds, cfg, batch, shuffle=True, seed=0)
total = seen = batches = 0
start = None
epoch = 0
while start is None or time.perf_counter() - start < seconds:
    loader.sampler.set_epoch(epoch)
    for b in loader:
        seen += 1
        total += len(b["label"])
        if seen == 2:
            start, m0 = time.perf_counter(), time.process_time()
        elif start is not None:
            batches += 1
            if time.perf_counter() - start >= seconds:
                break
    epoch += 1
main_ms = 1e3 * (time.process_time() - m0) / batches
if hasattr(loader, "close"):
    loader.close()
del loader, b
gc.collect()
print(
    json.dumps(
        {"workers": workers, "batch": batch, "per_cpu_s": total / (cpu() - c0), "main_ms": main_ms, "load": load0}
    )
)
