"""One place that sets up a run.

Pretraining, fine-tuning, the training benchmark and the feature extraction of the evaluation
protocols start here, in the same order:

1. :func:`start_run`: the device (joining the process group under torchrun), the seed, the prepared cache;
2. :class:`Recipe`: what the run trains with, read from ``optim.*``/``train.*`` (pretraining) or
   ``eval.*`` (fine-tuning): epochs, batch, optimiser, learning rate and schedule;
3. :func:`build_training`: the method placed (:func:`~avcl.engine.setup.place_method`), the training
   split's dataset and loader, the optimiser; :meth:`Training.trainer` adds the
   :class:`~avcl.engine.trainer.Trainer` and its schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from avcl import distributed as dist
from avcl.config import Config
from avcl.data.cache import PreparedCache
from avcl.data.datasets import PreparedDataset
from avcl.engine.setup import (
    make_optimizer,
    make_schedule,
    open_cache,
    place_method,
    scaled_lr,
    seed_everything,
    setup_device,
    split_dataset,
    split_loader,
)
from avcl.engine.trainer import Trainer
from avcl.errors import UserError


def refuse_existing_run(out: Path, resume: bool | str | Path, elsewhere: str) -> None:
    """A folder that already holds a run is continued (``resume``) or refused, never overwritten."""
    if not resume and (Path(out) / "last.pt").exists():
        raise UserError(f"{out} already holds a run (last.pt); pass --resume to continue it or {elsewhere}")


@dataclass
class RunSetup:
    """What a run starts from: its configuration, device and prepared cache (None for runs on made-up
    batches)."""

    cfg: Config
    device: torch.device
    cache: PreparedCache | None

    @property
    def classes(self) -> list[str]:
        return list(self.cache.meta.get("classes", [])) if self.cache is not None else []

    def has_split(self, split: str | None) -> bool:
        return bool(split) and len(self.cache.indices(split)) > 0

    def dataset(self, split: str | None, mode: str, require_audio: bool = True) -> PreparedDataset:
        return split_dataset(self.cfg, self.cache, split, mode, require_audio=require_audio)

    def train_loader(self, dataset, batch_size: int, distributed: bool = True, drop_last: bool = True):
        """Shuffled batches; under torchrun (``distributed``) each process gets its share."""
        return split_loader(
            self.cfg,
            dataset,
            batch_size=batch_size,
            shuffle=True,
            device=self.device,
            distributed=distributed,
            drop_last=drop_last,
        )

    def eval_loader(self, split: str | None, mode: str = "test", require_audio: bool = True):
        """``(loader, dataset)`` of ``split`` in order, ``eval.batch_size`` per batch; ``mode=test``:
        ``data.test_clips`` uniform clips per video, ``eval``: one centre clip."""
        dataset = self.dataset(split, mode, require_audio=require_audio)
        loader = split_loader(self.cfg, dataset, batch_size=self.cfg.eval.batch_size, shuffle=False, device=self.device)
        return loader, dataset


def start_run(
    cfg: Config,
    *,
    device: torch.device | None = None,
    cache: PreparedCache | None = None,
    seed: bool = True,
    data: bool = True,
) -> RunSetup:
    """The device (``device`` or :func:`~avcl.engine.setup.setup_device`), the RNGs seeded from
    ``train.seed`` (unless ``seed=False``) and the cache at ``data.root`` (``cache`` if given; none with
    ``data=False``)."""
    device = device if device is not None else setup_device(cfg)
    if seed:
        seed_everything(cfg.train.seed)
    if cache is None and data:
        cache = open_cache(cfg)
    return RunSetup(cfg, device, cache)


@dataclass(frozen=True)
class Recipe:
    """What one kind of run trains with."""

    kind: str  # pretrain | finetune: the checkpoints' kind
    epochs: int
    batch_size: int  # per process
    optimizer: str  # sgd | adamw
    lr: float
    momentum: float
    weight_decay: float
    schedule: str  # constant | cosine | step | plateau
    warmup_epochs: int = 0
    step_epochs: tuple = ()
    step_gamma: float = 0.1
    plateau_patience: int = 50

    @classmethod
    def pretraining(cls, cfg: Config) -> Recipe:
        """``optim.*`` and ``train.*``; the learning rate scaled with the global batch (``optim.lr_scaling``)."""
        o = cfg.optim
        return cls(
            "pretrain",
            cfg.train.epochs,
            cfg.train.batch_size,
            o.name,
            scaled_lr(o.lr, cfg),
            o.momentum,
            o.weight_decay,
            o.schedule,
            o.warmup_epochs,
            tuple(o.step_epochs),
            o.step_gamma,
            o.plateau_patience,
        )

    @classmethod
    def finetuning(cls, cfg: Config) -> Recipe:
        """``eval.*``: fine-tuning's own epochs, batch, optimiser and schedule."""
        e = cfg.eval
        return cls(
            "finetune",
            e.epochs,
            e.batch_size,
            e.optimizer,
            e.lr,
            e.momentum,
            e.weight_decay,
            e.schedule,
            e.warmup_epochs,
            tuple(e.step_epochs),
            e.step_gamma,
        )

    def make_optimizer(self, params) -> torch.optim.Optimizer:
        return make_optimizer(params, self.optimizer, self.lr, self.momentum, self.weight_decay)

    def make_schedule(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
        return make_schedule(
            optimizer,
            self.schedule,
            self.epochs,
            steps_per_epoch,
            self.warmup_epochs,
            list(self.step_epochs),
            self.step_gamma,
            self.plateau_patience,
        )


@dataclass
class Training:
    """A method ready to train: placed, with its training data and optimiser."""

    setup: RunSetup
    recipe: Recipe
    method: nn.Module  # owns the parameters and the checkpointed state
    model: nn.Module  # runs the forward (the method, or it under DDP / torch.compile)
    optimizer: torch.optim.Optimizer
    dataset: PreparedDataset | None  # None for a run on made-up batches
    loader: object | None

    def trainer(
        self,
        out: str | Path,
        *,
        evaluate: Callable[[nn.Module], dict] | None = None,
        metric: str = "val_acc",
        meta: dict | None = None,
    ) -> Trainer:
        """The loop over ``recipe.epochs`` epochs writing to ``out``, with the recipe's schedule."""
        return Trainer(
            self.setup.cfg,
            self.method,
            self.loader,
            out=out,
            epochs=self.recipe.epochs,
            optimizer=self.optimizer,
            scheduler_factory=self.recipe.make_schedule,
            device=self.setup.device,
            evaluate=evaluate,
            metric=metric,
            meta=meta,
            kind=self.recipe.kind,
            model=self.model,
        )


def build_training(
    setup: RunSetup,
    method: nn.Module,
    recipe: Recipe,
    *,
    split: str | None,
    distributed: bool = True,
    drop_last: bool | None = True,
) -> Training:
    """Places ``method`` (:func:`~avcl.engine.setup.place_method`; DDP when ``distributed`` and under
    torchrun), builds the dataset of ``split`` in the method's ``sample_mode`` (``train`` unless it says
    otherwise) and its shuffled loader of ``recipe.batch_size`` per process (``drop_last=None``: drop
    the last partial batch when the split holds more than one batch), and the optimiser over the
    placed method's trainable parameters. Without a cache (``setup.cache is None``) there is no data."""
    cfg = setup.cfg
    distributed = distributed and dist.is_distributed()
    placed = place_method(cfg, method, setup.device, distributed=distributed)
    dataset = loader = None
    if setup.cache is not None:
        mode = getattr(placed.method, "sample_mode", "train")
        dataset = setup.dataset(split, mode, require_audio=placed.method.uses_audio)
        if drop_last is None:
            drop_last = len(dataset) > recipe.batch_size
        loader = setup.train_loader(dataset, recipe.batch_size, distributed=distributed, drop_last=drop_last)
    optimizer = recipe.make_optimizer(placed.method.parameters())
    return Training(setup, recipe, placed.method, placed.model, optimizer, dataset, loader)


def resume_run(trainer: Trainer, resume: bool | str | Path) -> None:
    """``resume=True`` continues from ``<out>/last.pt`` when there is one (a path: from that file)."""
    if not resume:
        return
    found = trainer.resume(resume if isinstance(resume, (str, Path)) else None)
    if not found and dist.is_main():
        print(f"nothing to resume in {trainer.out}; starting a new run")
