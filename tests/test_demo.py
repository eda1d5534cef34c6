"""``avcl demo``: one screen with random init, AVCL, AVCL paper-literal and supervised, each probed on
video, audio and both; the timings of every stage; the report folder."""

from __future__ import annotations

import json

from conftest import TINY, run_cli


def test_the_demo_prints_one_table_with_every_row_and_modality(tmp_path):
    out = tmp_path / "demo"
    proc = run_cli(
        "demo",
        "--out",
        str(out),
        "--classes",
        "3",
        "--per-class",
        "6",
        "--epochs",
        "1",
        *TINY,
        "eval.epochs=1",
        timeout=600,
    )
    screen = proc.stdout.strip().splitlines()
    assert len(screen) <= 25, proc.stdout  # one screen: stage lines, the table, notes, timings, report
    assert "| linear probe, frozen features | video | audio | both |" in screen
    for row in ("random init", "AVCL", "AVCL paper-literal", "supervised R+A"):
        line = next(s for s in screen if s.startswith(f"| {row} |"))
        assert line.count("|") == 5 and "n/a" not in line
    assert any(
        s.startswith("Timings (s, wall/CPU): synth ") and "pretrain_paper" in s and "probes" in s for s in screen
    )
    assert screen[-1] == f"Report: {out / 'report.md'}"
    assert "| frozen features, both modalities | kNN top-1 | retrieval R@1 | retrieval R@5 |" in screen
    assert sum(s.startswith(("| random init | ", "| AVCL | ")) for s in screen) == 4  # probes and neighbours
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["results"]) == {"random init", "AVCL", "AVCL paper-literal", "supervised R+A"}
    assert set(metrics["results"]["AVCL"][0]) == {"video", "audio", "both"}
    assert {"synth", "prepare", "pretrain", "pretrain_paper", "supervised", "probes", "neighbours"} == set(
        metrics["timings_s"]
    )
    assert any("gate" in o and "relu" in o for o in metrics["paper_literal_overrides"])
    saved = (out / "avcl_paper" / "seed0" / "config.yaml").read_text()
    assert "gate: relu" in saved and "standardize: false" in saved
    assert "gate: sigmoid" in (out / "avcl" / "seed0" / "config.yaml").read_text()
    assert (out / "report.md").is_file() and (out / "logs" / "pretrain.log").stat().st_size > 0
    assert (out / "probes" / "random_init" / "seed0" / "both" / "confusion.png").is_file()


def test_the_demo_with_seeds_and_a_diverged_run(tmp_path, monkeypatch, capsys):
    import avcl.engine.pretrain
    from avcl.demo import run_demo
    from avcl.engine.trainer import TrainingDiverged

    real = avcl.engine.pretrain.pretrain

    def pretrain(cfg, resume=False):  # the paper-literal run of seed 1 diverges
        if cfg.method.gate == "relu" and cfg.train.seed == 1:
            raise TrainingDiverged("loss is not finite at step 3 (epoch 1)")
        return real(cfg, resume)

    monkeypatch.setattr(avcl.engine.pretrain, "pretrain", pretrain)
    summary = run_demo(  # epochs=None: the preset's, here as overridden
        tmp_path / "demo",
        classes=3,
        per_class=6,
        epochs=None,
        supervised=False,
        seeds=2,
        overrides=(*TINY, "train.epochs=1"),
    )
    assert "configs/demo_cpu.yaml, 1 pretraining epochs." in (tmp_path / "demo" / "report.md").read_text()
    screen = capsys.readouterr().out
    assert "| supervised R+A |" not in screen and "mean ± std over 2 seeds" in screen
    line = next(s for s in screen.splitlines() if s.startswith("| random init |"))
    assert line.count("±") == 3
    line = next(s for s in screen.splitlines() if s.startswith("| AVCL paper-literal |"))
    assert line.count("(diverged: 1 of 2 seeds)") == 3 and "AVCL paper-literal: pretraining stopped, seed 1" in screen
    assert len(summary["results"]["AVCL"]) == 2 and len(summary["results"]["AVCL paper-literal"]) == 1
