"""The training engine: resume equivalence after a real kill, NaN stop, refusing to overwrite a run."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import AVCL as AVCL_CMD
from conftest import ROOT, TINY, run_cli

from avcl.config import load_config
from avcl.engine.checkpoint import load_checkpoint
from avcl.engine.logger import read_log
from avcl.engine.setup import make_optimizer, make_schedule, open_cache, seed_everything, split_dataset, split_loader
from avcl.engine.trainer import Trainer, TrainingDiverged
from avcl.methods.avcl import AVCL


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_a_killed_and_resumed_run_ends_with_the_same_weights(tiny_cache, tmp_path):
    common = ["pretrain", "--data", str(tiny_cache), *TINY, "train.epochs=3", "train.log_every=1"]
    run_cli(*common, "--out", str(tmp_path / "straight"))

    # The same run, killed with SIGKILL in the middle of its second epoch...
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [*AVCL_CMD, *common, "--out", str(out)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if any(r.get("kind") == "train" and r.get("epoch") == 2 for r in read_log(out / "log.jsonl")):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run finished before it could be interrupted"
    assert load_checkpoint(out / "last.pt")["epoch"] == 1

    # ...refuses to start over without --resume, and with it ends where the uninterrupted run ended.
    refused = run_cli(*common, "--out", str(out), check=False)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    run_cli(*common, "--out", str(out), "--resume")
    straight, resumed = _weights(tmp_path / "straight" / "last.pt"), _weights(out / "last.pt")
    assert straight.keys() == resumed.keys()
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=1e-6, msg=key)
    assert load_checkpoint(out / "last.pt")["epoch"] == 3
    for name in ("config.yaml", "log.jsonl", "loss_curves.png", "epoch-0003.pt"):
        assert (out / name).is_file(), name
    # the steps the killed run logged after its checkpoint were dropped: every step is logged once, as
    # in the uninterrupted run, with the same losses
    logs = {name: read_log(tmp_path / name / "log.jsonl") for name in ("straight", "killed")}
    steps = {name: [(r["kind"], r["step"]) for r in log] for name, log in logs.items()}
    assert steps["killed"] == steps["straight"]
    assert len(set(steps["killed"])) == len(steps["killed"])
    for a, b in zip(logs["straight"], logs["killed"]):
        assert a.get("loss") == pytest.approx(b.get("loss"), rel=1e-5, abs=1e-6), a["step"]


class ExplodingAVCL(AVCL):
    """AVCL whose loss turns NaN at a chosen step, as a diverging run's would."""

    def __init__(self, cfg, nan_at: int):
        super().__init__(cfg)
        self.nan_at, self.calls = nan_at, 0

    def forward(self, batch):
        out = super().forward(batch)
        self.calls += 1
        if self.calls == self.nan_at:
            out["loss"] = out["loss"] * float("nan")
        return out


def test_a_nan_loss_stops_the_run_naming_the_step_and_keeps_the_last_good_checkpoint(tiny_cache, tmp_path):
    cfg = load_config(None, [*TINY, f"data.root={tiny_cache}", f"train.out={tmp_path}", "train.epochs=3"])
    seed_everything(0)
    cache = open_cache(cfg)
    loader = split_loader(
        cfg,
        split_dataset(cfg, cache, "train", "train"),
        batch_size=4,
        shuffle=True,
        device=torch.device("cpu"),
        drop_last=True,
    )
    steps = len(loader)
    method = ExplodingAVCL(cfg, nan_at=steps + 2)  # the second step of the second epoch
    optimizer = make_optimizer(method.parameters(), "sgd", 0.01, 0.9, 5e-4)
    trainer = Trainer(
        cfg,
        method,
        loader,
        out=tmp_path,
        epochs=3,
        optimizer=optimizer,
        device=torch.device("cpu"),
        scheduler_factory=lambda o, s: make_schedule(o, "constant", 3, s),
    )
    with pytest.raises(TrainingDiverged) as err:
        trainer.fit()
    assert f"step {steps + 2}" in str(err.value) and "epoch 2" in str(err.value) and "last.pt" in str(err.value)
    good = load_checkpoint(tmp_path / "last.pt")
    assert good["epoch"] == 1 and good["step"] == steps
    assert all(torch.isfinite(v).all() for v in good["model"].values() if v.is_floating_point())


def test_too_few_videos_for_one_batch_is_a_clear_error(tiny_cache, tmp_path):
    proc = run_cli(
        "pretrain", "--data", str(tiny_cache), "--out", str(tmp_path), *TINY, "train.batch_size=64", check=False
    )
    assert proc.returncode == 2 and "fewer samples than one batch" in proc.stderr


def test_a_missing_cache_is_a_clear_error(tmp_path):
    proc = run_cli("pretrain", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run"), check=False)
    assert proc.returncode == 2 and "avcl prepare" in proc.stderr


def test_mixed_precision_on_the_cpu_is_refused_before_training(tiny_cache, tmp_path):
    proc = run_cli("pretrain", "--data", str(tiny_cache), "--out", str(tmp_path), *TINY, "train.amp=bf16", check=False)
    assert proc.returncode == 2 and "train.amp=bf16 needs a CUDA device" in proc.stderr
    assert not (tmp_path / "log.jsonl").exists()
