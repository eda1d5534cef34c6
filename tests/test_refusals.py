"""Damaged checkpoints, pickled code, a changed configuration on resume and missing shards are refused by
the command line with one line on stderr, never a traceback, and never trained on."""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import TINY, run_cli
from test_checkpoint import flip_middle, truncate

from avcl.engine.checkpoint import load_checkpoint
from avcl.errors import UserError


@pytest.fixture(scope="module")
def pretrained(tiny_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrained") / "run"
    run_cli(
        "pretrain", "--data", str(tiny_cache), "--out", str(out), *TINY, "train.epochs=2", "train.max_steps_per_epoch=2"
    )
    return out


def _one_line_error(proc) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr


@pytest.mark.parametrize("damage", [flip_middle, truncate], ids=["flipped", "truncated"])
def test_every_loading_path_refuses_a_damaged_checkpoint(pretrained, tiny_cache, tmp_path, damage):
    import avcl

    run = tmp_path / "run"
    shutil.copytree(pretrained, run)
    last = run / "last.pt"
    damage(last)
    flip_middle(run / "epoch-0002.pt")  # the newest epoch file is damaged as well
    expected = f"{last}: damaged checkpoint, refused"
    hint = f"newest intact checkpoint beside it is {run / 'epoch-0001.pt'}"
    commands = [
        ("pretrain", "--data", str(tiny_cache), "--out", str(run), "--resume", *TINY, "train.epochs=3"),
        ("linear", "--checkpoint", str(last), "--out", str(tmp_path / "lin")),
        ("finetune", "--checkpoint", str(last), "--out", str(tmp_path / "ft")),
        ("test", "--checkpoint", str(last), "--out", str(tmp_path / "test")),
    ]
    for command in commands:
        stderr = _one_line_error(run_cli(*command, check=False))
        assert f"avcl {command[0]}: error: {expected}" in stderr and hint in stderr, stderr
    with pytest.raises(UserError, match=f"{expected}.*{hint}"):
        avcl.load_encoders(last)
    assert not (tmp_path / "lin").exists() and not (tmp_path / "ft").exists()
    assert load_checkpoint(run / "epoch-0001.pt")["epoch"] == 1  # nothing was written over the intact one
    assert not (run / "epoch-0003.pt").exists()


def test_pickled_code_is_refused_at_the_command_line(tmp_path):
    import argparse

    evil = tmp_path / "evil.pt"
    torch.save({"config": argparse.Namespace(x=1), "model": {}}, evil)
    stderr = _one_line_error(run_cli("linear", "--checkpoint", str(evil), check=False))
    assert "avcl does not load pickled code" in stderr and "weights_only" not in stderr


def test_resume_says_what_differs_and_which_value_wins(pretrained, tiny_cache, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(pretrained, run)
    common = ("pretrain", "--data", str(tiny_cache), "--out", str(run), "--resume", *TINY)
    missing = _one_line_error(
        run_cli(
            "pretrain",
            "--data",
            str(tiny_cache),
            "--out",
            str(run),
            "--resume",
            str(run / "epoch-0009.pt"),
            *TINY,
            check=False,
        )
    )
    assert f"{run / 'epoch-0009.pt'}: no checkpoint there to resume from" in missing
    stderr = _one_line_error(run_cli(*common, "train.epochs=3", "model.width=0.25", "train.seed=4", check=False))
    assert "differs from the checkpoint's in model.width: 0.125 -> 0.25, train.seed: 0 -> 4" in stderr
    assert "train.epochs" not in stderr  # a key that may change is not what refuses

    proc = run_cli(*common, "train.epochs=3", "optim.lr=0.005", "train.max_steps_per_epoch=2")
    assert (
        "configuration changed since the checkpoint, the new values win: optim.lr: 0.01 -> 0.005, train.epochs: 2 -> 3"
    ) in proc.stdout
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["epoch"] == 3 and ckpt["config"]["train"]["epochs"] == 3
    assert ckpt["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.005)  # the new rate was used


def test_a_missing_shard_under_loader_workers_is_one_line(tiny_cache, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_cache, data)
    shard = sorted((data / "shards").iterdir())[0]
    shard.unlink()
    proc = run_cli(
        "pretrain",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "run"),
        *TINY,
        "data.num_workers=2",
        "train.epochs=1",
        check=False,
    )
    stderr = _one_line_error(proc)
    assert f"{shard}: missing" in stderr and "Caught" not in stderr


def test_a_cut_shard_is_refused_when_the_dataset_is_built(tiny_cache, tmp_path):
    from avcl.config import DataConfig
    from avcl.data.cache import CacheError
    from avcl.data.datasets import PreparedDataset

    data = tmp_path / "data"
    shutil.copytree(tiny_cache, data)
    shard = sorted((data / "shards").iterdir())[0]
    shard.write_bytes(shard.read_bytes()[:1000])
    with pytest.raises(CacheError, match=f"{shard}: holds 1000 bytes but the index refers to byte"):
        PreparedDataset(data, None, DataConfig(clip_len=4, crop_size=32, audio_size=32, audio_crop=28))
