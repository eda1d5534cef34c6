"""``avcl prepare``: the skip report, and resuming after a real SIGKILL."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from media import write_corrupt, write_video

from avcl.data import cache as C
from avcl.data.prepare import prepare
from avcl.errors import UserError

SIZE = (48, 64)
ROOT = Path(__file__).resolve().parents[1]


def test_skip_report_names_each_unusable_file_with_its_reason(tmp_path):
    src = tmp_path / "src"
    for label in ("cat", "dog"):
        (src / label).mkdir(parents=True)
        write_video(src / label / "good.mp4", num_frames=20)
    write_video(src / "cat" / "mute.mp4", num_frames=20, audio=False)
    write_video(src / "dog" / "short.mp4", num_frames=10)
    write_corrupt(src / "cat" / "garbage.mp4", "garbage")
    write_corrupt(src / "cat" / "truncated.mp4", "truncated")
    write_corrupt(src / "dog" / "empty.mp4", "empty")
    write_corrupt(src / "dog" / "notes.mp4", "text")
    out = tmp_path / "cache"

    summary = prepare(src, out, size=SIZE, workers=1, progress=False)  # through the worker pool

    skipped = {Path(r["path"]).name: r for r in C.read_jsonl(out / C.SKIPPED)}
    assert skipped["garbage.mp4"]["reason"] == "unreadable"
    assert skipped["truncated.mp4"]["reason"] in ("unreadable", "decode_failed", "empty")
    assert skipped["empty.mp4"]["reason"] == "empty"
    assert skipped["notes.mp4"]["reason"] == "unreadable"
    assert skipped["short.mp4"]["reason"] == "too_short" and "10 frames" in skipped["short.mp4"]["message"]
    assert skipped["mute.mp4"]["reason"] == "no_audio_stream"
    assert "usable by video-only methods only" in skipped["mute.mp4"]["message"]

    cache = C.PreparedCache(out)
    prepared = {Path(p).parent.name + "/" + Path(p).name: bool(a) for p, a in zip(cache.entries.path, cache.entries.has_audio)}
    assert prepared == {"cat/good.mp4": True, "dog/good.mp4": True, "cat/mute.mp4": False}
    assert summary["prepared"] == 3 and summary["with_audio"] == 2 and summary["video_only"] == 1
    assert summary["skipped"] == 5 and summary["skipped_by_reason"]["unreadable"] >= 2
    report = json.loads((out / C.REPORT).read_text())
    assert {Path(r["path"]).name for r in report["skipped_files"]} == set(skipped)
    assert 0 < summary["bytes_per_10s"] < 2e6


def _source(folder: Path, n: int) -> Path:
    for i in range(n):
        label = "ab"[i % 2]
        (folder / label).mkdir(parents=True, exist_ok=True)
        write_video(folder / label / f"v{i:02d}.mp4", num_frames=40 + i, tone_hz=300.0 + 50 * i)
    return folder


def _same_caches(a: C.PreparedCache, b: C.PreparedCache) -> None:
    for column in ("path", "label", "split", "num_frames", "fps", "duration", "has_audio", "mel_frames"):
        assert np.array_equal(getattr(a.entries, column), getattr(b.entries, column)), column
    for i in range(len(a)):
        ids = np.arange(a.entries.num_frames[i])
        assert np.array_equal(a.read_frames(i, ids), b.read_frames(i, ids))
        assert np.array_equal(a.read_mel(i), b.read_mel(i))
    assert a.meta["audio_mean"] == b.meta["audio_mean"] and a.meta["classes"] == b.meta["classes"]


def test_resume_after_sigkill_gives_the_cache_of_an_uninterrupted_run(tmp_path):
    src = _source(tmp_path / "src", 10)
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "avcl.cli", "prepare", str(src), str(out), "--size", "48x64", "--workers", "1", "--quiet"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    index = out / C.INDEX
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if index.exists() and index.read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the parent and its worker, as `kill -9` of the job would
    proc.wait()
    assert not (out / C.META).exists(), "the run finished before it could be killed"
    done = len(C.read_jsonl(index))
    assert 2 <= done < 10
    with pytest.raises(C.CacheError, match="resume"):
        C.PreparedCache(out)
    with open(index, "a") as f:  # and a torn last line, as if killed in the middle of an append
        f.write('{"path": "' + str(src / "a" / "v00.mp4") + '", "label": "a", "num_fr')

    summary = prepare(src, out, size=SIZE, workers=0, progress=False)
    assert summary["prepared"] == 10 and summary["prepared_this_run"] == 10 - done
    assert len(C.read_jsonl(index)) == 10
    assert len(list((out / C.SHARDS).iterdir())) >= 2  # the resumed run wrote new shard files

    fresh = tmp_path / "fresh"
    prepare(src, fresh, size=SIZE, workers=0, progress=False)
    _same_caches(C.PreparedCache(out), C.PreparedCache(fresh))


def test_resuming_with_other_frame_options_is_refused(tmp_path):
    src = _source(tmp_path / "src", 2)
    out = tmp_path / "cache"
    prepare(src, out, size=SIZE, workers=0, progress=False)
    with pytest.raises(UserError, match="frame_size"):
        prepare(src, out, size=(32, 40), workers=0, progress=False)
    again = prepare(src, out, size=SIZE, workers=0, progress=False)  # a finished cache: nothing to do
    assert again["prepared"] == 2 and again["prepared_this_run"] == 0


def test_a_source_without_videos_is_an_error_naming_it(tmp_path):
    (tmp_path / "empty" / "class").mkdir(parents=True)
    with pytest.raises(UserError, match="no video files found"):
        prepare(tmp_path / "empty", tmp_path / "out", workers=0, progress=False)
