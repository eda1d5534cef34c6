"""The trainer under torchrun (2 gloo processes): what it logs and how it stops.

A log line holds the mean of the loss dict over the window's steps and over both ranks (the ranks'
local losses differ: each sees its own half of the global batch). A NaN loss on one rank alone stops
both ranks at the same check, naming the step, with the weights of before that step on both.
"""

from __future__ import annotations

import pytest
import torch
from ddp.harness import run_ddp

pytestmark = pytest.mark.distributed

NAN_STEP = 3


@pytest.fixture(scope="module")
def ranks(tiny_cache, tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("trainer-ddp")
    return run_ddp(
        "ddp.worker_trainer", "--data", str(tiny_cache), "--out-dir", str(out), "--nan-step", str(NAN_STEP), timeout=300
    )


def test_logged_losses_are_the_mean_over_the_window_and_both_ranks(ranks):
    r0, r1 = ranks
    assert r0["world"] == 2 and r1["log"] is None  # rank 0 alone writes the log
    steps = 2 * r0["steps_per_epoch"]
    assert len(r0["local"]) == len(r1["local"]) == steps
    lines = [r for r in r0["log"] if r["kind"] == "train"]
    assert [r["step"] for r in lines] == list(range(2, steps + 1, 2))
    assert any(a["loss"] != b["loss"] for a, b in zip(r0["local"], r1["local"]))  # the ranks' losses differ
    for line in lines:
        window = [
            r0["local"][line["step"] - 2],
            r0["local"][line["step"] - 1],
            r1["local"][line["step"] - 2],
            r1["local"][line["step"] - 1],
        ]
        for key in ("loss", *(k for k in window[0] if k != "loss")):
            assert line[key] == pytest.approx(sum(w[key] for w in window) / 4, rel=1e-6), (line["step"], key)
    # the epoch records are the epoch's means over both ranks
    for epoch in (1, 2):
        record = next(r for r in r0["log"] if r["kind"] == "epoch" and r["epoch"] == epoch)
        rows = slice((epoch - 1) * r0["steps_per_epoch"], epoch * r0["steps_per_epoch"])
        local = [x["loss"] for x in r0["local"][rows] + r1["local"][rows]]
        assert record["loss"] == pytest.approx(sum(local) / len(local), rel=1e-6)


def test_a_nan_loss_on_one_rank_stops_both_at_the_same_step_with_the_weights_of_before(ranks):
    for rank, r in enumerate(ranks):
        assert r["error"] is not None and f"loss is not finite at step {NAN_STEP} " in r["error"], rank
        assert r["step"] == 4  # the check at the second log line, step 4
    before = ranks[1]["before_nan"]  # taken in the forward, after DDP broadcast rank 0's buffers
    assert before is not None
    for key, value in before.items():
        assert torch.equal(ranks[0]["weights"][key], value), key  # rank 0's state is what is checkpointed
    # rank 1's BatchNorm statistics are its own from before DDP's broadcast, replaced at every forward
    for key in (k for k in before if "running_" not in k and "num_batches_tracked" not in k):
        assert torch.equal(ranks[1]["weights"][key], before[key]), key
