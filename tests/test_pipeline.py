"""The command line end to end on a tiny generated benchmark: synth -> prepare -> pretrain -> finetune
-> test, the linear probe, the Python API, and pretraining under torchrun with two gloo processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from conftest import ROOT, TINY, run_cli

from avcl.engine.checkpoint import load_checkpoint


def test_cli_from_synth_through_pretrain_to_video_level_test(tmp_path):
    videos, data = tmp_path / "videos", tmp_path / "data"
    run_cli(
        "synth",
        str(videos),
        "--classes",
        "3",
        "--per-class",
        "4",
        "--seed",
        "5",
        "--height",
        "48",
        "--width",
        "64",
        "--min-duration",
        "1.2",
        "--max-duration",
        "1.4",
        "--workers",
        "1",
    )
    run_cli("prepare", str(videos), str(data), "--size", "36x48", "--workers", "1", "--min-frames", "8")
    run_cli(
        "pretrain",
        "--config",
        "configs/demo_cpu.yaml",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "pre"),
        *TINY,
        "train.epochs=2",
    )
    pre = load_checkpoint(tmp_path / "pre" / "last.pt")
    assert pre["kind"] == "pretrain" and pre["epoch"] == 2 and pre["meta"]["num_classes"] == 3
    assert (tmp_path / "pre" / "loss_curves.png").stat().st_size > 0

    out = run_cli(
        "finetune",
        "--checkpoint",
        str(tmp_path / "pre"),
        "--out",
        str(tmp_path / "ft"),
        "eval.epochs=2",
        "eval.lr=0.01",
    )
    assert "video-level test top-1" in out.stdout
    result = json.loads((tmp_path / "ft" / "result.json").read_text())
    assert 0 <= result["test"]["top1"] <= result["test"]["top5"] <= 100
    assert result["test"]["clips_per_video"] == 2 and (tmp_path / "ft" / "test" / "confusion.png").is_file()

    out = run_cli("test", "--checkpoint", str(tmp_path / "ft"), "--out", str(tmp_path / "t"), "--split", "val")
    metrics = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert metrics["split"] == "val" and len(metrics["confusion"]) == 3 and (tmp_path / "t" / "confusion.png").is_file()

    run_cli("linear", "--checkpoint", str(tmp_path / "pre"), "--out", str(tmp_path / "lin"), "eval.linear_epochs=5")
    metrics = json.loads((tmp_path / "lin" / "metrics.json").read_text())
    assert (
        metrics["modality"] == "both"
        and metrics["feature_dim"] == 128
        and (tmp_path / "lin" / "confusion.png").is_file()
    )

    refused = run_cli("test", "--checkpoint", str(tmp_path / "pre"), check=False)
    assert refused.returncode == 2 and "avcl linear" in refused.stderr


def test_load_encoders_and_the_linear_probe_of_each_modality(tiny_cache, tmp_path):
    import avcl
    from avcl.api import method_from_checkpoint
    from avcl.config import load_config
    from avcl.evaluation.probe import linear_probe

    run_cli("pretrain", "--data", str(tiny_cache), "--out", str(tmp_path), *TINY, "train.epochs=1")
    video_encoder, audio_encoder = avcl.load_encoders(tmp_path / "last.pt")
    with torch.no_grad():
        v = video_encoder(torch.randn(2, 3, 4, 32, 32))
        a = audio_encoder(torch.randn(2, 1, 28, 28))
    assert v.shape == a.shape == (2, 64)
    saved = load_checkpoint(tmp_path / "last.pt")["model"]
    assert torch.equal(video_encoder.state_dict()["stem.0.weight"], saved["video_encoder.stem.0.weight"])

    cfg = load_config(None, [*TINY, f"data.root={tiny_cache}", "eval.linear_epochs=5"])
    method = method_from_checkpoint(tmp_path / "last.pt")
    for modality, dim in (("video", 64), ("audio", 64), ("both", 128)):
        metrics = linear_probe(method, cfg, None, modality=modality)
        assert metrics["modality"] == modality and metrics["feature_dim"] == dim and 0 <= metrics["top1"] <= 100


def test_pretraining_under_torchrun_with_two_processes(tiny_cache, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--standalone",
        "-m",
        "avcl.cli",
        "pretrain",
        "--data",
        str(tiny_cache),
        "--out",
        str(tmp_path),
        *TINY,
        "train.batch_size=2",
        "train.epochs=1",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 process(es)" in proc.stdout
    ckpt = load_checkpoint(tmp_path / "last.pt")
    # 2 samples per process per step, 2 processes: the global batch is 4.
    assert ckpt["epoch"] == 1 and ckpt["step"] == ckpt["meta"]["train_videos"] // 4
