"""The guarded optimisation step: a non-finite loss or gradient changes nothing, without a host sync.

SGD's weight decay and momentum move the weights even when the gradients are zero, so the guard
restores parameters, buffers and optimiser state from a snapshot on the device; these tests compare
everything bit for bit with the state before the step.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from avcl.config import Config
from avcl.engine.logger import RunLogger, read_log
from avcl.engine.setup import make_optimizer
from avcl.engine.trainer import StepGuard, optimisation_step

CPU = torch.device("cpu")


class _InfiniteGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * math.inf


class Tiny(nn.Module):
    """A linear layer, BatchNorm (running statistics) and an EMA buffer updated in ``on_step_end``."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
        self.register_buffer("ema", torch.zeros(3, 6))
        self.poison = None  # "loss" | "grad" | None

    def forward(self, batch):
        h = self.net[0](batch["x"])
        if self.poison == "grad":  # a finite loss with infinite gradients (as an fp16 overflow would give)
            h = _InfiniteGradient.apply(h)
        y = self.net[3](self.net[2](self.net[1](h)))
        loss = (y - batch["y"]).pow(2).mean()
        if self.poison == "loss":
            loss = loss * math.inf
        return {"loss": loss, "mse": loss.detach()}

    def on_step_end(self):
        with torch.no_grad():
            self.ema.mul_(0.9).add_(self.net[3].weight.detach()[:, :3].repeat(1, 2), alpha=0.1)


def _batch(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(5, 6, generator=g), "y": torch.randn(5, 3, generator=g)}


def _state(model, optimizer) -> dict:
    return copy.deepcopy({"model": model.state_dict(), "optimizer": optimizer.state_dict()})


def _assert_same(a: dict, b: dict) -> None:
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        for k in sa[i]:
            assert torch.equal(torch.as_tensor(sa[i][k]), torch.as_tensor(sb[i][k])), (i, k)


@pytest.mark.parametrize("poison", ["loss", "grad"])
@pytest.mark.parametrize("optim", ["sgd", "adamw"])
@pytest.mark.parametrize("clip", [0.0, 1.0])
@pytest.mark.parametrize("device_side", [True, False], ids=["device_side", "host_side"])
def test_a_non_finite_step_leaves_weights_buffers_and_optimiser_state_as_they_were(poison, optim, clip, device_side):
    # device_side: what CUDA runs (no host sync), checked here on the CPU; host_side: what the CPU runs
    cfg = Config()
    cfg.train.grad_clip = clip
    model = Tiny().train()
    optimizer = make_optimizer(model.parameters(), optim, 0.1, 0.9, 0.01)  # momentum and weight decay on
    guard = StepGuard(model, optimizer, device_side=device_side)
    healthy = None
    for step in range(3):  # momentum buffers and BN statistics that a bad step could move
        _, healthy = optimisation_step(model, model, optimizer, _batch(step), cfg, CPU, healthy, guard)
    assert bool(healthy)
    before = _state(model, optimizer)
    model.poison = poison
    _, healthy = optimisation_step(model, model, optimizer, _batch(10), cfg, CPU, healthy, guard)
    assert healthy.dtype == torch.bool and healthy.dim() == 0 and not bool(healthy)
    _assert_same(_state(model, optimizer), before)
    # every later step that is passed the flag is a no-op as well, finite or not
    model.poison = None
    for step in range(2):
        _, healthy = optimisation_step(model, model, optimizer, _batch(20 + step), cfg, CPU, healthy, guard)
        assert not bool(healthy)
    _assert_same(_state(model, optimizer), before)
    # and with a fresh flag training goes on
    _, healthy = optimisation_step(model, model, optimizer, _batch(30), cfg, CPU, None, guard)
    assert bool(healthy) and not torch.equal(model.net[0].weight, before["model"]["net.0.weight"])


@pytest.mark.parametrize("device_side", [True, False], ids=["device_side", "host_side"])
def test_a_non_finite_first_step_creates_no_optimiser_state_that_moves_the_weights(device_side):
    cfg = Config()
    model, reference = Tiny().train(), Tiny().train()
    optimizer = make_optimizer(model.parameters(), "sgd", 0.1, 0.9, 0.01)
    ref_optimizer = make_optimizer(reference.parameters(), "sgd", 0.1, 0.9, 0.01)
    model.poison = "loss"
    before = copy.deepcopy(model.state_dict())
    _, healthy = optimisation_step(
        model, model, optimizer, _batch(0), cfg, CPU, guard=StepGuard(model, optimizer, device_side=device_side)
    )
    assert not bool(healthy)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    # the zeroed momentum buffer it left behind acts as no buffer: the next steps match a fresh run
    model.poison = None
    for step in range(1, 3):
        optimisation_step(model, model, optimizer, _batch(step), cfg, CPU)
        optimisation_step(reference, reference, ref_optimizer, _batch(step), cfg, CPU)
    for k, v in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v, rtol=0, atol=0, msg=k)


@pytest.mark.parametrize("device_side", [True, False], ids=["device_side", "host_side"])
def test_a_finite_step_is_the_plain_step_bit_for_bit(device_side):
    cfg = Config()
    guarded, plain = Tiny().train(), Tiny().train()
    opt_g = make_optimizer(guarded.parameters(), "sgd", 0.1, 0.9, 0.01)
    opt_p = make_optimizer(plain.parameters(), "sgd", 0.1, 0.9, 0.01)
    guard = StepGuard(guarded, opt_g, device_side=device_side)
    for step in range(3):
        optimisation_step(guarded, guarded, opt_g, _batch(step), cfg, CPU, guard=guard)
        opt_p.zero_grad(set_to_none=True)
        plain(_batch(step))["loss"].backward()
        opt_p.step()
        plain.on_step_end()
    for k, v in plain.state_dict().items():
        assert torch.equal(guarded.state_dict()[k], v), k


def test_a_resumed_run_drops_what_the_killed_run_logged_past_its_checkpoint(tmp_path):
    logger = RunLogger(tmp_path, tensorboard=False)
    for step in range(1, 7):
        logger.log("train", step, loss=float(step))
    logger.log("epoch", 4, epoch=1)
    with (tmp_path / "log.jsonl").open("a") as fh:
        fh.write('{"kind": "train", "st')  # torn by the kill
    assert logger.drop_after(4) == 3
    assert [(r["kind"], r["step"]) for r in read_log(tmp_path / "log.jsonl")] == [
        ("train", 1),
        ("train", 2),
        ("train", 3),
        ("train", 4),
        ("epoch", 4),
    ]
    assert logger.drop_after(4) == 0


def test_the_training_loop_reads_the_device_once_per_log_interval_not_per_step(tiny_cache, tmp_path, monkeypatch):
    """Host reads of tensors (``item``, ``bool``, ``float``, ``tolist``...) and CUDA synchronisations
    during an epoch: the same number for 2 steps as for 4 with one log line per epoch, and none from the
    engine's step."""
    import traceback

    from conftest import TINY

    from avcl.engine.setup import make_schedule, open_cache, seed_everything, split_dataset, split_loader
    from avcl.engine.trainer import Trainer
    from avcl.methods.avcl import AVCL

    reads: list[tuple[str, str]] = []
    tracking = [False]
    for name in ("item", "__bool__", "__float__", "__int__", "__index__", "tolist"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            caller = traceback.extract_stack(limit=2)[0] if tracking[0] else None
            # host-side data (the in-process loader filling its batch from the cache) is no device read
            if caller is not None and "avcl/data/" not in caller.filename and "torch/utils/data" not in caller.filename:
                reads.append((_name, f"{caller.filename}:{caller.name}"))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: reads.append(("synchronize", "")))

    def reads_in_an_epoch(steps: int) -> list[tuple[str, str]]:
        from avcl.config import load_config

        cfg = load_config(
            None,
            [
                *TINY,
                f"data.root={tiny_cache}",
                "train.epochs=1",
                "train.log_every=100",
                f"train.max_steps_per_epoch={steps}",
            ],
        )
        seed_everything(0)
        loader = split_loader(
            cfg,
            split_dataset(cfg, open_cache(cfg), "train", "train"),
            batch_size=2,
            shuffle=True,
            device=CPU,
            drop_last=True,
        )
        method = AVCL(cfg)
        optimizer = make_optimizer(method.parameters(), "sgd", 0.01, 0.9, 5e-4)
        trainer = Trainer(
            cfg,
            method,
            loader,
            out=tmp_path / str(steps),
            epochs=1,
            optimizer=optimizer,
            device=CPU,
            scheduler_factory=lambda o, s: make_schedule(o, "constant", 1, s),
        )
        assert trainer.steps_per_epoch == steps
        trainer.device_side_guard = True  # as on CUDA (the CPU reads its flag each step, which costs nothing)
        reads.clear()
        tracking[0] = True
        trainer.train_epoch(0)
        tracking[0] = False
        return list(reads)

    two, four = reads_in_an_epoch(2), reads_in_an_epoch(4)
    assert len(two) == len(four) <= 4, four
    engine = [r for r in four if "avcl/engine" in r[1]]
    assert engine and all(r[1].endswith(":_check_and_reduce") for r in engine), engine


@pytest.mark.parametrize("amp, named", [("bf16", True), ("auto", True), ("off", False)])
def test_the_divergence_message_names_train_amp_when_mixed_precision_is_on(tmp_path, amp, named):
    from avcl.engine.trainer import Trainer, TrainingDiverged, TrainState

    trainer = Trainer.__new__(Trainer)  # the check alone, as on a CUDA device
    trainer.cfg, trainer.device, trainer.out, trainer.state = (
        Config(),
        torch.device("cuda"),
        tmp_path,
        TrainState(step=12),
    )
    trainer.cfg.train.amp = amp
    trainer._healthy, trainer._good, trainer._window_start_step = torch.tensor(False), torch.tensor(1), 10
    with pytest.raises(TrainingDiverged) as err:
        trainer._check_and_reduce(torch.zeros(1), 2, ["loss"], epoch=1)
    assert "loss is not finite at step 12 (epoch 2)" in str(err.value)
    assert ("train.amp=" in str(err.value)) == named and ("bfloat16" in str(err.value)) == named
