"""The official split files of UCF101 and HMDB51, read into (path, label, split) items.

UCF101 (``ucfTrainTestlist/``): ``classInd.txt`` lines ``1 ApplyEyeMakeup``; ``trainlist0N.txt`` lines
``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1`` (path, 1-based label); ``testlist0N.txt`` lines hold the
path only (the label is the folder). Quirk: the folder ``HandstandPushups`` holds files named
``v_HandStandPushups_*``, so a listed path whose file is missing is looked up case-insensitively.

HMDB51 (``testTrainMulti_7030_splits/``): 153 files ``<class>_test_split<N>.txt``, lines
``<video>.avi <id>`` with 1 = train, 2 = test, 0 = unused. Class names hold underscores (``brush_hair``),
so the class is the file name less its ``_test_split<N>.txt`` suffix; video names hold ``()!&`` and the
lines may end in spaces or CRLF, so a line is split on white space from the right.

Both hold out a validation split from the training list, drawn by seed (800 videos for UCF101, 400 for
HMDB51, as TCGL does).
"""

from __future__ import annotations

import os
import random
import re
from collections import Counter
from pathlib import Path

from avcl.data.sources import VideoItem
from avcl.errors import UserError

UCF101_VAL_VIDEOS = 800
HMDB51_VAL_VIDEOS = 400
_HMDB_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<split>\d)\.txt$")
_HMDB_LINE = re.compile(r"^(?P<name>.*\S)\s+(?P<kind>[012])$")


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise UserError(f"{path}: cannot read the split file ({exc.strerror or exc})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _check_split(split: int) -> None:
    if split not in (1, 2, 3):
        raise UserError(f"the official splits are 1, 2 and 3, not {split}")


def _hold_out_validation(items: list[VideoItem], count: int, seed: int, source: str) -> list[VideoItem]:
    """Move ``count`` training items, drawn by ``seed``, to the split ``val``."""
    train = [i for i, item in enumerate(items) if item.split == "train"]
    if count < 0 or count >= len(train):
        raise UserError(f"{source}: cannot hold out {count} of {len(train)} training videos for validation")
    for i in random.Random(seed).sample(train, count):
        items[i] = VideoItem(items[i].path, items[i].label, "val")
    return items


def _result(
    items: list[VideoItem],
    missing: list[tuple[str, str]],
    not_found: Counter,
    val_videos: int,
    seed: int,
    lists_dir: Path,
) -> tuple[list[VideoItem], list[tuple[str, str]], Counter]:
    """Hold out the validation split; count the listed videos per (class, split): found plus not found."""
    if val_videos:
        items = _hold_out_validation(items, val_videos, seed, str(lists_dir))
    listed = Counter((item.label, item.split) for item in items) + not_found
    return items, sorted(set(missing)), listed


class _Resolver:
    """Finds a listed relative path below ``root``, case-insensitively when the exact name is missing."""

    def __init__(self, root: Path):
        self.root = root
        self._folders: dict[Path, dict[str, str]] = {}

    def __call__(self, relative: str) -> str | None:
        path = self.root / relative
        if path.is_file():
            return os.path.abspath(path)
        folder = path.parent
        if folder not in self._folders:
            names = os.listdir(folder) if folder.is_dir() else []
            self._folders[folder] = {n.lower(): n for n in names}
        actual = self._folders[folder].get(path.name.lower())
        return os.path.abspath(folder / actual) if actual else None


def read_ucf101(
    videos_root: str | Path, lists_dir: str | Path, split: int = 1, val_videos: int = UCF101_VAL_VIDEOS, seed: int = 0
) -> tuple[list[VideoItem], list[tuple[str, str]], Counter]:
    """Items of UCF101 split ``split`` (train, val held out of train, test), the listed files not found,
    and the listed videos per (class, split)."""
    _check_split(split)
    lists_dir, root = Path(lists_dir), Path(videos_root)
    classes: dict[int, str] = {}
    for line in _lines(lists_dir / "classInd.txt"):
        index, name = line.split(maxsplit=1)
        classes[int(index)] = name.strip()
    by_folder = {name.lower(): name for name in classes.values()}
    find = _Resolver(root)
    items: list[VideoItem] = []
    missing: list[tuple[str, str]] = []
    not_found: Counter = Counter()
    for kind in ("train", "test"):
        list_file = lists_dir / f"{kind}list0{split}.txt"
        for number, line in enumerate(_lines(list_file), start=1):
            parts = line.split()
            relative = parts[0].replace("\\", "/")
            folder = relative.split("/")[0]
            if len(parts) > 1 and kind == "train":
                label = classes.get(int(parts[1]))
            else:
                label = by_folder.get(folder.lower())
            if label is None:
                missing.append((f"{list_file}:{number}", f"unknown class of '{relative}'"))
                continue
            path = find(relative)
            if path is None:
                missing.append((str(root / relative), "file not found"))
                not_found[(label, kind)] += 1
                continue
            items.append(VideoItem(path, label, kind))
    return _result(items, missing, not_found, val_videos, seed, lists_dir)


def read_hmdb51(
    videos_root: str | Path, lists_dir: str | Path, split: int = 1, val_videos: int = HMDB51_VAL_VIDEOS, seed: int = 0
) -> tuple[list[VideoItem], list[tuple[str, str]], Counter]:
    """Items of HMDB51 split ``split`` (ids 1 train, 2 test; 0 unused), the listed files not found, and the
    listed videos per (class, split)."""
    _check_split(split)
    lists_dir, root = Path(lists_dir), Path(videos_root)
    files = []
    for path in sorted(lists_dir.iterdir()):
        found = _HMDB_FILE.match(path.name)
        if found and int(found["split"]) == split:
            files.append((found["cls"], path))
    if not files:
        raise UserError(f"{lists_dir}: no '<class>_test_split{split}.txt' files (the HMDB51 split folder?)")
    find = _Resolver(root)
    items: list[VideoItem] = []
    missing: list[tuple[str, str]] = []
    not_found: Counter = Counter()
    for label, list_file in files:
        for number, line in enumerate(_lines(list_file), start=1):
            found = _HMDB_LINE.match(line)
            if found is None:
                missing.append((f"{list_file}:{number}", f"not '<video> <0|1|2>': {line!r}"))
                continue
            name, kind = found["name"], found["kind"]
            if kind == "0":
                continue
            split_name = "train" if kind == "1" else "test"
            path = find(f"{label}/{name}")
            if path is None:
                missing.append((str(root / label / name), "file not found"))
                not_found[(label, split_name)] += 1
                continue
            items.append(VideoItem(path, label, split_name))
    return _result(items, missing, not_found, val_videos, seed, lists_dir)
