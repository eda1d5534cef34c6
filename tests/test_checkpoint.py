"""Checkpoints are written atomically and loaded with weights_only=True."""
import argparse
import collections
import os

import pytest
import torch

from avcl.engine.checkpoint import load_checkpoint, save_checkpoint
from avcl.errors import UserError


def test_round_trip_of_tensors_numbers_and_nested_dicts(tmp_path):
    state = {"model": {"w": torch.arange(6.0).view(2, 3)}, "epoch": 3, "history": [{"loss": 1.5}], "rng": torch.get_rng_state()}
    path = save_checkpoint(state, tmp_path / "run" / "last.pt")
    back = load_checkpoint(path)
    assert torch.equal(back["model"]["w"], state["model"]["w"]) and back["epoch"] == 3 and back["history"] == [{"loss": 1.5}]
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
