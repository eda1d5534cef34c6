"""Each rank trains a tiny AVCL with the ``Trainer`` on its share of the tiny cache (2 gloo processes).

Run 1 (``log``): ``train.log_every=2``; every rank records its local loss dict at each step, rank 0
also returns ``log.jsonl``, so ``tests/test_trainer_ddp.py`` can check that a log line holds the mean
over the window's steps and over both ranks.

Run 2 (``nan``): only rank 1's loss turns NaN at step ``--nan-step``; both ranks must stop together
naming that step, with the weights of before it.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
from conftest import TINY

from avcl import distributed
from avcl.config import load_config
from avcl.engine.logger import read_log
from avcl.engine.run import Recipe, build_training, start_run
from avcl.engine.setup import seed_everything
from avcl.engine.trainer import Trainer, TrainingDiverged
from avcl.methods.avcl import AVCL
from ddp.harness import save_result


class RecordingAVCL(AVCL):
    """AVCL that keeps this rank's local loss dict of every step, and can turn one step's loss NaN."""

    def __init__(self, cfg, nan_at: int = 0):
        super().__init__(cfg)
        self.nan_at, self.calls, self.local, self.before_nan = nan_at, 0, [], None

    def forward(self, batch):
        self.calls += 1
        if self.calls == self.nan_at:
            self.before_nan = copy.deepcopy(self.state_dict())
        out = super().forward(batch)
        if self.calls == self.nan_at:
            out["loss"] = out["loss"] * float("nan")
        self.local.append({k: float(v.detach()) for k, v in out.items() if torch.is_tensor(v) and v.dim() == 0})
        return out


def train(cfg, out: Path, nan_at: int = 0) -> tuple[RecordingAVCL, Trainer]:
    """The run builder's training (DDP over the gloo group), SGD at a constant 0.01."""
    seed_everything(0)
    setup = start_run(cfg, device=torch.device("cpu"), seed=False)
    recipe = Recipe("pretrain", cfg.train.epochs, cfg.train.batch_size, "sgd", 0.01, 0.9, 5e-4, "constant")
    training = build_training(setup, RecordingAVCL(cfg, nan_at), recipe, split="train")
    return training.method, training.trainer(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--nan-step", type=int, default=3)
    args = parser.parse_args()
    rank, world, _, _ = distributed.setup()
    torch.set_num_threads(1)
    cfg = load_config(None, [*TINY, f"data.root={args.data}", "train.epochs=2", "train.log_every=2"])
    result = {"world": world}

    out = Path(args.out_dir) / "log"
    method, trainer = train(cfg, out)
    trainer.fit()
    result["steps_per_epoch"] = trainer.steps_per_epoch
    result["local"] = method.local
    result["log"] = read_log(out / "log.jsonl") if rank == 0 else None

    distributed.barrier()
    method, trainer = train(cfg, Path(args.out_dir) / "nan", nan_at=args.nan_step if rank == 1 else 0)
    try:
        trainer.fit()
        result["error"] = None
    except TrainingDiverged as err:
        result["error"] = str(err)
    result["step"] = trainer.state.step
    result["weights"] = copy.deepcopy(method.state_dict())
    result["before_nan"] = method.before_nan
    save_result(rank, result)
    distributed.cleanup()


if __name__ == "__main__":
    main()
