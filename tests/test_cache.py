"""The prepared cache: round trip against the decoder, index columns, statistics, reader errors."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
from media import write_video

from avcl import fileio
from avcl.data import cache as C
from avcl.data.audio import log_mel
from avcl.data.decode import iter_frames, read_audio
from avcl.data.prepare import prepare

SIZE = (48, 64)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """A CSV source with train/val/test splits, one video without audio; prepared in this process."""
    root = tmp_path_factory.mktemp("cache_src")
    rows = [
        ("a0.mp4", "alpha", "train", 20, True, 440),
        ("b0.mp4", "beta", "train", 23, True, 1200),
        ("a1.mp4", "alpha", "val", 18, True, 660),
        ("b1.mp4", "beta", "test", 26, True, 880),
        ("mute.mp4", "beta", "train", 17, False, 0),
    ]
    for name, _, _, frames, audio, tone_hz in rows:
        write_video(root / name, num_frames=frames, size=(64, 80), audio=audio, tone_hz=tone_hz or 440.0)
    csv = root / "list.csv"
    csv.write_text("path,label,split\n" + "".join(f"{n},{label},{split}\n" for n, label, split, *_ in rows))
    out = root / "cache"
    prepare(csv, out, size=SIZE, workers=0, progress=False)
    return out


def test_frames_read_back_match_the_decoder_within_jpeg_tolerance(cache_dir):
    cache = C.PreparedCache(cache_dir)
    for i in range(len(cache)):
        source = np.stack(list(iter_frames(cache.entries.path[i], size=SIZE)))
        frames = cache.read_frames(i, np.arange(cache.entries.num_frames[i]))
        assert frames.shape == source.shape and frames.dtype == np.uint8
        mse = np.mean((frames.astype(np.float64) - source) ** 2)
        psnr = 10 * np.log10(255**2 / mse)
        assert psnr > 30.0, (cache.entries.path[i], psnr)  # JPEG q80 with 4:2:0 chroma on saturated test colours
        picked = cache.read_frames(i, [5, 0, 5])
        assert np.array_equal(picked, frames[[5, 0, 5]])


def test_mel_read_back_matches_log_mel_within_float16_precision(cache_dir):
    cache = C.PreparedCache(cache_dir)
    for i in np.flatnonzero(cache.entries.has_audio):
        expected = log_mel(read_audio(cache.entries.path[i]))
        mel = cache.read_mel(i)
        assert mel.dtype == np.float32 and mel.shape == expected.shape == (256, cache.entries.mel_frames[i])
        np.testing.assert_allclose(mel, expected, atol=0.07, rtol=1e-3)  # float16 spacing is 0.0625 near 100 dB


def test_index_columns_splits_and_labels(cache_dir):
    cache = C.PreparedCache(cache_dir)
    e = cache.entries
    assert len(cache) == 5 and cache.classes == ["alpha", "beta"]
    assert list(e.path) == sorted(e.path)  # rows sorted by path, stable across runs
    names = [p.rsplit("/", 1)[1] for p in e.path]
    assert names == ["a0.mp4", "a1.mp4", "b0.mp4", "b1.mp4", "mute.mp4"]
    assert e.label.tolist() == [0, 0, 1, 1, 1] and list(e.label_name) == ["alpha", "alpha", "beta", "beta", "beta"]
    assert e.num_frames.tolist() == [20, 18, 23, 26, 17]
    assert e.has_audio.tolist() == [True, True, True, True, False] and e.mel_frames[4] == 0
    assert cache.indices("train").tolist() == [0, 2, 4]
    assert cache.indices("val").tolist() == [1] and cache.indices("test").tolist() == [3]
    assert len(cache.indices("nonexistent")) == 0 and cache.indices(None).tolist() == [0, 1, 2, 3, 4]
    assert cache.splits() == ["test", "train", "val"]
    np.testing.assert_allclose(e.duration, e.num_frames / 25.0)
    assert cache.frame_size == SIZE and cache.mel_fps == 100.0
    with pytest.raises(ValueError, match="no audio"):
        cache.read_mel(4)
    with pytest.raises(IndexError, match="out of range"):
        cache.read_frames(0, [20])


def test_audio_statistics_are_those_of_the_train_split(cache_dir):
    cache = C.PreparedCache(cache_dir)
    train = [i for i in cache.indices("train") if cache.entries.has_audio[i]]
    values = np.concatenate([cache.mel_view(i).astype(np.float64) for i in train], axis=1)
    assert cache.meta["audio_stats_split"] == "train"
    np.testing.assert_allclose(cache.audio_mean, values.mean(axis=1), atol=1e-3)
    np.testing.assert_allclose(cache.audio_std, np.maximum(values.std(axis=1), C.STD_FLOOR), atol=1e-3, rtol=1e-4)


def test_reader_pickles_without_its_maps_and_reads_after_unpickling(cache_dir):
    cache = C.PreparedCache(cache_dir)
    before = cache.read_frames(1, [0, 1])  # opens a map
    data = pickle.dumps(cache)
    assert b"mmap" not in data
    clone = pickle.loads(data)
    assert np.array_equal(clone.read_frames(1, [0, 1]), before)


def test_torn_last_index_line_is_ignored_then_cut_before_appending(tmp_path):
    path = tmp_path / "index.jsonl"
    path.write_text('{"path": "a"}\n{"path": "b"}\n{"path": "c", "la')
    assert [r["path"] for r in C.read_jsonl(path)] == ["a", "b"]
    fileio.cut_torn_line(path)
    with open(path, "a") as f:
        fileio.append_jsonl(f, {"path": "d"})
    assert [r["path"] for r in C.read_jsonl(path)] == ["a", "b", "d"]
    path.write_text('{"path": "a"}\nnot json\n{"path": "b"}\n')
    with pytest.raises(C.CacheError, match="line 2"):
        C.read_jsonl(path)


def test_reader_refuses_unfinished_or_damaged_caches_naming_the_folder(cache_dir, tmp_path):
    with pytest.raises(C.CacheError, match="not a prepared cache"):
        C.PreparedCache(tmp_path)
    unfinished = tmp_path / "unfinished"
    shutil.copytree(cache_dir, unfinished)
    (unfinished / C.META).unlink()
    with pytest.raises(C.CacheError, match=f"{unfinished}.*interrupted.*resume"):
        C.PreparedCache(unfinished)

    damaged = tmp_path / "damaged"
    shutil.copytree(cache_dir, damaged)
    shard = next((damaged / C.SHARDS).iterdir())
    shard.write_bytes(shard.read_bytes()[:1000])
    cache = C.PreparedCache(damaged)
    with pytest.raises(C.CacheError, match="truncated or replaced"):
        for i in range(len(cache)):
            cache.read_frames(i, [cache.entries.num_frames[i] - 1])

    meta = json.loads((cache_dir / C.META).read_text())
    assert meta["format"] == C.FORMAT and meta["counts"]["videos"] == 5 and meta["counts"]["with_audio"] == 4
