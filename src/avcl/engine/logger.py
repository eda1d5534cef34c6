"""Run logs: JSON lines (always) and TensorBoard (optional), written by the main process only."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from avcl.fileio import append_jsonl, atomic_write, read_jsonl, scan_jsonl


class RunLogger:
    """Appends one JSON object per record to ``<out>/log.jsonl`` and mirrors scalars to TensorBoard."""

    def __init__(self, out: str | Path, tensorboard: bool = True, enabled: bool = True):
        self.enabled = enabled
        self.path = Path(out) / "log.jsonl"
        self._tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(Path(out) / "tensorboard"))
            except ImportError:  # tensorboard is optional at run time
                self._tb = None

    def log(self, kind: str, step: int, **values: Any) -> None:
        if not self.enabled:
            return
        record = {"kind": kind, "step": step, "time": time.time(), **values}
        with self.path.open("a") as fh:
            append_jsonl(fh, record, durable=False, default=float)
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self._tb.add_scalar(f"{kind}/{key}", value, step)

    def drop_after(self, step: int) -> int:
        """Removes the records past ``step`` (and a cut-off last line) from ``log.jsonl``; returns how many
        went. A run resumed from the checkpoint of ``step`` calls it first, so that the steps a killed
        run logged after its last checkpoint, trained again, are not logged twice."""
        if not self.enabled or not self.path.is_file():
            return 0
        records, torn = scan_jsonl(self.path)
        kept = [record for record in records if record.get("step", 0) <= step]
        dropped = len(records) - len(kept) + torn
        if dropped:
            atomic_write(self.path, "".join(json.dumps(record, separators=(",", ":")) + "\n" for record in kept))
        return dropped

    def close(self) -> None:
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()


def read_log(path: str | Path) -> list[dict]:
    """Records of a ``log.jsonl`` (:func:`avcl.fileio.read_jsonl`): a cut-off last line (a killed run) is
    skipped, a damaged line before it raises :class:`avcl.fileio.JsonLinesError`."""
    return read_jsonl(path)
