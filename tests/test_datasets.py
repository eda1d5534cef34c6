"""PreparedDataset/SourceDataset samples, determinism, EpochSampler and build_loader."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from media import write_video

from avcl.config import DataConfig
from avcl.data import transforms as T
from avcl.data.cache import PreparedCache
from avcl.data.datasets import EpochSampler, PreparedDataset, SourceDataset, build_loader
from avcl.data.prepare import prepare
from avcl.data.sources import VideoItem
from avcl.data.transforms import normalize_video

# Tiny samples: 8-frame 32x32 clips from 48x64 frames, 32x32 crops of a 64x64 spectrogram.
CFG = DataConfig(
    clip_len=8, crop_size=32, audio_size=64, audio_crop=32, test_clips=3, num_workers=0, persistent_workers=False
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> PreparedCache:
    root = tmp_path_factory.mktemp("datasets")
    rows = []
    for i in range(6):
        name = f"v{i}.mp4"
        write_video(root / name, num_frames=20 + 3 * i, size=(64, 80), audio=i != 5, tone_hz=300.0 + 100 * i)
        rows.append(f"{name},{'xy'[i % 2]},{'train' if i < 5 else 'test'}\n")
    (root / "list.csv").write_text("path,label,split\n" + "".join(rows))
    prepare(root / "list.csv", root / "cache", size=(48, 64), workers=0, progress=False)
    return PreparedCache(root / "cache")


@pytest.mark.parametrize("window", ["whole", "1.2"])
def test_sample_shapes_in_train_eval_and_test_modes(cache, window):
    cfg = replace(CFG, audio_window=window)
    for mode in ("train", "eval"):
        ds = PreparedDataset(cache, "train", cfg, mode=mode)
        sample = ds[0]
        assert sample["video"].shape == (3, 8, 32, 32) and sample["video"].dtype == torch.uint8
        assert sample["audio"].shape == (1, 32, 32) and sample["audio"].dtype == torch.float32
        assert sample["label"].dtype == torch.int64 and sample["index"].dtype == torch.int64
        assert torch.isfinite(sample["audio"]).all()
    test = PreparedDataset(cache, "train", cfg, mode="test")[1]
    assert test["video"].shape == (3, 3, 8, 32, 32) and test["audio"].shape == (3, 1, 32, 32)
    if window == "whole":  # crops spread along time: all different
        assert not torch.equal(test["audio"][0], test["audio"][-1])
    assert len(PreparedDataset(cache, "train", cfg)) == 5 and PreparedDataset(cache, "train", cfg).num_classes == 2


@pytest.mark.parametrize("clip_len", [8, 24])
def test_test_mode_clips_are_the_centre_crops_of_each_clip_decoded_alone(cache, clip_len):
    """Test clips share their decoded frames; each is still exactly its own clip, also when the video is
    shorter than the clip (the last frame repeated) and the clips overlap (24 frames of 20-32)."""
    cfg = replace(CFG, clip_len=clip_len)
    ds = PreparedDataset(cache, "train", cfg, mode="test")
    for pos in range(len(ds)):
        row = int(ds.rows[pos])
        n = int(cache.entries.num_frames[row])
        video = ds[pos]["video"]
        (height, width), crop = cache.frame_size, cfg.crop_size
        y, x = (height - crop) // 2, (width - crop) // 2
        for k, start in enumerate(T.uniform_clip_starts(n, clip_len, cfg.test_clips)):
            frames = cache.read_frames(row, T.clip_frame_ids(int(start), clip_len, n))
            expected = torch.from_numpy(frames[:, y : y + crop, x : x + crop].copy()).permute(3, 0, 1, 2)
            assert torch.equal(video[k], expected), (pos, k)


def test_labels_and_index_are_those_of_the_cache_rows(cache):
    ds = PreparedDataset(cache, "train", CFG, mode="eval")
    for pos in range(len(ds)):
        sample = ds[pos]
        row = int(ds.rows[pos])
        assert sample["index"].item() == row and sample["label"].item() == cache.entries.label[row]


def test_same_key_same_sample_and_seeds_change_the_augmentation(cache):
    ds = PreparedDataset(cache, "train", CFG, mode="train", seed=7)
    a, b = ds[(2, 12345)], ds[(2, 12345)]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(ds[3][k], PreparedDataset(cache, "train", CFG, seed=7)[3][k]) for k in a)
    others = [ds[(2, s)] for s in range(8)]
    assert any(not torch.equal(o["video"], a["video"]) for o in others)
    assert any(not torch.equal(o["audio"], a["audio"]) for o in others)
    evaluation = PreparedDataset(cache, "train", CFG, mode="eval")
    assert torch.equal(evaluation[(2, 1)]["video"], evaluation[(2, 2)]["video"])  # eval: no randomness


def test_time_only_audio_crops_keep_the_mel_axis_centred_and_the_random_stream(cache):
    """``audio_crop_axes="time"``: every training crop of the spectrogram is one of the crops centred on the
    mel axis (all of them: test mode with one clip per time position); the video crops, drawn from the
    same random stream, are those of ``"both"``, whose crops do move along the mel axis."""
    positions = CFG.audio_size - CFG.audio_crop + 1
    centred = PreparedDataset(cache, "train", replace(CFG, test_clips=positions), mode="test")
    both = PreparedDataset(cache, "train", CFG, mode="train", seed=5)
    time_only = PreparedDataset(cache, "train", replace(CFG, audio_crop_axes="time"), mode="train", seed=5)
    moved = 0
    for pos in range(len(both)):
        candidates = centred[pos]["audio"]
        for key in range(6):
            a, b = time_only[(pos, key)], both[(pos, key)]
            assert torch.equal(a["video"], b["video"])
            assert any(torch.equal(a["audio"], c) for c in candidates), (pos, key)
            moved += not any(torch.equal(b["audio"], c) for c in candidates)
    assert moved > 0


def test_batches_are_identical_with_0_and_2_loader_workers(cache):
    batches = {}
    for workers in (0, 2):
        cfg = replace(CFG, num_workers=workers)
        loader = build_loader(PreparedDataset(cache, "train", cfg), cfg, 2, shuffle=True, seed=3)
        loader.sampler.set_epoch(1)
        batches[workers] = list(loader)
    assert len(batches[0]) == len(batches[2]) == 3
    for b0, b2 in zip(batches[0], batches[2]):
        assert all(torch.equal(b0[k], b2[k]) for k in b0)


def test_epoch_sampler_ranks_cover_every_index_once_with_shared_seeds():
    for n, world in [(12, 3), (10, 4), (5, 1)]:
        per_rank = []
        for rank in range(world):
            sampler = EpochSampler(n, shuffle=True, seed=5, rank=rank, world_size=world)
            sampler.set_epoch(2)
            per_rank.append(list(sampler))
            assert len(per_rank[-1]) == len(sampler) == -(-n // world)
        keys = [key for rank_keys in per_rank for key in rank_keys]
        assert {i for i, _ in keys} == set(range(n))
        if n % world == 0:
            assert sorted(i for i, _ in keys) == list(range(n))
        single = EpochSampler(n, shuffle=True, seed=5)
        single.set_epoch(2)
        seeds = dict(single)
        assert all(seeds[i] == s for i, s in keys)  # a sample's seed does not depend on the world size
    sampler = EpochSampler(10, shuffle=True, seed=5)
    epochs = []
    for epoch in (0, 1, 0):
        sampler.set_epoch(epoch)
        epochs.append(list(sampler))
    assert epochs[0] == epochs[2] and [i for i, _ in epochs[0]] != [i for i, _ in epochs[1]]
    assert [i for i, _ in EpochSampler(4, shuffle=False, seed=0)] == [0, 1, 2, 3]
    assert len(list(EpochSampler(10, shuffle=True, seed=0, rank=3, world_size=4, drop_last=True))) == 2


def test_videos_without_audio_only_when_audio_is_not_required(cache):
    with_audio = PreparedDataset(cache, "test", CFG)
    assert len(with_audio) == 0
    video_only = PreparedDataset(cache, "test", CFG, require_audio=False)
    assert len(video_only) == 1
    sample = video_only[0]
    assert sample["video"].shape == (3, 8, 32, 32) and torch.count_nonzero(sample["audio"]) == 0


def test_float_video_when_normalising_in_the_dataset(cache):
    uint8 = PreparedDataset(cache, "train", CFG)[(1, 9)]
    floats = PreparedDataset(cache, "train", replace(CFG, normalize_on_device=False))[(1, 9)]
    assert floats["video"].dtype == torch.float32
    torch.testing.assert_close(floats["video"], normalize_video(uint8["video"], CFG))


def test_source_dataset_decodes_the_same_samples_as_the_cache(cache):
    prepared = PreparedDataset(cache, "train", CFG, mode="eval")
    e = cache.entries
    items = [VideoItem(e.path[r], e.label_name[r], e.split[r]) for r in prepared.rows]
    source = SourceDataset(
        items, cache.classes, CFG, mode="eval", size=(48, 64), audio_stats=(cache.audio_mean, cache.audio_std)
    )
    for pos in (0, 3):
        a, b = prepared[pos], source[pos]
        assert a["video"].shape == b["video"].shape and a["label"] == b["label"]
        mse = (a["video"].float() - b["video"].float()).square().mean()
        assert 10 * torch.log10(255**2 / mse) > 30  # JPEG in the cache
        torch.testing.assert_close(a["audio"], b["audio"], atol=0.02, rtol=0)  # float16 in the cache


def test_loader_bench_measures_the_cache_and_the_source(cache, tmp_path):
    from avcl.bench.loader import format_loader_table, run_loader_bench

    results = run_loader_bench(
        cache, workers=(0,), batch_size=2, seconds=0.3, source_seconds=0.3, out=tmp_path, progress=False
    )
    rates = {r["from"]: r["samples_per_s"] for r in results["rates"]}
    assert rates["cache"] > 0 and rates["source"] > 0 and results["speedup"]["0"] > 0
    assert (tmp_path / "bench_loader.json").exists() and "| 0 |" in format_loader_table(results)
