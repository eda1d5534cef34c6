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
``list_source`` also names every file of a folder that is not taken as a video (another extension, a
file beside the split folders) with its reason, and counts hidden files and OS junk (``.DS_Store``,
``Thumbs.db``, ``._*`` resource forks, anything under a hidden folder or ``__MACOSX``) without naming them.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from avcl.data.classlists import match_classes
from avcl.errors import UserError

# Containers FFmpeg reads that hold video: MP4/QuickTime, Matroska/WebM, AVI, Flash, MPEG program and
# transport streams (.ts; .m2ts/.mts from AVCHD cameras; .vob from DVDs), 3GPP phone videos, Windows
# Media (ASF), Ogg video.
VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4",
        ".m4v",
        ".mov",
        ".mkv",
        ".webm",
        ".avi",
        ".flv",
        ".mpg",
        ".mpeg",
        ".vob",
        ".ts",
        ".m2ts",
        ".mts",
        ".3gp",
        ".3g2",
        ".wmv",
        ".asf",
        ".ogv",
    }
)
# OS metadata that sits beside videos (besides every name starting with a dot): ignored without a word.
_JUNK_NAMES = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini", "__macosx", "icon\r"})
NOT_A_VIDEO = "not a video extension"
OUTSIDE_SPLITS = "beside the split folders, not in one"
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


@dataclass
class SourceListing:
    """What ``list_source`` found in a data set's source."""

    items: list[VideoItem]  # the videos, sorted by (split, label, path)
    missing: list[tuple[str, str]]  # (path, reason) of listed files that do not exist, sorted
    ignored: list[tuple[str, str]]  # (path, reason) of files in the folders that are not taken as videos
    hidden: int  # hidden files and OS junk (.DS_Store, Thumbs.db, ._*), ignored quietly
    # Videos the source lists per (label, split), found or not: a CSV's or split files' rows; for a
    # folder, the videos found.
    listed: dict[tuple[str | None, str | None], int] = field(default_factory=dict)

    def per_class(self) -> dict[str, dict[str, dict[str, int]]]:
        """``{label: {split: {"listed": n, "found": m}}}`` (unlabelled and split-less as "-")."""
        found = Counter((item.label, item.split) for item in self.items)
        table: dict[str, dict[str, dict[str, int]]] = {}
        for label, split in sorted(set(self.listed) | set(found), key=lambda k: (k[0] or "", k[1] or "")):
            table.setdefault(label or "-", {})[split or "-"] = {
                "listed": self.listed.get((label, split), found[(label, split)]),
                "found": found[(label, split)],
            }
        return table


def is_hidden(name: str) -> bool:
    """Hidden files and folders, macOS "._" resource forks and OS junk such as Thumbs.db: never videos."""
    return name.startswith(".") or name.lower() in _JUNK_NAMES


class _Walk:
    """Collects the files of a folder source that are not videos while the videos are found."""

    def __init__(self) -> None:
        self.ignored: list[tuple[str, str]] = []
        self.hidden = 0

    def count_hidden(self, folder: Path) -> None:
        self.hidden += sum(len(files) for _, _, files in os.walk(folder, followlinks=True))

    def classify(self, path: Path, reason_for_video: str | None = None) -> bool:
        """True when ``path`` (not a folder) is a video to take; otherwise counts or lists it."""
        if is_hidden(path.name):
            self.hidden += 1
            return False
        if not path.is_file():
            self.ignored.append((os.path.abspath(path), "not a regular file (a broken link?)"))
            return False
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            self.ignored.append((os.path.abspath(path), NOT_A_VIDEO))
            return False
        if reason_for_video is not None:
            self.ignored.append((os.path.abspath(path), reason_for_video))
            return False
        return True

    def videos_below(self, folder: Path) -> list[Path]:
        """The videos anywhere below ``folder``; hidden folders (and __MACOSX) are not entered."""
        videos = []
        for parent, dirs, files in os.walk(folder, followlinks=True):
            for name in [d for d in dirs if is_hidden(d)]:
                dirs.remove(name)
                self.count_hidden(Path(parent) / name)
            dirs.sort()
            videos += [p for p in (Path(parent) / f for f in sorted(files)) if self.classify(p)]
        return videos


def _sorted(items: Iterable[VideoItem]) -> list[VideoItem]:
    return sorted(items, key=lambda it: (it.split or "", it.label or "", it.path))


def _scan_classes(folder: Path, split: str | None, walk: _Walk) -> list[VideoItem]:
    """Items of ``<folder>/<class>/...`` plus unlabelled videos directly in ``folder``."""
    items = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            if is_hidden(entry.name):
                walk.count_hidden(entry)
            else:
                items += [VideoItem(os.path.abspath(p), entry.name, split) for p in walk.videos_below(entry)]
        elif walk.classify(entry):
            items.append(VideoItem(os.path.abspath(entry), None, split))
    return items


def _from_folder(root: Path, splits: tuple[str, ...], walk: _Walk) -> list[VideoItem]:
    subdirs = [d for d in root.iterdir() if d.is_dir() and not is_hidden(d.name)]
    split_dirs = [d for d in subdirs if d.name in splits]
    if not split_dirs:
        return _scan_classes(root, None, walk)
    others = sorted(d.name for d in subdirs if d.name not in splits)
    if others:
        raise UserError(
            f"{root}: mixes split folders ({', '.join(sorted(d.name for d in split_dirs))}) with other folders "
            f"({', '.join(others[:5])}{', ...' if len(others) > 5 else ''}); expected either <split>/<class>/<file> "
            f"or <class>/<file>"
        )
    items: list[VideoItem] = []
    for entry in sorted(root.iterdir()):  # files beside the split folders belong to no split
        if entry.is_dir():
            if is_hidden(entry.name):
                walk.count_hidden(entry)
        else:
            walk.classify(entry, reason_for_video=OUTSIDE_SPLITS)
    for split_dir in split_dirs:
        items += _scan_classes(split_dir, split_dir.name, walk)
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
    walk = _Walk()
    by_stem: dict[str, Path] = {}
    for video in sorted(walk.videos_below(videos_root)):  # sorted: the same file wins every time
        by_stem.setdefault(video.stem, video)
    others: dict[str, str] = {}  # e.g. an audio-only .m4a or a partial .part download of a listed video
    for path, _ in sorted(walk.ignored):
        name = os.path.basename(path)
        others.setdefault(name.split(".", 1)[0], name)
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
            other = others.get(name) or others.get(row["youtube_id"])
            reason = f"file not found (only {other}: {NOT_A_VIDEO})" if other else "file not found"
            missing.append((str(videos_root.absolute() / f"{name}.mp4"), reason))
            continue
        items.append(VideoItem(os.path.abspath(video), row.get("label") or None, _split_name(row.get("split", ""))))
    return items, missing


def list_source(
    src: str | os.PathLike,
    videos_root: str | os.PathLike | None = None,
    splits: tuple[str, ...] = DEFAULT_SPLITS,
    classes: list[str] | None = None,
    official: OfficialSplits | None = None,
) -> SourceListing:
    """Find the videos of ``src`` (a folder or a CSV, see the module docstring), and what is not taken.

    ``splits`` are the folder names recognised as split folders; ``videos_root`` is only used with a
    Kinetics annotation CSV. ``ignored`` and ``hidden`` are filled for a folder source; a CSV names its
    files, so other files beside them are not the data set's. ``classes`` keeps only the videos of
    those classes (matched with spaces or underscores, see ``avcl.data.classlists``); ``official``
    reads the videos of the folder ``src`` from the UCF101 or HMDB51 split files instead of its layout.
    Raises UserError when ``src`` does not exist or is not a folder or CSV of a known layout, or when a
    listed class matches no label.
    """
    src = Path(src)
    if not src.exists():
        raise UserError(f"{src}: no such file or folder")
    walk = _Walk()
    listed: Counter = Counter()
    if official is not None:
        if not src.is_dir():
            raise UserError(f"{src}: the {official.dataset} split files need the folder of its videos as SRC")
        items, missing, listed = official.read(src)
        items, missing, listed = _keep_classes(items, missing, listed, classes, str(official.lists_dir))
    elif src.is_dir():
        if videos_root is not None:
            raise UserError(f"videos_root is only used with a Kinetics annotation CSV, but {src} is a folder")
        items, missing = _from_folder(src, tuple(splits), walk), []
        items, missing, listed = _keep_classes(items, missing, listed, classes, str(src))
    elif src.suffix.lower() == ".csv":
        header, rows = _read_csv(src)
        if classes is not None:
            matched = match_classes(classes, {row["label"] for row in rows if row.get("label")}, str(src))
            rows = [row for row in rows if row.get("label") in matched]
        listed = Counter((row.get("label") or None, _split_name(row.get("split", ""))) for row in rows)
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
    return SourceListing(
        _sorted(unique.values()),
        sorted(set(missing)),
        sorted(walk.ignored),
        walk.hidden,
        dict(listed) or dict(Counter((i.label, i.split) for i in unique.values())),
    )


def _keep_classes(
    items: list[VideoItem], missing: list[tuple[str, str]], listed: Counter, classes: list[str] | None, source: str
) -> tuple[list[VideoItem], list[tuple[str, str]], Counter]:
    """The items, missing files (by their class folder) and listed counts of the ``classes`` only."""
    if classes is None:
        return items, missing, listed
    matched = match_classes(
        classes, {item.label for item in items if item.label} | {label for label, _ in listed if label}, source
    )
    keep_missing = [(path, why) for path, why in missing if Path(path).parent.name in matched]
    return (
        [item for item in items if item.label in matched],
        keep_missing,
        Counter({key: n for key, n in listed.items() if key[0] in matched}),
    )


@dataclass(frozen=True)
class OfficialSplits:
    """The split files of UCF101 (``ucfTrainTestlist``) or HMDB51 (``testTrainMulti_7030_splits``)."""

    dataset: str  # "ucf101" | "hmdb51"
    lists_dir: Path
    split: int = 1
    val_videos: int | None = None  # held out of the training list; None: the dataset's default (800 / 400)
    seed: int = 0

    def read(self, videos_root: Path) -> tuple[list[VideoItem], list[tuple[str, str]], Counter]:
        from avcl.data import splits as S

        readers = {"ucf101": (S.read_ucf101, S.UCF101_VAL_VIDEOS), "hmdb51": (S.read_hmdb51, S.HMDB51_VAL_VIDEOS)}
        if self.dataset not in readers:
            raise UserError(f"unknown split files '{self.dataset}'; choose ucf101 or hmdb51")
        if not Path(self.lists_dir).is_dir():
            raise UserError(f"{self.lists_dir}: no such folder of {self.dataset} split files")
        reader, default_val = readers[self.dataset]
        val = default_val if self.val_videos is None else self.val_videos
        return reader(videos_root, self.lists_dir, self.split, val, self.seed)


def find_videos(
    src: str | os.PathLike,
    videos_root: str | os.PathLike | None = None,
    splits: tuple[str, ...] = DEFAULT_SPLITS,
) -> tuple[list[VideoItem], list[tuple[str, str]]]:
    """Find the videos of ``src`` (a folder or a CSV, see the module docstring).

    Returns ``(items, missing)``: the videos sorted by (split, label, path), and the (path, reason)
    pairs of listed files that could not be found, sorted. ``list_source`` also returns the files that
    were not taken as videos. Raises UserError when ``src`` does not exist or is not a folder or CSV of
    a known layout.
    """
    listing = list_source(src, videos_root, splits)
    return listing.items, listing.missing


def class_names(items: Iterable[VideoItem]) -> list[str]:
    """Sorted unique labels of ``items`` (unlabelled items are ignored)."""
    return sorted({item.label for item in items if item.label is not None})
