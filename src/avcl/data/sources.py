"""Finding the videos of a data set, with their class labels and splits.

``find_videos(src, videos_root=None)`` accepts three layouts:

(a) a folder of class folders, ``<src>/<class>/<file>`` (split ``None``), or with split folders first,
    ``<src>/<split>/<class>/<file>`` (UCF101/HMDB51 style, or Kinetics once sorted into folders). Files
    may sit deeper inside a class folder; files directly under ``<src>`` (or a split folder) get label None;
(b) a CSV with a header holding ``path`` and ``label`` (and optionally ``split``) columns; relative paths
    are relative to the CSV's folder; an empty label means unlabelled;
(c) a Kinetics annotation CSV (``label,youtube_id,time_start,time_end,split``; ``label`` may be absent
    in test CSVs) with the downloaded videos under ``videos_root`` (default: the CSV's folder), named
    ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` (or ``<youtube_id>.<ext>``) anywhere below it.

Listed files that do not exist come back as ``(path, reason)`` pairs instead of stopping the search.
"""
from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from avcl.errors import UserError

VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".flv", ".mpg", ".mpeg"})
DEFAULT_SPLITS = ("train", "val", "test")
# Kinetics CSVs spell the validation split "val" (400) or "validate" (600, 700).
_SPLIT_ALIASES = {"validate": "val", "validation": "val"}
_KINETICS_COLUMNS = {"youtube_id", "time_start", "time_end"}


@dataclass
class VideoItem:
    """One video file of a data set."""

    path: str  # absolute path
    label: str | None  # class name; None when unlabelled
    split: str | None  # e.g. "train"; None when the source has no splits


def _is_video(path: Path) -> bool:
    # Names starting with a dot are hidden files or macOS "._" resource forks, never videos.
    return path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def _videos_below(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if _is_video(p)]


def _sorted(items: Iterable[VideoItem]) -> list[VideoItem]:
    return sorted(items, key=lambda it: (it.split or "", it.label or "", it.path))


def _scan_classes(folder: Path, split: str | None) -> list[VideoItem]:
    """Items of ``<folder>/<class>/...`` plus unlabelled videos directly in ``folder``."""
    items = [VideoItem(os.path.abspath(p), None, split) for p in folder.iterdir() if _is_video(p)]
    for class_dir in folder.iterdir():
        if class_dir.is_dir() and not class_dir.name.startswith("."):
            items += [VideoItem(os.path.abspath(p), class_dir.name, split) for p in _videos_below(class_dir)]
    return items


def _from_folder(root: Path, splits: tuple[str, ...]) -> list[VideoItem]:
    subdirs = [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    split_dirs = [d for d in subdirs if d.name in splits]
    if not split_dirs:
        return _scan_classes(root, None)
    others = sorted(d.name for d in subdirs if d.name not in splits)
    if others:
        raise UserError(
            f"{root}: mixes split folders ({', '.join(sorted(d.name for d in split_dirs))}) with other folders "
            f"({', '.join(others[:5])}{', ...' if len(others) > 5 else ''}); expected either <split>/<class>/<file> "
            f"or <class>/<file>"
        )
    items: list[VideoItem] = []
    for split_dir in split_dirs:
        items += _scan_classes(split_dir, split_dir.name)
    return items


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # utf-8-sig: tolerate a byte-order mark
            reader = csv.DictReader(f)
            rows = list(reader)
            header = [h.strip() for h in reader.fieldnames or []]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"{path}: cannot read the CSV ({error})") from error
    rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in rows]
    return header, rows


def _split_name(value: str) -> str | None:
    value = value.strip()
    return _SPLIT_ALIASES.get(value, value) or None


def _from_path_csv(csv_path: Path, rows: list[dict[str, str]]) -> tuple[list[VideoItem], list[tuple[str, str]]]:
    items: list[VideoItem] = []
    missing: list[tuple[str, str]] = []
    for line, row in enumerate(rows, start=2):
        if not row.get("path"):
            missing.append((f"{csv_path}:{line}", "no path in this row"))
            continue
        path = os.path.abspath(csv_path.parent / row["path"])  # an absolute row path stays as it is
        if not os.path.isfile(path):
            missing.append((path, "file not found"))
            continue
        items.append(VideoItem(path, row.get("label") or None, _split_name(row.get("split", ""))))
    return items, missing


def _kinetics_name(row: dict[str, str]) -> str:
    start, end = (int(float(row[k])) for k in ("time_start", "time_end"))
    return f"{row['youtube_id']}_{start:06d}_{end:06d}"


def _from_kinetics_csv(
    csv_path: Path, rows: list[dict[str, str]], videos_root: Path
) -> tuple[list[VideoItem], list[tuple[str, str]]]:
    if not videos_root.is_dir():
        raise UserError(f"{videos_root}: the videos folder of {csv_path.name} does not exist")
    by_stem: dict[str, Path] = {}
    for video in sorted(_videos_below(videos_root)):  # sorted: the same file wins every time
        by_stem.setdefault(video.stem, video)
    items: list[VideoItem] = []
    missing: list[tuple[str, str]] = []
    for line, row in enumerate(rows, start=2):
        try:
            name = _kinetics_name(row)
        except (KeyError, ValueError):
            missing.append((f"{csv_path}:{line}", "bad youtube_id/time_start/time_end"))
            continue
        video = by_stem.get(name) or by_stem.get(row["youtube_id"])
        if video is None:
            missing.append((str(videos_root.absolute() / f"{name}.mp4"), "file not found"))
            continue
        items.append(VideoItem(os.path.abspath(video), row.get("label") or None, _split_name(row.get("split", ""))))
    return items, missing


def find_videos(
    src: str | os.PathLike,
    videos_root: str | os.PathLike | None = None,
    splits: tuple[str, ...] = DEFAULT_SPLITS,
) -> tuple[list[VideoItem], list[tuple[str, str]]]:
    """Find the videos of ``src`` (a folder or a CSV, see the module docstring).

    Returns ``(items, missing)``: the videos sorted by (split, label, path), and the (path, reason)
    pairs of listed files that could not be found, sorted. ``splits`` are the folder names recognised
    as split folders; ``videos_root`` is only used with a Kinetics annotation CSV.
    Raises UserError when ``src`` does not exist or is not a folder or CSV of a known layout.
    """
    src = Path(src)
    if not src.exists():
        raise UserError(f"{src}: no such file or folder")
    if src.is_dir():
        if videos_root is not None:
            raise UserError(f"videos_root is only used with a Kinetics annotation CSV, but {src} is a folder")
        items, missing = _from_folder(src, tuple(splits)), []
    elif src.suffix.lower() == ".csv":
        header, rows = _read_csv(src)
        if {"path", "label"} <= set(header):
            items, missing = _from_path_csv(src, rows)
        elif _KINETICS_COLUMNS <= set(header):
            items, missing = _from_kinetics_csv(src, rows, Path(videos_root) if videos_root else src.parent)
        else:
            raise UserError(
                f"{src}: unknown CSV header {','.join(header)!r}; expected path,label[,split] or the Kinetics "
                f"columns label,youtube_id,time_start,time_end,split"
            )
    else:
        raise UserError(f"{src}: expected a folder of videos or a .csv file")
    # A file listed twice (e.g. the same clip in two rows) is kept once.
    unique = {item.path: item for item in items}
    return _sorted(unique.values()), sorted(set(missing))


def class_names(items: Iterable[VideoItem]) -> list[str]:
    """Sorted unique labels of ``items`` (unlabelled items are ignored)."""
    return sorted({item.label for item in items if item.label is not None})
