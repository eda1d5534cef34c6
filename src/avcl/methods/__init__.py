"""The method registry: one entry per method, the single source of truth about which methods exist.

Adding a method is one file, ``avcl/methods/<name>.py``, holding its :class:`~avcl.methods.base.Method`
subclass and, beside it, the dataclass of its options (the class attribute ``options``), plus one
:class:`MethodEntry` in ``REGISTRY`` below. Everything else reads the registry:

- the config: the allowed ``method.name`` values and the ``method`` section, composed from the shared
  keys and each method's options (:func:`avcl.config.method_config_class`);
- ``avcl compare``: its rows and the names ``--methods`` takes (:meth:`MethodEntry.compare_rows`);
- the command-line help of ``avcl pretrain`` and ``avcl compare``;
- the generic tests: every self-supervised method is trained a few steps in one process and under DDP
  (``tests/ddp/worker_methods.py``), with the settings its entry declares for tiny inputs (``tiny``).

This module imports no method, nor torch, until a method class is asked for (:meth:`MethodEntry.load`),
so the command line and the config stay quick to import.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from avcl.config import PAPER_LITERAL, PAPER_WEIGHTS, Config
from avcl.errors import UserError

if TYPE_CHECKING:
    from avcl.methods.base import Method


@dataclass(frozen=True)
class CompareRow:
    """A row of ``avcl compare``: ``method.name=<method>`` plus ``overrides`` on top of the preset."""

    key: str  # the name --methods takes
    title: str  # the row's name in the table
    overrides: tuple[str, ...] = ()
    paper: float | None = None  # the paper's top-1 on Kinetics-Sounds 32 (Table 4)
    supervised: str | None = None  # video | audio | both: a supervised baseline trained from scratch
    note: str = ""


@dataclass(frozen=True)
class MethodEntry:
    """A registered method.

    ``target`` is ``"module:Class"``, imported on first use. ``rows`` are its rows in ``avcl compare``
    (default: one row titled ``title``, selected by ``name``, beside the paper's ``paper`` top-1 if
    given); ``in_paper_table`` puts them in
    ``--methods all`` (the paper's Table 4). ``tiny`` holds the dotted overrides the method needs on the
    tests' tiny inputs (clips of 4 frames of 16x16, 16x16 spectrograms, batches of 2 to 8 samples).
    """

    name: str
    target: str
    title: str = ""
    rows: tuple[CompareRow, ...] | None = None
    in_paper_table: bool = False
    tiny: tuple[str, ...] = ()
    paper: float | None = None  # the paper's top-1 of the default row (Table 4)

    def load(self) -> type[Method]:
        module, _, attr = self.target.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        if cls.name != self.name:
            raise TypeError(f"{self.target}.name is {cls.name!r}, registered as {self.name!r}")
        return cls

    def compare_rows(self) -> tuple[CompareRow, ...]:
        if self.rows is not None:
            return self.rows
        return (CompareRow(self.name, self.title or self.name, paper=self.paper),)


REGISTRY: dict[str, MethodEntry] = {}


def register(entry: MethodEntry) -> MethodEntry:
    """Add ``entry`` to the registry (a method defined outside this package can register itself too)."""
    if entry.name in REGISTRY:
        raise ValueError(f"a method named {entry.name!r} is already registered")
    taken = {row.key for e in REGISTRY.values() for row in e.compare_rows()}
    clash = [row.key for row in entry.compare_rows() if row.key in taken]
    if clash:
        raise ValueError(f"method {entry.name!r}: compare row name(s) {', '.join(clash)} already taken")
    REGISTRY[entry.name] = entry
    return entry


# In the order of the paper's Table 4, then the methods beyond it.
for _entry in (
    MethodEntry(
        "supervised",
        "avcl.methods.supervised:Supervised",
        "Supervised",
        rows=(
            CompareRow("baseline-r", "Baseline-R", supervised="video", paper=60.4),
            CompareRow("baseline-a", "Baseline-A", supervised="audio", paper=52.9),
            CompareRow("baseline-r+a", "Baseline-R+A", supervised="both", paper=73.9),
        ),
        in_paper_table=True,
    ),
    MethodEntry("iic", "avcl.methods.iic:IIC", "IIC", paper=60.5, in_paper_table=True),
    MethodEntry("simclr", "avcl.methods.simclr:SimCLR", "SimCLR", paper=69.7, in_paper_table=True),
    MethodEntry(
        "moco", "avcl.methods.moco:MoCo", "MoCo", paper=68.2, in_paper_table=True, tiny=("method.moco_queue=8",)
    ),
    MethodEntry("byol", "avcl.methods.byol:BYOL", "BYOL", paper=73.3, in_paper_table=True),
    MethodEntry("simsiam", "avcl.methods.simsiam:SimSiam", "SimSiam", paper=72.9, in_paper_table=True),
    MethodEntry(
        "barlow",
        "avcl.methods.barlow:BarlowTwins",
        "Barlow Twins",
        paper=69.6,
        in_paper_table=True,
        tiny=("method.barlow_proj_dim=32",),
    ),
    MethodEntry(
        "avcl",
        "avcl.methods.avcl:AVCL",
        rows=(
            CompareRow("avcl", "AVCL", paper=75.6, note="avcl's default: losses on projector outputs"),
            CompareRow(
                "avcl-paper",
                "AVCL (paper literal)",
                tuple(f"{k}={v}" for k, v in {**PAPER_LITERAL, **PAPER_WEIGHTS}.items()),
                paper=75.6,
                note="the text to the letter: configs/avcl_paper_*.yaml",
            ),
        ),
        in_paper_table=True,
    ),
    MethodEntry(
        "tcgl",
        "avcl.methods.tcgl:TCGL",
        rows=(
            CompareRow(
                "tcgl",
                "TCGL (video only)",
                ("eval.modality=video", "data.stkd=true"),
                note="video features only, STKD at evaluation; the TCGL papers report no Kinetics-Sounds number",
            ),
        ),
        tiny=("data.clip_len=4", "tcgl.sets=4"),  # tuples of three 4-frame snippets, frame sets of 1 frame
    ),
):
    register(_entry)


def method_class(name: str) -> type[Method]:
    if name not in REGISTRY:
        raise UserError(f"unknown method '{name}'; available: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name].load()


def build_method(cfg: Config, num_classes: int | None = None) -> Method:
    return method_class(cfg.method.name)(cfg, num_classes=num_classes)


def __getattr__(name: str) -> Any:  # the classes, imported on first use
    if name == "METHODS":
        return {n: e.load() for n, e in REGISTRY.items()}
    if name == "Method":
        from avcl.methods.base import Method

        return Method
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["REGISTRY", "CompareRow", "MethodEntry", "METHODS", "Method", "build_method", "method_class", "register"]
