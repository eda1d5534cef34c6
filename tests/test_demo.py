"""``avcl demo``: one screen with random init, AVCL, AVCL paper-literal and supervised, each probed on
video, audio and both; the timings of every stage; the report folder."""
from __future__ import annotations

import json

from conftest import TINY, run_cli


def test_the_demo_prints_one_table_with_every_row_and_modality(tmp_path):
    out = tmp_path / "demo"
    proc = run_cli("demo", "--out", str(out), "--classes", "3", "--per-class", "6", "--epochs", "1",
                   *TINY, "eval.epochs=1", timeout=600)
    screen = proc.stdout.strip().splitlines()
    assert len(screen) <= 25, proc.stdout  # one screen: stage lines, the table, notes, timings, report
    assert "| linear probe, frozen features | video | audio | both |" in screen
    for row in ("random init", "AVCL", "AVCL paper-literal", "supervised R+A"):
        line = next(s for s in screen if s.startswith(f"| {row} |"))
        assert line.count("|") == 5 and "n/a" not in line
    assert any(s.startswith("Timings (s, wall/CPU): synth ") and "pretrain_paper" in s and "probes" in s for s in screen)
    assert screen[-1] == f"Report: {out / 'report.md'}"
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["results"]) == {"random init", "AVCL", "AVCL paper-literal", "supervised R+A"}
    assert set(metrics["results"]["AVCL"][0]) == {"video", "audio", "both"}
    assert {"synth", "prepare", "pretrain", "pretrain_paper", "supervised", "probes"} == set(metrics["timings_s"])
    assert any("gate" in o and "relu" in o for o in metrics["paper_literal_overrides"])
    saved = (out / "avcl_paper" / "seed0" / "config.yaml").read_text()
    assert "gate: relu" in saved and "standardize: false" in saved
    assert "gate: sigmoid" in (out / "avcl" / "seed0" / "config.yaml").read_text()
    assert (out / "report.md").is_file() and (out / "logs" / "pretrain.log").stat().st_size > 0
    assert (out / "probes" / "random_init" / "seed0" / "both" / "confusion.png").is_file()


def test_the_demo_without_paper_and_supervised_rows_and_with_seeds(tmp_path):
    out = tmp_path / "demo"
    proc = run_cli("demo", "--out", str(out), "--classes", "3", "--per-class", "6", "--epochs", "1",
                   "--no-paper", "--no-supervised", "--seeds", "2", *TINY, timeout=600)
    assert "| AVCL paper-literal |" not in proc.stdout and "| supervised R+A |" not in proc.stdout
    line = next(s for s in proc.stdout.splitlines() if s.startswith("| random init |"))
    assert line.count("±") == 3 and "mean ± std over 2 seeds" in proc.stdout
    assert len(json.loads((out / "metrics.json").read_text())["results"]["AVCL"]) == 2
