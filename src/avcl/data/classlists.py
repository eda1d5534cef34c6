"""Class lists: the Kinetics-Sounds subsets shipped with the package, or a user's own list file.

A list file holds one class name per line (blank lines and lines starting with ``#`` are ignored).
Names match the labels of a data set whatever their spelling of spaces: Kinetics annotation CSVs say
``playing bass guitar``, folders made from them usually say ``playing_bass_guitar``; both match.

``kinetics_sounds_32``: the 32 Kinetics-400 classes of Kinetics-Sounds (Arandjelovic & Zisserman, "Look,
Listen and Learn", appendix A1, mapped to Kinetics-400 wording; ``docs/datasets.md`` gives the
provenance). ``kinetics_sounds_100``: those 32 plus 68 audible Kinetics-400 classes (the AVCL paper's
Kinetics-Sounds100 was never published as a list).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

from avcl.errors import UserError

_FOLDER = Path(__file__).resolve().parent / "classlists"
PACKAGED_LISTS = ("kinetics_sounds_32", "kinetics_sounds_100")


def normalise_class_name(name: str) -> str:
    """The spelling-independent key of a class name: lower case, underscores as spaces, single spaces."""
    return " ".join(name.replace("_", " ").lower().split())


def read_class_list(path: str | Path) -> list[str]:
    """The class names of a list file, in file order; an error names the file when it has none."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UserError(f"{path}: cannot read the class list ({exc.strerror or exc})") from None
    names = [line.strip() for line in text.splitlines()]
    names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise UserError(f"{path}: the class list is empty")
    keys = [normalise_class_name(n) for n in names]
    repeated = sorted({n for n, k in zip(names, keys) if keys.count(k) > 1})
    if repeated:
        raise UserError(f"{path}: class names listed twice: {', '.join(repeated)}")
    return names


def load_class_list(name_or_path: str | Path) -> list[str]:
    """A packaged list by name (``kinetics_sounds_32``, ``kinetics_sounds_100``) or a list file's path."""
    if str(name_or_path) in PACKAGED_LISTS:
        return read_class_list(_FOLDER / f"{name_or_path}.txt")
    path = Path(name_or_path)
    if not path.is_file():
        raise UserError(f"{name_or_path}: neither a packaged class list ({', '.join(PACKAGED_LISTS)}) nor a list file")
    return read_class_list(path)


def match_classes(wanted: Iterable[str], available: Iterable[str], source: str) -> dict[str, str]:
    """Map each wanted class to the label of ``available`` that spells it (spaces or underscores).

    Returns ``{available label: wanted name}`` for the matched labels. Raises UserError naming every
    wanted class that matches no label of ``source``, with the closest labels.
    """
    by_key: dict[str, str] = {}
    for label in available:
        by_key.setdefault(normalise_class_name(label), label)
    matched: dict[str, str] = {}
    unmatched: list[str] = []
    for name in wanted:
        label = by_key.get(normalise_class_name(name))
        if label is None:
            unmatched.append(name)
        else:
            matched[label] = name
    if unmatched:
        hints = []
        for name in unmatched:
            close = difflib.get_close_matches(normalise_class_name(name), list(by_key), n=3, cutoff=0.6)
            hint = f" (closest: {', '.join(by_key[c] for c in close)})" if close else ""
            hints.append(f"'{name}'{hint}")
        raise UserError(
            f"{source}: {len(unmatched)} listed class(es) match no label of the data set: " + "; ".join(hints)
        )
    return matched
