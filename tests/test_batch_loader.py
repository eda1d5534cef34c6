"""BatchLoader: whole batches made by workers into reusable shared-memory slots.

Identical batches with 0, 1 and 2 workers (values, order, seeds) in training and test mode; a killed
worker stops the pass with a clear error; slots are released at the end of a pass and with persistent
workers; no shared memory is left behind over many epochs.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import time
from dataclasses import replace

import pytest
import torch
from media import write_video

from avcl.config import DataConfig
from avcl.data.cache import PreparedCache
from avcl.data.datasets import BatchLoader, LoaderWorkerError, PreparedDataset, build_loader
from avcl.data.prepare import prepare

CFG = DataConfig(
    clip_len=8,
    crop_size=32,
    audio_size=64,
    audio_crop=32,
    test_clips=3,
    num_workers=0,
    persistent_workers=False,
    prefetch_factor=2,
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> PreparedCache:
    root = tmp_path_factory.mktemp("batch_loader")
    rows = []
    for i in range(7):
        name = f"v{i}.mp4"
        write_video(root / name, num_frames=20 + 3 * i, size=(64, 80), audio=True, tone_hz=300.0 + 100 * i)
        rows.append(f"{name},{'xy'[i % 2]},train\n")
    (root / "list.csv").write_text("path,label,split\n" + "".join(rows))
    prepare(root / "list.csv", root / "cache", size=(48, 64), workers=0, progress=False)
    return PreparedCache(root / "cache")


def shared_maps() -> int:
    """torch's shared-memory segments mapped by this process (``/dev/shm/torch_*``, unlinked or not)."""
    with open("/proc/self/maps") as f:
        return sum(1 for line in f if "/dev/shm/torch_" in line)


def copies(loader, epochs=(0,)) -> list[dict]:
    out = []
    for epoch in epochs:
        loader.sampler.set_epoch(epoch)
        out.extend({k: v.clone() for k, v in batch.items()} for batch in loader)
    return out


@pytest.mark.parametrize("mode", ["train", "test"])
@pytest.mark.parametrize("persistent", [False, True])
def test_batches_are_identical_with_0_1_and_2_workers(cache, mode, persistent):
    dataset = PreparedDataset(cache, "train", CFG, mode=mode, seed=4)
    runs = {}
    for workers in (0, 1, 2):
        cfg = replace(CFG, num_workers=workers, persistent_workers=persistent)
        loader = build_loader(dataset, cfg, 3, shuffle=True, seed=11)
        assert isinstance(loader, BatchLoader) and len(loader) == 3
        runs[workers] = copies(loader, epochs=(0, 1, 0))
        loader.close()
    # the reference: the sampler's keys, one sample at a time, stacked
    sampler = build_loader(dataset, CFG, 3, shuffle=True, seed=11).sampler
    expected = []
    for epoch in (0, 1, 0):
        sampler.set_epoch(epoch)
        for _, keys in sampler:
            samples = [dataset[key] for key in keys]
            expected.append({k: torch.stack([s[k] for s in samples]) for k in samples[0]})
    assert [len(b["label"]) for b in expected] == [3, 3, 1] * 3
    for workers, batches in runs.items():
        assert len(batches) == len(expected) == 9
        for got, want in zip(batches, expected):
            assert got.keys() == want.keys()
            for k in want:
                assert got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]), (workers, k)
    assert not torch.equal(runs[0][0]["index"], runs[0][3]["index"]) or mode == "test"  # epochs differ
    assert all(torch.equal(a[k], b[k]) for a, b in zip(runs[0][:3], runs[0][6:]) for k in a)  # same epoch, same batches


@pytest.mark.parametrize("mode", ["train", "test"])
def test_clips_are_channels_last_in_memory_and_channel_first_for_the_model(cache, mode):
    from avcl.data.transforms import to_model_input

    dataset = PreparedDataset(cache, "train", CFG, mode=mode, seed=2)
    for workers in (0, 1):
        cfg = replace(CFG, num_workers=workers)
        loader = build_loader(dataset, cfg, 3, shuffle=False, seed=0)
        batch = next(iter(loader))
        video = batch["video"]
        assert video.shape[-4:] == (3, CFG.clip_len, CFG.crop_size, CFG.crop_size)
        assert video.movedim(-4, -1).is_contiguous()  # (..., T, H, W, 3) in memory
        stacked = torch.stack([dataset[key]["video"] for key in loader.sampler.sampler][:3])
        assert torch.equal(video, stacked)
        model_input = to_model_input(batch, cfg, "cpu")["video"]
        assert model_input.is_contiguous()
        if mode == "train":
            last = to_model_input(batch, cfg, "cpu", channels_last=True)["video"]
            assert last.is_contiguous(memory_format=torch.channels_last_3d) and torch.equal(last, model_input)
        del batch, video
        loader.close()


def test_kept_batches_are_never_overwritten(cache):
    """A caller keeping every batch (no copy) still gets the right values: busy slots are not reused."""
    cfg = replace(CFG, num_workers=2, persistent_workers=True)
    dataset = PreparedDataset(cache, "train", cfg)
    kept = []
    loader = build_loader(dataset, cfg, 2, shuffle=True, seed=1, drop_last=True)
    for epoch in range(4):
        loader.sampler.set_epoch(epoch)
        kept.extend(loader)
    plain = build_loader(dataset, replace(cfg, num_workers=0), 2, shuffle=True, seed=1, drop_last=True)
    want = copies(plain, range(4))
    assert len(kept) == len(want) == 12
    assert all(torch.equal(a[k], b[k]) for a, b in zip(kept, want) for k in a)
    loader.close()


def test_a_pass_left_early_does_not_lose_slots(cache):
    cfg = replace(CFG, num_workers=2, persistent_workers=True)
    loader = build_loader(PreparedDataset(cache, "train", cfg), cfg, 1, shuffle=True, seed=2)
    plain = build_loader(PreparedDataset(cache, "train", CFG), CFG, 1, shuffle=True, seed=2)
    for epoch in range(6):
        loader.sampler.set_epoch(epoch)
        for step, batch in enumerate(loader):  # leave after two batches, with prefetched batches dropped
            if step == 1:
                break
        del batch
    loader.sampler.set_epoch(9)
    assert all(torch.equal(a[k], b[k]) for a, b in zip(copies(loader, (9,)), copies(plain, (9,))) for k in a)
    rings = list(loader._rings.values())
    assert rings and all(len(r.slots) <= 4 for r in rings)  # prefetch_factor + 2 slots per worker, no more
    loader.close()


def test_a_killed_worker_stops_the_pass_with_a_clear_error(cache):
    cfg = replace(CFG, num_workers=2, persistent_workers=True)
    loader = build_loader(PreparedDataset(cache, "train", cfg), cfg, 1, shuffle=False, seed=0)
    iterator = iter(loader)
    next(iterator)
    pids = loader.worker_pids()
    assert len(pids) == 2
    os.kill(pids[0], signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(LoaderWorkerError, match="worker"):
        for _ in iterator:
            pass
    assert time.monotonic() - start < 30
    deadline = time.monotonic() + 10
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not multiprocessing.active_children() and loader.worker_pids() == []
    assert loader._rings == {}


@pytest.mark.parametrize("persistent", [False, True])
def test_slots_are_released_and_shared_memory_does_not_leak(cache, persistent):
    cfg = replace(CFG, num_workers=2, persistent_workers=persistent)
    gc.collect()
    before = shared_maps()
    loader = build_loader(PreparedDataset(cache, "train", cfg), cfg, 2, shuffle=True, seed=0)
    counts = []
    for epoch in range(12):
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            pass
        del batch
        gc.collect()
        counts.append(shared_maps())
        if persistent:  # every batch was dropped: every slot is free again
            assert all(int(r.held.sum()) == 0 for r in loader._rings.values())
        else:  # the workers and their slots are gone at the end of the pass
            assert loader._rings == {} and counts[-1] <= before + 2
    assert max(counts[4:]) <= max(counts[:4])  # bounded: nothing accumulates over epochs
    loader.close()
    gc.collect()
    assert shared_maps() <= before + 2  # torch may keep a small cached segment or two


@pytest.mark.parametrize("mode", ["train", "test"])
def test_decoding_on_the_device_falls_back_to_the_cpu_with_identical_batches(cache, mode):
    """data.decode_device=device: workers ship JPEG bytes, the main process decodes, crops and flips on the
    training device (here the CPU fallback): the same batches as the workers' CPU decoding."""
    plain = PreparedDataset(cache, "train", CFG, mode=mode, seed=4)
    want = copies(build_loader(plain, CFG, 3, shuffle=True, seed=5), (0, 1))
    for workers in (0, 2):
        cfg = replace(CFG, decode_device="device", num_workers=workers)
        loader = build_loader(
            PreparedDataset(cache, "train", cfg, mode=mode, seed=4), cfg, 3, shuffle=True, seed=5, device="cpu"
        )
        got = copies(loader, (0, 1))
        loader.close()
        assert len(got) == len(want) == 6
        for g, w in zip(got, want):
            assert all(g[k].dtype == w[k].dtype and torch.equal(g[k], w[k]) for k in w), workers
