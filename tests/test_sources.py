"""Finding videos: class folders with and without split folders, path CSVs, Kinetics annotation CSVs."""

from __future__ import annotations

import os

import pytest

from avcl.data.sources import NOT_A_VIDEO, OUTSIDE_SPLITS, VideoItem, class_names, find_videos, list_source
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
        "train/dog/b.mkv",
        "train/cat/a.mp4",
        "train/cat/sub/e.MP4",
        "val/cat/c.avi",
        "test/dog/d.webm",
        "train/cat/notes.txt",
        "train/cat/._a.mp4",
        "train/.hidden/x.mp4",
        "train/loose.mov",
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
    assert missing == sorted(
        [(str(tmp_path / "clips" / "gone.mp4"), "file not found"), (f"{meta / 'list.csv'}:6", "no path in this row")]
    )


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


def test_every_container_extension_ffmpeg_reads_is_a_video(tmp_path):
    names = ["a.ts", "b.M2TS", "c.mts", "d.3gp", "e.3g2", "f.wmv", "g.asf", "h.ogv", "i.vob"]
    _touch(tmp_path, *(f"cls/{n}" for n in names))
    listing = list_source(tmp_path)
    assert sorted(os.path.basename(it.path) for it in listing.items) == sorted(names)
    assert listing.ignored == [] and listing.hidden == 0


def test_files_not_taken_are_listed_with_a_reason_and_junk_is_counted(tmp_path):
    _touch(
        tmp_path,
        "train/cat/a.mp4",
        "train/cat/song.m4a",
        "train/cat/sub/notes.txt",
        "val/dog/b.avi",
        "val/dog/clip.mp3",
        "loose.mp4",
        "classInd.txt",  # beside the split folders: in no split
        "train/cat/.DS_Store",
        "train/cat/._a.mp4",
        "train/Thumbs.db",
        "val/dog/desktop.ini",
        "train/cat/.thumbs/x.mp4",
        "train/.cache/y.mp4",
        "__MACOSX/train/cat/._a.mp4",
    )
    listing = list_source(tmp_path)
    assert _triples(listing.items, tmp_path) == [("train/cat/a.mp4", "cat", "train"), ("val/dog/b.avi", "dog", "val")]
    assert [(os.path.relpath(p, tmp_path), r) for p, r in listing.ignored] == [
        ("classInd.txt", NOT_A_VIDEO),
        ("loose.mp4", OUTSIDE_SPLITS),
        ("train/cat/song.m4a", NOT_A_VIDEO),
        ("train/cat/sub/notes.txt", NOT_A_VIDEO),
        ("val/dog/clip.mp3", NOT_A_VIDEO),
    ]
    assert listing.hidden == 7
    assert find_videos(tmp_path) == (listing.items, [])


def test_a_broken_link_is_listed_not_dropped(tmp_path):
    _touch(tmp_path, "cat/a.mp4")
    (tmp_path / "cat" / "b.mp4").symlink_to(tmp_path / "gone.mp4")
    listing = list_source(tmp_path)
    assert len(listing.items) == 1
    assert listing.ignored == [(str(tmp_path / "cat" / "b.mp4"), "not a regular file (a broken link?)")]


def test_kinetics_row_whose_only_download_is_audio_says_so(tmp_path):
    _touch(tmp_path, "v/abc_000000_000010.m4a", "v/def_000000_000010.mp4")
    (tmp_path / "k.csv").write_text("label,youtube_id,time_start,time_end,split\nx,abc,0,10,train\ny,def,0,10,train\n")
    listing = list_source(tmp_path / "k.csv", videos_root=tmp_path / "v")
    assert len(listing.items) == 1 and listing.ignored == []  # a CSV names its files: others are not listed
    assert listing.missing == [
        (str(tmp_path / "v" / "abc_000000_000010.mp4"), f"file not found (only abc_000000_000010.m4a: {NOT_A_VIDEO})")
    ]
