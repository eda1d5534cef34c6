"""Progress bars that stay readable in logs: ``progress(...)`` is tqdm on a terminal, and a few summary
lines when stderr goes to a file or a CI log (no line per update, no carriage returns).

- On a terminal (``sys.stderr.isatty()``): a tqdm bar updating in place.
- Otherwise: one line when a bar has run ``LOG_INTERVAL`` seconds since its last line (so a long bar
  prints about once a minute, a short one nothing while it runs), and one closing line with the count,
  the time, the rate and the last postfix (bars made with ``leave=False`` close without a line).
- ``AVCL_PROGRESS=bar|log|off`` forces one of the three; tqdm missing: the log form.
"""

from __future__ import annotations

import os
import sys
import time

LOG_INTERVAL = 60.0  # seconds between two lines of one bar in log form


def _mode() -> str:
    mode = os.environ.get("AVCL_PROGRESS", "").strip().lower()
    if mode in ("bar", "log", "off"):
        return mode
    try:
        return "bar" if sys.stderr.isatty() else "log"
    except (AttributeError, ValueError):  # replaced or closed stderr
        return "log"


def progress(
    iterable=None,
    *,
    total: int | None = None,
    desc: str | None = None,
    unit: str = "it",
    disable: bool = False,
    leave: bool = True,
    initial: int = 0,
    **kwargs,
):
    """A progress bar with tqdm's interface (iterate it, or ``update``, ``set_postfix``, ``close``, ``with``)."""
    mode = "off" if disable else _mode()
    if mode == "bar":
        try:
            from tqdm import tqdm
        except ImportError:
            mode = "log"
        else:
            kwargs.setdefault("dynamic_ncols", True)
            return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, initial=initial, **kwargs)
    return LogBar(iterable, total=total, desc=desc, unit=unit, leave=leave, initial=initial, quiet=mode == "off")


def write(message: str) -> None:
    """Print a line without breaking a bar on a terminal (``tqdm.write``), plainly elsewhere."""
    if _mode() == "bar":
        try:
            from tqdm import tqdm

            tqdm.write(message)
            return
        except ImportError:
            pass
    print(message, flush=True)


class LogBar:
    """The log form of a bar: the tqdm calls avcl makes, printing a few plain lines to stderr."""

    def __init__(
        self,
        iterable=None,
        *,
        total=None,
        desc=None,
        unit="it",
        leave=True,
        initial=0,
        quiet=False,
        interval: float | None = None,
        file=None,
    ) -> None:
        self.iterable = iterable
        self.total = total if total is not None or iterable is None else _len(iterable)
        self.desc, self.unit, self.leave, self.quiet = desc or "", unit, leave, quiet
        self.n = self.initial = initial
        self.interval = LOG_INTERVAL if interval is None else interval
        self.file = file
        self.postfix = ""
        self.start = self.last = time.monotonic()
        self.closed = False
        self.lines = 0

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        return self.total or 0

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if not self.quiet and now - self.last >= self.interval:
            self._line(now)

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:
        pass

    def write(self, message: str) -> None:
        print(message, file=self.file or sys.stderr, flush=True)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.quiet and self.leave:
            self._line(time.monotonic(), done=True)

    def _line(self, now: float, done: bool = False) -> None:
        self.last = now
        self.lines += 1
        elapsed = now - self.start
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else 0.0
        head = f"{self.desc}: " if self.desc else ""
        tail = f", {self.postfix}" if self.postfix else ""
        state = "done" if done else "at"
        print(
            f"{head}{state} {count} {self.unit} in {elapsed:.0f} s ({rate:.3g} {self.unit}/s){tail}",
            file=self.file or sys.stderr,
            flush=True,
        )


def _len(iterable) -> int | None:
    try:
        return len(iterable)
    except TypeError:
        return None
