"""progress(): a tqdm bar on a terminal, a few plain lines in a log."""

from __future__ import annotations

import io

from avcl import progress as P


def test_log_form_prints_a_few_lines_not_one_per_update(monkeypatch, capsys):
    monkeypatch.setenv("AVCL_PROGRESS", "log")
    bar = P.progress(total=1000, desc="train epoch 1/1", unit="step")
    assert isinstance(bar, P.LogBar)
    for _ in range(1000):
        bar.set_postfix(loss="0.1234")
        bar.update(1)
    bar.close()
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "\r" not in err
    assert lines[0].startswith("train epoch 1/1: done 1000/1000 step") and "loss=0.1234" in lines[0]


def test_log_form_prints_about_once_per_interval_and_nothing_for_transient_bars(monkeypatch):
    out = io.StringIO()
    clock = iter(range(0, 10_000, 7))  # each call: 7 s later
    monkeypatch.setattr(P.time, "monotonic", lambda: next(clock))
    bar = P.LogBar(total=100, desc="prepare", unit="video", interval=60.0, file=out)
    for _ in range(100):
        bar.update()
    bar.close()
    lines = out.getvalue().splitlines()
    assert 10 <= len(lines) <= 13 and lines[-1].startswith("prepare: done 100/100")
    quiet = P.LogBar(range(5), desc="eval", leave=False, interval=60.0, file=out)
    assert list(quiet) == [0, 1, 2, 3, 4]


def test_off_and_disabled_bars_print_nothing(monkeypatch, capsys):
    monkeypatch.setenv("AVCL_PROGRESS", "off")
    assert list(P.progress(range(3), desc="x")) == [0, 1, 2]
    monkeypatch.setenv("AVCL_PROGRESS", "bar")
    with P.progress(total=3, desc="y", disable=True) as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""


def test_terminal_gets_tqdm(monkeypatch):
    monkeypatch.setenv("AVCL_PROGRESS", "bar")
    bar = P.progress(total=2, desc="z", file=io.StringIO())
    assert type(bar).__name__ == "tqdm"
    bar.close()
