"""Class lists (Kinetics-Sounds) and the official UCF101 / HMDB51 split files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from avcl.data.classlists import PACKAGED_LISTS, load_class_list, match_classes, normalise_class_name
from avcl.data.splits import read_hmdb51, read_ucf101
from avcl.errors import UserError

KINETICS_400 = (Path(__file__).parent / "data" / "kinetics400_classes.txt").read_text().splitlines()


def test_the_kinetics_400_reference_list():
    assert len(KINETICS_400) == len(set(KINETICS_400)) == 400
    assert sum(any(c in n for c in "()'") for n in KINETICS_400) == 10


@pytest.mark.parametrize("name,size", [("kinetics_sounds_32", 32), ("kinetics_sounds_100", 100)])
def test_every_shipped_class_is_a_kinetics_400_class(name, size):
    names = load_class_list(name)
    assert len(names) == len(set(names)) == size
    assert set(names) <= set(KINETICS_400), sorted(set(names) - set(KINETICS_400))


def test_kinetics_sounds_100_extends_32():
    k32, k100 = load_class_list("kinetics_sounds_32"), load_class_list("kinetics_sounds_100")
    assert k100[:32] == k32
    assert {
        "dancing charleston",
        "belly dancing",
        "playing volleyball",
        "playing cricket",
        "applauding",
        "celebrating",
    } <= set(k100[32:])  # the paper's examples of the added classes
    assert set(PACKAGED_LISTS) == {"kinetics_sounds_32", "kinetics_sounds_100"}


def test_a_user_list_file_and_matching_with_underscores(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("# my classes\r\nplaying bass guitar\r\n\r\nshuffling cards\r\n")
    wanted = load_class_list(path)
    assert wanted == ["playing bass guitar", "shuffling cards"]
    matched = match_classes(wanted, ["playing_bass_guitar", "Shuffling_Cards", "bowling"], "videos/")
    assert matched == {"playing_bass_guitar": "playing bass guitar", "Shuffling_Cards": "shuffling cards"}
    assert normalise_class_name("  Playing_Bass  guitar ") == "playing bass guitar"


def test_an_unmatched_class_names_the_closest(tmp_path):
    with pytest.raises(UserError, match=r"1 listed class.*'playing base guitar' \(closest: playing_bass_guitar"):
        match_classes(["playing base guitar", "bowling"], ["playing_bass_guitar", "bowling"], "kinetics.csv")
    with pytest.raises(UserError, match="neither a packaged class list"):
        load_class_list(tmp_path / "absent.txt")
    twice = tmp_path / "twice.txt"
    twice.write_text("bowling\nBowling\n")
    with pytest.raises(UserError, match="listed twice"):
        load_class_list(twice)


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def _ucf_tree(tmp_path: Path) -> tuple[Path, Path]:
    """A UCF101-like tree with the official line formats, CRLF, and the HandstandPushups quirk."""
    root, lists = tmp_path / "UCF-101", tmp_path / "ucfTrainTestlist"
    lists.mkdir()
    classes = ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
    (lists / "classInd.txt").write_text("".join(f"{i} {c}\r\n" for i, c in enumerate(classes, 1)))
    train, test = [], []
    for i, c in enumerate(classes, 1):
        file_class = "HandStandPushups" if c == "HandstandPushups" else c
        for g in range(1, 5):
            rel = f"{c}/v_{file_class}_g{g:02d}_c01.avi"
            _touch(root / rel)
            (train if g <= 3 else test).append((rel, i))
    # The list files spell the quirky class like the folder; the files on disk spell it otherwise.
    train_lines = [f"{rel.replace('HandStandPushups', 'HandstandPushups')} {i}" for rel, i in train]
    (lists / "trainlist01.txt").write_text("\r\n".join(train_lines + ["YoYo/v_YoYo_g09_c01.avi 3"]) + "\r\n")
    (lists / "testlist01.txt").write_text("\r\n".join(rel for rel, _ in test) + "\r\n")
    return root, lists


def test_ucf101_split_with_its_quirks(tmp_path):
    root, lists = _ucf_tree(tmp_path)
    items, missing, listed = read_ucf101(root, lists, split=1, val_videos=2, seed=0)
    counts = Counter(item.split for item in items)
    assert counts == {"train": 7, "val": 2, "test": 3}
    assert {item.label for item in items} == {"ApplyEyeMakeup", "HandstandPushups", "YoYo"}
    handstand = [item for item in items if item.label == "HandstandPushups"]
    assert len(handstand) == 4 and all(Path(item.path).is_file() for item in handstand)
    assert missing == [(str(root / "YoYo/v_YoYo_g09_c01.avi"), "file not found")]
    assert sum(listed.values()) == 13 and listed[("YoYo", "train")] + listed[("YoYo", "val")] == 4
    again, _, _ = read_ucf101(root, lists, split=1, val_videos=2, seed=0)
    other, _, _ = read_ucf101(root, lists, split=1, val_videos=2, seed=1)
    val = lambda its: sorted(i.path for i in its if i.split == "val")  # noqa: E731
    assert val(items) == val(again) and len(val(other)) == 2
    with pytest.raises(UserError, match="1, 2 and 3"):
        read_ucf101(root, lists, split=4)


def test_hmdb51_split_with_its_quirks(tmp_path):
    root, lists = tmp_path / "hmdb51", tmp_path / "testTrainMulti_7030_splits"
    lists.mkdir()
    videos = {
        "brush_hair": [
            "April_09_brush_hair_u_nm_np1_ba_goo_0.avi",
            "Brushing_Hair_with_Beth_(!)_&_co_0.avi",
            "hair_2.avi",
        ],
        "sword_exercise": ["Blade_Of_Fury_-_Scene_1_sword_exercise_f_cm_np1_ri_med_3.avi", "s_2.avi", "s_3.avi"],
    }
    for cls, names in videos.items():
        for name in names:
            _touch(root / cls / name)
        ids = ["1", "2", "0"]
        lines = [f"{name} {k}  " for name, k in zip(names, ids)]  # trailing spaces, as the official files have
        (lists / f"{cls}_test_split1.txt").write_text("\r\n".join(lines) + "\r\n")
        (lists / f"{cls}_test_split2.txt").write_text("".join(f"{n} 1\n" for n in names))
    items, missing, _ = read_hmdb51(root, lists, split=1, val_videos=0)
    assert missing == []
    assert sorted((item.label, Path(item.path).name, item.split) for item in items) == [
        ("brush_hair", "April_09_brush_hair_u_nm_np1_ba_goo_0.avi", "train"),
        ("brush_hair", "Brushing_Hair_with_Beth_(!)_&_co_0.avi", "test"),
        ("sword_exercise", "Blade_Of_Fury_-_Scene_1_sword_exercise_f_cm_np1_ri_med_3.avi", "train"),
        ("sword_exercise", "s_2.avi", "test"),
    ]
    split2, _, _ = read_hmdb51(root, lists, split=2, val_videos=1, seed=3)
    assert Counter(item.split for item in split2) == {"train": 5, "val": 1}
    with pytest.raises(UserError, match="_test_split3.txt"):
        read_hmdb51(root, lists, split=3)


def test_prepare_a_kinetics_csv_with_a_class_list_and_missing_videos(tmp_path):
    from media import write_video

    from avcl.data.prepare import format_summary, prepare

    videos = tmp_path / "kinetics"
    videos.mkdir()
    rows = ["label,youtube_id,time_start,time_end,split"]
    plan = {
        ("playing bass guitar", "train"): (3, 2),
        ("playing bass guitar", "val"): (1, 1),
        ("shuffling cards", "train"): (2, 0),
        ("abseiling", "train"): (2, 2),
    }  # listed, downloaded
    for (label, split), (listed, found) in plan.items():
        for i in range(listed):
            vid = f"{label[:3]}{split}{i}".replace(" ", "")
            rows.append(f"{label},{vid},{10 * i},{10 * i + 10},{split}")
            if i < found:
                write_video(videos / f"{vid}_{10 * i:06d}_{10 * i + 10:06d}.mp4", num_frames=16, size=(24, 32))
    csv_path = tmp_path / "kinetics_train.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    wanted = tmp_path / "two.txt"
    wanted.write_text("playing_bass_guitar\nshuffling cards\n")
    summary = prepare(
        csv_path, tmp_path / "out", size=(24, 32), workers=0, videos_root=videos, classes=wanted, progress=False
    )
    assert summary["per_class"] == {
        "playing bass guitar": {"train": {"listed": 3, "found": 2}, "val": {"listed": 1, "found": 1}},
        "shuffling cards": {"train": {"listed": 2, "found": 0}},
    }
    assert summary["prepared"] == 3 and summary["missing"] == 3  # the abseiling rows are not the data set's
    assert "shuffling cards: train 0/2" in format_summary(summary)
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("shufling cards\n")
    with pytest.raises(UserError, match="closest: shuffling cards"):
        prepare(
            csv_path, tmp_path / "out2", size=(24, 32), workers=0, videos_root=videos, classes=wrong, progress=False
        )


def test_prepare_ucf101_from_its_split_files_through_the_cli(tmp_path):
    import json

    from conftest import run_cli
    from media import write_video

    root, lists = _ucf_tree(tmp_path)
    for path in root.rglob("*.avi"):
        write_video(path, num_frames=16, size=(24, 32), codec="mpeg4")
    out = tmp_path / "ucf-prepared"
    run_cli(
        "prepare",
        str(root),
        str(out),
        "--ucf101-splits",
        str(lists),
        "--split",
        "1",
        "--val-videos",
        "2",
        "--size",
        "24x32",
        "--workers",
        "1",
        "--quiet",
    )
    index = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert Counter(entry["split"] for entry in index) == {"train": 7, "val": 2, "test": 3}
    report = json.loads((out / "report.json").read_text())
    assert report["missing"] == 1 and report["per_class"]["YoYo"]["test"] == {"listed": 1, "found": 1}
