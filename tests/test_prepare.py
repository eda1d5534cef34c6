"""``avcl prepare``: the skip report (nothing ignored silently), the OUT check, and resuming after a real SIGKILL."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from media import write_audio, write_corrupt, write_video

from avcl.data import cache as C
from avcl.data.prepare import format_summary, prepare
from avcl.errors import UserError

SIZE = (48, 64)
ROOT = Path(__file__).resolve().parents[1]


def _assert_shards_hold_only_indexed_bytes(out: Path) -> None:
    """Every shard is its indexed blobs back to back: no bytes of failed, short or killed videos."""
    blobs: dict[str, list[tuple[int, int]]] = {}
    for r in C.read_jsonl(out / C.INDEX):
        blobs.setdefault(r["shard"], []).append((r["offset"], r["size"]))
    assert sorted(p.name for p in (out / C.SHARDS).iterdir()) == sorted(blobs)
    for name, spans in blobs.items():
        spans.sort()
        assert [o for o, _ in spans] == [0] + [o + n for o, n in spans[:-1]], name
        assert (out / C.SHARDS / name).stat().st_size == sum(n for _, n in spans), name


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
    prepared = {
        Path(p).parent.name + "/" + Path(p).name: bool(a) for p, a in zip(cache.entries.path, cache.entries.has_audio)
    }
    assert prepared == {"cat/good.mp4": True, "dog/good.mp4": True, "cat/mute.mp4": False}
    assert summary["prepared"] == 3 and summary["with_audio"] == 2 and summary["video_only"] == 1
    assert summary["skipped"] == 5 and summary["skipped_by_reason"]["unreadable"] >= 2
    report = json.loads((out / C.REPORT).read_text())
    assert {Path(r["path"]).name for r in report["skipped_files"]} == set(skipped)
    assert 0 < summary["bytes_per_10s"] < 2e6
    _assert_shards_hold_only_indexed_bytes(out)  # the short and broken videos' bytes were cut off again


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
        [
            sys.executable,
            "-m",
            "avcl.cli",
            "prepare",
            str(src),
            str(out),
            "--size",
            "48x64",
            "--workers",
            "1",
            "--quiet",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
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
    _assert_shards_hold_only_indexed_bytes(out)  # what the killed worker had half-written is gone

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
    write_audio(tmp_path / "empty" / "class" / "song.m4a")
    with pytest.raises(
        UserError,
        match=r"no video files found; 1 file ignored \(\.m4a 1; e\.g\. song\.m4a\); "
        r"the video extensions are .*\.mp4 .*\.ts",
    ):
        prepare(tmp_path / "empty", tmp_path / "out", workers=0, progress=False)


def test_no_file_is_ignored_silently(tmp_path):
    src = tmp_path / "src"
    (src / "cat").mkdir(parents=True)
    (src / "dog").mkdir()
    write_video(src / "cat" / "camera.mts", num_frames=20)  # MPEG transport stream (AVCHD)
    write_video(src / "cat" / "phone.3gp", num_frames=20)
    write_video(src / "dog" / "windows.wmv", num_frames=20, codec="wmv2")
    write_video(src / "dog" / "web.ogv", num_frames=20, codec="libvpx", audio_codec="libopus")
    write_audio(src / "cat" / "song.m4a")  # audio only: not a video
    (src / "dog" / "notes.txt").write_text("filmed in 2019\n")
    (src / "cat" / ".DS_Store").write_bytes(b"\0" * 8)
    (src / "dog" / "Thumbs.db").write_bytes(b"\0" * 8)

    summary = prepare(src, tmp_path / "cache", size=SIZE, workers=0, progress=False)

    assert summary["prepared"] == 4 and summary["with_audio"] == 4
    assert summary["ignored"] == 2 and summary["ignored_by_reason"] == {"not a video extension": 2}
    assert summary["hidden_ignored"] == 2
    assert [(Path(r["path"]).name, r["reason"]) for r in summary["ignored_files"]] == [
        ("song.m4a", "not_a_video_extension"),
        ("notes.txt", "not_a_video_extension"),
    ]
    skipped = {Path(r["path"]).name: r["reason"] for r in C.read_jsonl(tmp_path / "cache" / C.SKIPPED)}
    assert skipped == {"song.m4a": "not_a_video_extension", "notes.txt": "not_a_video_extension"}
    text = format_summary(summary)
    assert "2 files ignored: not a video extension (.m4a 1, .txt 1; e.g. song.m4a, notes.txt)" in text
    assert str(tmp_path / "cache" / C.SKIPPED) in text

    again = prepare(src, tmp_path / "cache", size=SIZE, workers=0, progress=False)  # listed once, not twice
    assert again["prepared_this_run"] == 0 and len(C.read_jsonl(tmp_path / "cache" / C.SKIPPED)) == 2


def test_missing_csv_rows_are_reported_in_skipped_jsonl_and_looked_for_again(tmp_path):
    write_video(tmp_path / "a.mp4", num_frames=20)
    (tmp_path / "list.csv").write_text("path,label\na.mp4,x\nb.mp4,y\n")
    out = tmp_path / "out" / "cache"

    summary = prepare(tmp_path / "list.csv", out, size=SIZE, workers=0, progress=False)
    assert summary["prepared"] == 1 and summary["missing"] == 1 and summary["skipped"] == 0
    assert C.read_jsonl(out / C.SKIPPED) == [
        {"path": str(tmp_path / "b.mp4"), "reason": "missing", "message": "file not found"}
    ]
    assert "listed but missing: 1 (e.g. b.mp4)" in format_summary(summary)

    write_video(tmp_path / "b.mp4", num_frames=20)  # the download finished: the next run takes it
    summary = prepare(tmp_path / "list.csv", out, size=SIZE, workers=0, progress=False)
    assert summary["prepared"] == 2 and summary["prepared_this_run"] == 1 and summary["missing"] == 0
    assert C.read_jsonl(out / C.SKIPPED) == []


def test_out_must_be_new_empty_or_a_cache_and_never_the_videos(tmp_path):
    src = _source(tmp_path / "videos", 2)
    refused = {
        src: "is SRC itself",
        src / "a" / "cache": "inside the video folder",
        tmp_path: "holds SRC",
    }
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "paper.pdf").write_bytes(b"%PDF")
    refused[tmp_path / "docs"] = "neither empty nor a prepared cache (it holds paper.pdf)"
    for out, message in refused.items():
        with pytest.raises(UserError, match=re.escape(message)) as error:
            prepare(src, out, size=SIZE, workers=0, progress=False)
        assert "\n" not in str(error.value) and "outside" in str(error.value)
    assert not (src / C.SHARDS).exists() and not (src / "a" / "cache").exists()  # nothing written

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".DS_Store").write_bytes(b"")
    prepare(src, tmp_path / "empty", size=SIZE, workers=0, progress=False)  # empty but for OS junk: fine
    prepare(src, tmp_path / "empty", size=SIZE, workers=0, progress=False)  # a cache: resumed

    # A CSV source: the folder of the videos it lists is no OUT either; the command line says so in one line.
    (tmp_path / "docs" / "list.csv").write_text(f"path,label\n{src / 'a' / 'v00.mp4'},a\n")
    proc = subprocess.run(
        [sys.executable, "-m", "avcl.cli", "prepare", str(tmp_path / "docs" / "list.csv"), str(src), "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "neither empty nor a prepared cache (it holds a, b)" in proc.stderr


def test_a_reader_pointed_at_the_videos_is_told_to_prepare_them_elsewhere(tmp_path):
    src = _source(tmp_path / "videos", 1)
    with pytest.raises(C.CacheError, match="into a new folder") as error:
        C.PreparedCache(src)
    assert f"avcl prepare {src} NEW_FOLDER" in str(error.value)


def test_resume_cuts_the_bytes_a_killed_run_left_at_a_shard_end(tmp_path):
    src = _source(tmp_path / "src", 3)
    out = tmp_path / "cache"
    prepare(src, out, size=SIZE, workers=0, progress=False)
    (shard,) = (out / C.SHARDS).iterdir()
    intact = shard.read_bytes()
    # What a run killed in the middle of a video leaves: bytes past the last indexed blob of a shard, a
    # shard file of a worker that had indexed nothing yet, and no meta.json (removed when a run starts).
    with open(shard, "ab") as f:
        f.write(b"\xff" * 1000)
    (out / C.SHARDS / "20260101-000000-abcdef-4242-0.bin").write_bytes(b"\xd8" * 234)
    (out / C.META).unlink()
    for extra in range(3, 5):  # and videos still to prepare
        write_video(src / "b" / f"v{extra:02d}.mp4", num_frames=40 + extra)

    summary = prepare(src, out, size=SIZE, workers=0, progress=False)
    assert summary["orphan_bytes_dropped"] == 1234 and summary["orphan_shards_trimmed"] == 2
    assert "dropped 1234 bytes that an interrupted run left at the end of 2 shard files" in format_summary(summary)
    assert shard.read_bytes() == intact
    assert summary["prepared"] == 5 and summary["prepared_this_run"] == 2
    _assert_shards_hold_only_indexed_bytes(out)
    cache = C.PreparedCache(out)
    assert all(len(cache.read_frames(i, range(cache.entries.num_frames[i]))) for i in range(len(cache)))


def test_a_worker_whose_every_video_fails_leaves_no_shard(tmp_path):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    write_video(src / "a" / "short.mp4", num_frames=8)  # written to a shard, then found too short
    write_video(src / "a" / "long.mp4", num_frames=20)
    summary = prepare(src, tmp_path / "cache", size=SIZE, workers=0, progress=False, min_frames=16)
    assert summary["prepared"] == 1 and summary["skipped_by_reason"] == {"too_short": 1}
    _assert_shards_hold_only_indexed_bytes(tmp_path / "cache")
    summary = prepare(src, tmp_path / "short-only", size=SIZE, workers=0, progress=False, min_frames=30)
    assert summary["prepared"] == 0 and summary["skipped_by_reason"] == {"too_short": 2}
    assert list((tmp_path / "short-only" / C.SHARDS).iterdir()) == []
