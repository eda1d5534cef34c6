"""Finding videos: class folders with and without split folders, path CSVs, Kinetics annotation CSVs."""
from __future__ import annotations

import os

import pytest

from avcl.data.sources import VideoItem, class_names, find_videos
from avcl.errors import UserError


def _touch(root, *relative: str) -> None:
    # Discovery reads names only, so empty files stand in for videos here.
    for rel in relative:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def _triples(items: list[VideoItem], root) -> list[tuple[str, str | None, str | None]]:
    return [(os.path.relpath(it.path, root), it.label, it.split) for it in items]


def test_folder_with_split_folders(tmp_path):
    _touch(
        tmp_path,
        "train/dog/b.mkv", "train/cat/a.mp4", "train/cat/sub/e.MP4", "val/cat/c.avi", "test/dog/d.webm",
        "train/cat/notes.txt", "train/cat/._a.mp4", "train/.hidden/x.mp4", "train/loose.mov",
    )
    items, missing = find_videos(tmp_path)
    assert missing == []
    assert all(os.path.isabs(it.path) for it in items)
    assert _triples(items, tmp_path) == [
        ("test/dog/d.webm", "dog", "test"),
        ("train/loose.mov", None, "train"),
        ("train/cat/a.mp4", "cat", "train"),
        ("train/cat/sub/e.MP4", "cat", "train"),
        ("train/dog/b.mkv", "dog", "train"),
        ("val/cat/c.avi", "cat", "val"),
    ]
    assert class_names(items) == ["cat", "dog"]


def test_folder_without_splits(tmp_path):
    _touch(tmp_path, "walking/v1.m4v", "running/v2.flv", "running/v3.mpeg", "running/v4.mpg", "top.mp4")
    items, missing = find_videos(tmp_path)
    assert missing == []
    assert _triples(items, tmp_path) == [
        ("top.mp4", None, None),
        ("running/v2.flv", "running", None),
        ("running/v3.mpeg", "running", None),
        ("running/v4.mpg", "running", None),
        ("walking/v1.m4v", "walking", None),
    ]
    assert class_names(items) == ["running", "walking"]


def test_folder_mixing_splits_and_classes_is_an_error(tmp_path):
    _touch(tmp_path, "train/cat/a.mp4", "dog/b.mp4")
    with pytest.raises(UserError, match="mixes split folders"):
        find_videos(tmp_path)


def test_custom_split_names(tmp_path):
    _touch(tmp_path, "trainlist01/cat/a.mp4", "testlist01/cat/b.mp4")
    items, _ = find_videos(tmp_path, splits=("trainlist01", "testlist01"))
    assert [(it.label, it.split) for it in items] == [("cat", "testlist01"), ("cat", "trainlist01")]


def test_path_csv(tmp_path):
    _touch(tmp_path, "clips/a.mp4", "clips/b.mkv", "elsewhere/c.webm")
    absolute = tmp_path / "elsewhere" / "c.webm"
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "list.csv").write_text(
        "path,label,split\n"
        "../clips/a.mp4,cat,train\n"
        f"{absolute},dog,validate\n"
        "../clips/b.mkv,,test\n"
        "../clips/gone.mp4,cat,train\n"
        ",cat,train\n"
    )
    items, missing = find_videos(meta / "list.csv")
    assert _triples(items, tmp_path) == [
        ("clips/b.mkv", None, "test"),
        ("clips/a.mp4", "cat", "train"),
        ("elsewhere/c.webm", "dog", "val"),
    ]
    assert missing == sorted([(str(tmp_path / "clips" / "gone.mp4"), "file not found"), (f"{meta / 'list.csv'}:6", "no path in this row")])


def test_path_csv_without_split_column(tmp_path):
    _touch(tmp_path, "x.mp4", "y.mp4")
    (tmp_path / "l.csv").write_text("label,path\nb,y.mp4\na,x.mp4\na,x.mp4\n")  # column order free; duplicates once
    items, missing = find_videos(tmp_path / "l.csv")
    assert missing == []
    assert _triples(items, tmp_path) == [("x.mp4", "a", None), ("y.mp4", "b", None)]


def test_kinetics_csv_with_a_missing_video(tmp_path):
    videos = tmp_path / "downloads"
    _touch(
        videos,
        "train/abc123_000010_000020.mp4",
        "train/playing drums/xyz789_000000_000010.webm",  # nested folders are searched
        "val/def456.mkv",  # some downloaders name files by the YouTube id alone
    )
    csv_path = tmp_path / "kinetics.csv"
    csv_path.write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "bowling,abc123,10,20,train\n"
        "playing drums,xyz789,0.0,10.0,train\n"
        "tickling,def456,5,15,validate\n"
        "bowling,nothere,30,40,train\n"
    )
    items, missing = find_videos(csv_path, videos_root=videos)
    assert _triples(items, videos) == [
        ("train/abc123_000010_000020.mp4", "bowling", "train"),
        ("train/playing drums/xyz789_000000_000010.webm", "playing drums", "train"),
        ("val/def456.mkv", "tickling", "val"),
    ]
    assert missing == [(str(videos / "nothere_000030_000040.mp4"), "file not found")]
    assert class_names(items) == ["bowling", "playing drums", "tickling"]


def test_kinetics_test_csv_without_labels(tmp_path):
    _touch(tmp_path, "q1_000001_000011.mp4")
    (tmp_path / "test.csv").write_text("youtube_id,time_start,time_end,split\nq1,1,11,test\n")
    items, missing = find_videos(tmp_path / "test.csv")  # videos_root defaults to the CSV's folder
    assert missing == [] and [(it.label, it.split) for it in items] == [(None, "test")]
    assert class_names(items) == []


def test_errors(tmp_path):
    with pytest.raises(UserError, match="no such file or folder"):
        find_videos(tmp_path / "absent")
    (tmp_path / "list.txt").write_text("a.mp4\n")
    with pytest.raises(UserError, match="folder of videos or a .csv"):
        find_videos(tmp_path / "list.txt")
    (tmp_path / "odd.csv").write_text("file,class\na.mp4,x\n")
    with pytest.raises(UserError, match="unknown CSV header"):
        find_videos(tmp_path / "odd.csv")
    (tmp_path / "k.csv").write_text("label,youtube_id,time_start,time_end,split\na,b,0,10,train\n")
    with pytest.raises(UserError, match="does not exist"):
        find_videos(tmp_path / "k.csv", videos_root=tmp_path / "nowhere")
    with pytest.raises(UserError, match="only used with a Kinetics"):
        find_videos(tmp_path, videos_root=tmp_path)
