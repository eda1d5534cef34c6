"""Shared fixtures: one tiny synthetic benchmark, prepared once per test session.

Real mp4 files (H.264 + AAC, written through PyAV) and a real prepared cache on disk; tiny sizes so
the whole suite stays fast on two CPU cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
AVCL = [sys.executable, "-m", "avcl.cli"]

# Settings for runs on the tiny benchmark: 1/8-width encoders, 4-frame 32x32 clips, 32x32 spectrograms.
TINY = [
    "model.width=0.125",
    "data.clip_len=4",
    "data.crop_size=32",
    "data.audio_size=32",
    "data.audio_crop=28",
    "data.test_clips=2",
    "data.num_workers=0",
    "train.batch_size=4",
    "eval.batch_size=4",
    "train.progress=false",
    "train.tensorboard=false",
    "optim.lr=0.01",
]


def run_cli(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([*AVCL, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"avcl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def tiny_videos(tmp_path_factory) -> Path:
    from avcl.data.synth import generate_benchmark

    out = tmp_path_factory.mktemp("bench") / "videos"
    generate_benchmark(
        out,
        classes=4,
        per_class=6,
        seed=3,
        height=48,
        width=64,
        fps=25,
        min_duration=1.2,
        max_duration=1.6,
        workers=1,
        progress=False,
    )
    return out


@pytest.fixture(scope="session")
def tiny_cache(tiny_videos) -> Path:
    from avcl.data.prepare import prepare

    out = tiny_videos.parent / "data"
    prepare(tiny_videos, out, size=(36, 48), workers=1, min_frames=8, progress=False)
    return out


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(1)
