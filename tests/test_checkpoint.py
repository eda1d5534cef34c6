"""Checkpoints are written atomically, carry a sha256 checked on every load, and load with weights_only=True."""

import argparse
import collections
import os

import pytest
import torch

from avcl.engine.checkpoint import load_checkpoint, save_checkpoint
from avcl.errors import UserError


def test_round_trip_of_tensors_numbers_and_nested_dicts(tmp_path):
    state = {
        "model": {"w": torch.arange(6.0).view(2, 3)},
        "epoch": 3,
        "history": [{"loss": 1.5}],
        "rng": torch.get_rng_state(),
    }
    path = save_checkpoint(state, tmp_path / "run" / "last.pt")
    back = load_checkpoint(path)
    assert (
        torch.equal(back["model"]["w"], state["model"]["w"])
        and back["epoch"] == 3
        and back["history"] == [{"loss": 1.5}]
    )
    assert load_checkpoint(tmp_path / "run")["epoch"] == 3  # a run folder resolves to its checkpoint


def test_no_temporary_file_is_left_and_an_old_file_survives_a_failed_save(tmp_path):
    path = save_checkpoint({"epoch": 1}, tmp_path / "last.pt")

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError):
        save_checkpoint({"epoch": 2, "bad": Unpicklable()}, path)
    assert load_checkpoint(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["last.pt"]


def test_loading_refuses_code_objects_and_names_the_file(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"fn": collections.OrderedDict, "obj": argparse.Namespace(x=1)}, evil)  # not loadable as weights
    with pytest.raises(UserError) as err:
        load_checkpoint(evil)
    assert str(evil) in str(err.value)
    torn = tmp_path / "torn.pt"
    save_checkpoint({"epoch": 1, "w": torch.zeros(1000)}, torn)
    torn.write_bytes(torn.read_bytes()[:100])
    with pytest.raises(UserError, match="torn.pt"):
        load_checkpoint(torn)
    with pytest.raises(UserError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


# -- integrity: a sha256 trailer checked on every load ----------------------------------------------------
def _state(epoch: int) -> dict:
    return {"epoch": epoch, "model": {"w": torch.randn(64, 1024)}, "config": {"train": {"epochs": 5}}}


def flip_middle(path, count: int = 4096) -> None:
    """Invert ``count`` bytes in the middle of ``path``; its size is unchanged."""
    data = bytearray(path.read_bytes())
    start = len(data) // 2 - count // 2
    data[start : start + count] = bytes(b ^ 0xFF for b in data[start : start + count])
    path.write_bytes(bytes(data))


def truncate(path, keep: float = 0.7) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_the_file_is_still_a_plain_pytorch_file_with_a_48_byte_trailer(tmp_path):
    from avcl.engine.checkpoint import MAGIC, TRAILER_BYTES

    path = save_checkpoint(_state(1), tmp_path / "last.pt")
    data = path.read_bytes()
    assert data[-TRAILER_BYTES:].startswith(MAGIC) and TRAILER_BYTES == 48
    plain = torch.load(path, weights_only=True)  # other code can read it without avcl
    assert torch.equal(plain["model"]["w"], load_checkpoint(path)["model"]["w"])


@pytest.mark.parametrize("damage", [flip_middle, truncate], ids=["flipped", "truncated"])
def test_a_damaged_checkpoint_is_refused_naming_the_newest_intact_epoch_file(tmp_path, damage):
    for epoch in (1, 2, 3):
        save_checkpoint(_state(epoch), tmp_path / f"epoch-{epoch:04d}.pt")
    save_checkpoint(_state(3), tmp_path / "last.pt")
    damage(tmp_path / "last.pt")
    flip_middle(tmp_path / "epoch-0003.pt")  # the newest epoch file is damaged too: the hint skips it
    with pytest.raises(UserError) as err:
        load_checkpoint(tmp_path / "last.pt")
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{tmp_path / 'last.pt'}: damaged checkpoint")
    assert f"newest intact checkpoint beside it is {tmp_path / 'epoch-0002.pt'}" in message
    for name in ("epoch-0001.pt", "epoch-0002.pt", "epoch-0003.pt"):
        (tmp_path / name).unlink()
    with pytest.raises(UserError, match="no intact epoch-"):
        load_checkpoint(tmp_path / "last.pt")


def test_flipping_a_single_byte_anywhere_is_caught(tmp_path):
    path = save_checkpoint(_state(1), tmp_path / "last.pt")
    good = path.read_bytes()
    for where in (10, len(good) // 3, len(good) - 60, len(good) - 5):  # header, tensor data, zip directory, trailer
        data = bytearray(good)
        data[where] ^= 0x01
        path.write_bytes(bytes(data))
        with pytest.raises(UserError, match="damaged checkpoint"):
            load_checkpoint(path)


def test_a_pytorch_file_without_the_trailer_is_refused(tmp_path):
    old = tmp_path / "old.pt"
    torch.save(_state(1), old)  # the format of avcl before checkpoints carried a hash
    with pytest.raises(UserError, match=r"old.pt: a PyTorch file without avcl's sha256 trailer"):
        load_checkpoint(old)
    save_checkpoint(torch.load(old, weights_only=True), old)  # what the message suggests for a trusted file
    assert load_checkpoint(old)["epoch"] == 1
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"hello" * 100)
    with pytest.raises(UserError, match="not a PyTorch file"):
        load_checkpoint(junk)


def test_pickled_code_is_refused_without_pytorchs_advice(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"args": argparse.Namespace(lr=0.1)}, foreign)  # e.g. a checkpoint of another project
    hashed = save_checkpoint({"args": argparse.Namespace(lr=0.1)}, tmp_path / "hashed.pt")  # intact, still code
    for path in (foreign, hashed):
        with pytest.raises(UserError) as err:
            load_checkpoint(path)
        message = str(err.value)
        assert message.startswith(
            f"{path}: a PyTorch file holding pickled Python objects (it refers to argparse.Namespace)"
        )
        assert "avcl does not load pickled code" in message
        assert "weights_only" not in message and "\n" not in message


def test_resume_differences_sort_keys_into_new_value_wins_and_refused():
    from avcl.config import Config
    from avcl.engine.trainer import resume_differences

    saved = Config().to_dict()
    new = Config()
    new.train.epochs, new.optim.lr, new.train.out = 10, 0.5, "elsewhere"
    new.eval.batch_size = 3  # not read by pretraining
    assert resume_differences(saved, new.to_dict(), "pretrain") == (
        {
            "eval.batch_size": (16, 3),
            "optim.lr": (0.001, 0.5),
            "train.epochs": (300, 10),
            "train.out": ("runs/pretrain", "elsewhere"),
        },
        {},
    )
    new.model.width, new.train.seed = 0.5, 7
    changed, refused = resume_differences(saved, new.to_dict(), "pretrain")
    assert refused == {"model.width": (1.0, 0.5), "train.seed": (0, 7)}
    _, refused = resume_differences(saved, new.to_dict(), "finetune")
    assert "eval.batch_size" in refused and "train.epochs" not in refused
