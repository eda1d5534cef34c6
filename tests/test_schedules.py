"""Learning-rate schedules as the runs see them: fine-tuning's warm-up and milestones (``eval.*``), and
``optim.schedule=plateau`` against torch's ReduceLROnPlateau, its state kept across a resume."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY
from torch import nn

from avcl.config import load_config
from avcl.engine.logger import read_log
from avcl.engine.run import Recipe
from avcl.engine.setup import make_optimizer, make_schedule
from avcl.engine.trainer import Trainer


def test_finetuning_warms_up_and_steps_at_its_milestones(tiny_cache, tmp_path):
    from avcl.engine.finetune import finetune

    cfg = load_config(
        None,
        [
            *TINY,
            f"data.root={tiny_cache}",
            "train.log_every=1",
            "eval.modality=video",
            "eval.epochs=3",
            "eval.lr=0.02",
            "eval.warmup_epochs=1",
            "eval.schedule=step",
            "eval.step_epochs=[2]",
            "eval.step_gamma=0.1",
        ],
    )
    _, result = finetune(cfg, tmp_path / "ft")
    assert result["epochs"] == 3
    train = [r for r in read_log(tmp_path / "ft" / "log.jsonl") if r["kind"] == "train"]
    steps = sum(r["epoch"] == 1 for r in train)  # steps per epoch
    assert steps > 1 and len(train) == 3 * steps
    # the rate logged after step k is the one of step k + 1: warm-up over epoch 1, then 0.02, then x0.1 from epoch 3
    for r in train:
        k = r["step"]
        expected = 0.02 * ((k + 1) / steps if k < steps else 0.1 if k >= 2 * steps else 1.0)
        assert r["lr"] == pytest.approx(expected, rel=1e-6), r
    assert train[-1]["lr"] == pytest.approx(0.002)


def test_finetuning_reads_its_optimiser_from_the_eval_section():
    cfg = load_config(None, [*TINY, "eval.optimizer=adamw", "eval.lr=0.003", "eval.weight_decay=0.01"])
    recipe = Recipe.finetuning(cfg)
    optimizer = recipe.make_optimizer(nn.Linear(2, 2).parameters())
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.param_groups[0]["lr"] == 0.003 and optimizer.param_groups[0]["weight_decay"] == 0.01
    assert isinstance(
        Recipe.finetuning(load_config(None, TINY)).make_optimizer([nn.Parameter(torch.ones(1))]), torch.optim.SGD
    )
    with pytest.raises(Exception, match="eval.optimizer"):
        load_config(None, ["eval.optimizer=lamb"])


LOSSES = [1.0, 1.0, 1.0, 0.5, 0.5, 0.6, 0.5, 0.5, 0.2]  # one value per epoch


def _torch_plateau_lrs(losses, patience, lr=0.1):
    """The learning rate of each epoch under torch's ReduceLROnPlateau stepped with the previous epochs."""
    opt = torch.optim.SGD([nn.Parameter(torch.ones(1))], lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.1, patience=patience)
    lrs = []
    for value in losses:
        lrs.append(opt.param_groups[0]["lr"])
        sched.step(value)
    return lrs


@pytest.mark.parametrize("patience", [0, 1, 2])
def test_plateau_reduces_as_reduce_lr_on_plateau(patience):
    opt = torch.optim.SGD([nn.Parameter(torch.ones(1))], lr=0.1)
    steps = 3
    schedule = make_schedule(opt, "plateau", len(LOSSES), steps, gamma=0.1, patience=patience)
    lrs = []
    for value in LOSSES:
        lrs.append(opt.param_groups[0]["lr"])
        for _ in range(steps):
            opt.step()
            schedule.step()
            assert opt.param_groups[0]["lr"] == pytest.approx(lrs[-1])  # no change within an epoch
        schedule.epoch_end(value)
    assert lrs == pytest.approx(_torch_plateau_lrs(LOSSES, patience))
    assert min(lrs) < 0.1  # it did reduce


class Scripted(nn.Module):
    """A method whose loss is ``LOSSES[epoch]`` whatever its weights: the plateau decides on known values."""

    name = "scripted"
    uses_audio = False

    def __init__(self, steps_per_epoch: int):
        super().__init__()
        self.w = nn.Parameter(torch.ones(3))
        self.steps_per_epoch, self.calls = steps_per_epoch, 0

    def forward(self, batch):
        value = LOSSES[self.calls // self.steps_per_epoch]
        self.calls += 1
        return {"loss": (self.w * batch["x"]).sum() * 0 + value}

    def on_step_end(self):
        pass


def _trainer(cfg, out, epochs, steps=2):
    method = Scripted(steps)
    loader = [{"x": torch.ones(3)} for _ in range(steps)]
    optimizer = make_optimizer(method.parameters(), "sgd", 0.1, 0.9, 5e-4)
    schedule = lambda o, s: make_schedule(o, "plateau", epochs, s, gamma=0.1, patience=1)  # noqa: E731
    return Trainer(
        cfg,
        method,
        loader,
        out=out,
        epochs=epochs,
        optimizer=optimizer,
        scheduler_factory=schedule,
        device=torch.device("cpu"),
    )


def test_plateau_monitors_the_training_loss_and_survives_resume(tmp_path):
    cfg = load_config(None, [*TINY, "train.log_every=1"])
    epochs = len(LOSSES)
    straight = _trainer(cfg, tmp_path / "straight", epochs)
    straight.fit()

    first = _trainer(cfg, tmp_path / "resumed", 5)  # stops after 5 epochs, in the middle of a plateau
    first.fit()
    assert first.scheduler.factor.bad_epochs == 1 and first.scheduler.factor.scale == pytest.approx(0.1)
    resumed = _trainer(cfg, tmp_path / "resumed", epochs)
    resumed.method.calls = 5 * 2  # the script goes on where the first part stopped
    assert resumed.resume()
    assert resumed.scheduler.factor.plateau_state() == first.scheduler.factor.plateau_state()
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(first.optimizer.param_groups[0]["lr"])
    resumed.fit()

    def epoch_lrs(name):
        log = [r for r in read_log(tmp_path / name / "log.jsonl") if r["kind"] == "train"]
        return [r["lr"] for r in log if r["step"] % 2 == 1]  # logged after each epoch's first step

    assert epoch_lrs("resumed") == pytest.approx(epoch_lrs("straight"))
    assert epoch_lrs("straight") == pytest.approx(_torch_plateau_lrs(LOSSES, 1))
    assert resumed.scheduler.factor.plateau_state() == straight.scheduler.factor.plateau_state()
