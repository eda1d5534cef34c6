"""What every run needs before its loop: the device and precision, the seed, the prepared cache, the
dataset of a split and its loader, the model's placement, the optimiser and the learning-rate schedule.

:mod:`avcl.engine.run` assembles these into a run; :mod:`avcl.engine.trainer` holds the loop.
"""

from __future__ import annotations

import contextlib
import math
import random
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
import torch
from torch import nn

from avcl import distributed as dist
from avcl.config import Config
from avcl.data.cache import PreparedCache
from avcl.data.datasets import PreparedDataset, build_loader
from avcl.errors import UserError


# -- device, precision, seed ---------------------------------------------------------------------
def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device=cuda but no CUDA device is available; use train.device=auto or cpu")
    return torch.device(name)


def setup_device(cfg: Config) -> torch.device:
    """Joins the process group under torchrun, then picks this process's device; refuses
    ``train.amp=bf16|fp16`` off CUDA."""
    _, _, _, device = dist.setup()
    if cfg.train.device == "cpu" or (cfg.train.device == "auto" and device.type != "cuda"):
        device = torch.device("cpu")
    elif device.type != "cuda":
        device = resolve_device(cfg.train.device)
    check_amp(device, cfg.train.amp)  # before any data is read: mixed precision is for CUDA only
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block (or, as a decorator, each call) on ``n`` intra-op threads, then restore the count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def check_amp(device: torch.device, amp: str) -> None:
    """Mixed precision (``train.amp=bf16|fp16``) runs on CUDA only: refused elsewhere with a clear error.

    oneDNN's reduced-precision 3D convolutions are wrong on some CPUs (torch 2.14 on AVX-512 bf16: the
    weight gradient of a 3x3x3 convolution over two frames is garbage, up to inf, and the audio stem's
    forward is wrong in channels_last_3d), so a CPU run would stop at its first step with a
    non-finite loss or, worse, train on wrong gradients. ``train.amp=auto`` is fp32 on the CPU.
    """
    if amp in ("bf16", "fp16") and device.type != "cuda":
        raise UserError(
            f"train.amp={amp} needs a CUDA device, and this run is on the {device.type}: oneDNN's {amp} 3D "
            "convolutions give wrong gradients on some CPUs. Use train.amp=auto (full precision off CUDA) or off"
        )


def amp_dtype(device: torch.device, amp: str) -> torch.dtype | None:
    """The autocast dtype ``train.amp`` gives on ``device``; None for full precision."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    return torch.float16 if amp == "fp16" else torch.bfloat16


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA by default; full precision on the CPU (``train.amp=auto``). ``bf16`` and
    ``fp16`` on a device other than CUDA are refused (:func:`check_amp`)."""
    check_amp(device, amp)
    dtype = amp_dtype(device, amp)
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type=device.type, dtype=dtype)


# -- data ----------------------------------------------------------------------------------------
def open_cache(cfg: Config) -> PreparedCache:
    if not cfg.data.root:
        raise UserError(
            "data.root is not set: pass the folder written by `avcl prepare` (data.root=PATH or --data PATH)"
        )
    if not Path(cfg.data.root).is_dir():
        raise UserError(f"data.root {cfg.data.root} does not exist; run `avcl prepare SRC {cfg.data.root}` first")
    return PreparedCache(cfg.data.root)


def split_dataset(
    cfg: Config, cache: PreparedCache, split: str | None, mode: str, require_audio: bool = True
) -> PreparedDataset:
    """``mode``: train | eval | test, or ``tuple`` for TCGL's shuffled-snippet tuples (``avcl.data.tuples``).
    ``split=None``: every video of the cache."""
    if mode == "tuple":
        from avcl.data.tuples import TupleDataset

        dataset = TupleDataset(cache, split, cfg.data, cfg.tcgl, seed=cfg.train.seed)
    else:
        dataset = PreparedDataset(cache, split, cfg.data, mode=mode, require_audio=require_audio, seed=cfg.train.seed)
    if len(dataset) == 0:
        raise UserError(f"{cfg.data.root}: the '{split}' split holds no usable video")
    return dataset


def split_loader(
    cfg: Config,
    dataset: PreparedDataset,
    *,
    batch_size: int,
    shuffle: bool,
    device: torch.device,
    distributed: bool = False,
    drop_last: bool = False,
):
    rank, world = (dist.rank(), dist.world_size()) if distributed else (0, 1)
    return build_loader(
        dataset,
        cfg.data,
        batch_size,
        shuffle=shuffle,
        seed=cfg.train.seed,
        rank=rank,
        world_size=world,
        drop_last=drop_last,
        device=str(device),
    )


# -- the model -----------------------------------------------------------------------------------
class Placed(NamedTuple):
    """A method on its device: ``method`` owns the parameters (for the optimiser) and the state (for
    checkpoints); ``model`` runs the forward (the method, or it wrapped by DDP and/or torch.compile)."""

    method: nn.Module
    model: nn.Module


def place_method(cfg: Config, method: nn.Module, device: torch.device, distributed: bool | None = None) -> Placed:
    """Everything that decides where and how the method runs, in order: SyncBatchNorm under DDP on CUDA
    (``model.sync_bn``), the device, the channels_last_3d memory format (``train.channels_last``;
    measured 1.4-1.7x faster on the CPU, to be measured on GPUs), DistributedDataParallel under
    torchrun (``distributed``, default: when a process group is up) and ``torch.compile``
    (``train.compile``)."""
    distributed = dist.is_distributed() if distributed is None else distributed
    if cfg.model.sync_bn and device.type == "cuda" and distributed:
        method = nn.SyncBatchNorm.convert_sync_batchnorm(method)
    method = method.to(device)
    if cfg.train.channels_last:
        method = method.to(memory_format=torch.channels_last_3d)
    model = method
    if distributed:
        model = nn.parallel.DistributedDataParallel(
            method,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=getattr(method, "find_unused_parameters", False),
        )
    if cfg.train.compile:
        model = torch.compile(model)
    return Placed(method, model)


# -- optimiser and schedule ----------------------------------------------------------------------
def scaled_lr(lr: float, cfg: Config) -> float:
    """``optim.lr_scaling=linear``: the learning rate grows with the global batch (Goyal et al.)."""
    if cfg.optim.lr_scaling == "linear":
        return lr * cfg.train.batch_size * dist.world_size() / cfg.optim.base_batch
    return lr


def make_optimizer(params, name: str, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise UserError(f"unknown optimiser '{name}' (sgd | adamw)")


PLATEAU_THRESHOLD = 1e-4  # ReduceLROnPlateau's default: an improvement is a relative drop of more than this


class LrFactor:
    """The multiplier of the base learning rate at an optimiser step: a linear warm-up, then constant,
    cosine, step (``gamma`` at each milestone) or plateau.

    ``plateau`` is ReduceLROnPlateau's rule (mode min, relative threshold 1e-4, no cooldown, no
    floor): :meth:`epoch_end` is given the epoch's monitored value, and when it has not improved on
    the best for more than ``patience`` epochs the rate is multiplied by ``gamma``.
    """

    def __init__(self, schedule: str, total: int, warmup: int, milestones: list[int], gamma: float, patience: int = 50):
        self.schedule, self.total, self.warmup = schedule, total, warmup
        self.milestones, self.gamma, self.patience = milestones, gamma, patience
        self.scale, self.best, self.bad_epochs = 1.0, math.inf, 0  # the plateau's state

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.schedule == "cosine":
            progress = (step - self.warmup) / max(1, self.total - self.warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        if self.schedule == "step":
            return self.gamma ** sum(step >= m for m in self.milestones)
        if self.schedule == "plateau":
            return self.scale
        return 1.0

    def epoch_end(self, value: float) -> bool:
        """Records an epoch's monitored value (lower is better); True when the rate was reduced."""
        if self.schedule != "plateau" or not math.isfinite(value):
            return False
        if value < self.best * (1.0 - PLATEAU_THRESHOLD):  # ReduceLROnPlateau's test, whatever the sign
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.scale *= self.gamma
            self.bad_epochs = 0
            return True
        return False

    def plateau_state(self) -> dict:
        return {"scale": self.scale, "best": self.best, "bad_epochs": self.bad_epochs}


class LrSchedule(torch.optim.lr_scheduler.LambdaLR):
    """A per-step schedule of an :class:`LrFactor`. Its checkpoint holds the step count and the
    plateau's state; the rest (length, warm-up, milestones) comes from the configuration, so that a
    resumed run may change them."""

    def __init__(self, optimizer: torch.optim.Optimizer, factor: LrFactor):
        self.factor = factor
        super().__init__(optimizer, factor)

    def state_dict(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "lr_lambdas", "factor")}
        return {**state, "plateau": self.factor.plateau_state()}

    def load_state_dict(self, state_dict: dict) -> None:
        state = {k: v for k, v in state_dict.items() if k not in ("lr_lambdas", "plateau")}
        self.__dict__.update(state)
        for key, value in (state_dict.get("plateau") or {}).items():
            setattr(self.factor, key, value)

    def epoch_end(self, value: float) -> bool:
        """The plateau's check at the end of an epoch; a reduction applies from the next step."""
        if not self.factor.epoch_end(value):
            return False
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * self.factor(self.last_epoch)
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]
        return True


def make_schedule(
    optimizer: torch.optim.Optimizer,
    schedule: str,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: int = 0,
    step_epochs: list | None = None,
    gamma: float = 0.1,
    patience: int = 50,
) -> LrSchedule:
    """A per-step multiplier of the base learning rate: linear warm-up, then constant, cosine, step
    (times ``gamma`` at each epoch of ``step_epochs``) or plateau (times ``gamma`` after ``patience``
    epochs without improvement)."""
    milestones = [e * steps_per_epoch for e in (step_epochs or [])]
    factor = LrFactor(
        schedule, max(1, epochs * steps_per_epoch), warmup_epochs * steps_per_epoch, milestones, gamma, patience
    )
    return LrSchedule(optimizer, factor)
