"""The training engine shared by pretraining and fine-tuning.

One loop for every method: batches from the loader go through ``to_model_input`` to the method, whose
loss dict is back-propagated (``"loss"``) and logged (everything). Each epoch ends with an atomic
checkpoint (model, optimiser, scheduler, RNG, epoch, step); ``resume`` continues from the last one, and
because the data order and augmentations derive from (seed, epoch, index) alone, a resumed run on the
CPU ends with the same weights as an uninterrupted one. A NaN or infinite loss (or gradient) changes
nothing (the step is undone on the device, without waiting for it); the run stops at the next log
line or the end of the epoch, naming the step, and leaves the last good checkpoint untouched. Logged
losses are means over the log interval's steps and over every rank, and a resumed run's log holds
each step once.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from avcl import distributed as dist
from avcl.config import Config
from avcl.data.transforms import to_model_input
from avcl.engine.checkpoint import encode_checkpoint, load_checkpoint, write_checkpoint
from avcl.engine.logger import RunLogger
from avcl.engine.setup import amp_dtype, autocast
from avcl.errors import UserError
from avcl.progress import progress as progress_bar
from avcl.progress import write as progress_write

CHECKPOINT_FORMAT = "avcl-checkpoint-1"


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""


class StepGuard:
    """Undoes an optimisation step on the device when a flag says so, without a host synchronisation.

    :meth:`snapshot` (before the forward) copies what a step may change: the method's parameters and
    buffers (BatchNorm statistics, queues, momentum encoders) and the optimiser's state (momentum, Adam
    moments) into buffers kept from step to step (one more copy of all of them in memory).
    :meth:`keep_if` (after the step) writes back ``where(ok, new, old)``. Zeroing the gradients would not
    do: SGD's weight decay and momentum move the weights without any gradient. Optimiser state created
    by the step itself (the first step's momentum buffer) is zeroed instead, which SGD without dampening
    and Adam read as "no state".
    State on another device than the flag (AdamW's step counter on the host while training on CUDA) is
    left alone: it would need the flag on the host.

    ``device_side=False`` is for the CPU, where nothing runs ahead of the host and reading the flag
    costs nothing: the step decides on the host, skips the optimiser step of a bad step and restores
    only the buffers its forward changed, which spares the copies of the weights and the optimiser state
    (4% of a step of the CPU demo preset).
    """

    def __init__(self, method: nn.Module, optimizer: torch.optim.Optimizer, device_side: bool = True):
        self.method, self.optimizer, self.device_side = method, optimizer, device_side
        self._tracked: list[torch.Tensor] = []
        self._copies: list[torch.Tensor] = []  # one per tracked tensor, same shape and strides, reused
        self._state_size = 0

    def _tensors(self) -> list[torch.Tensor]:
        seen: dict[int, torch.Tensor] = {}
        for t in (
            [*self.method.buffers()] if not self.device_side else [*self.method.parameters(), *self.method.buffers()]
        ):
            seen.setdefault(id(t), t)
        if not self.device_side:
            return list(seen.values())
        for state in self.optimizer.state.values():
            for v in state.values():
                if torch.is_tensor(v):
                    seen.setdefault(id(v), v)
        return list(seen.values())

    def _optimizer_state_size(self) -> int:
        return sum(len(state) for state in self.optimizer.state.values())

    @torch.no_grad()
    def snapshot(self) -> None:
        tensors = self._tensors()
        if len(tensors) != len(self._tracked) or any(a is not b for a, b in zip(tensors, self._tracked)):
            self._tracked, self._copies = tensors, [torch.empty_like(t) for t in tensors]
        for copy, t in zip(self._copies, self._tracked):  # a loop of copies beats a fused copy across strides
            copy.copy_(t)
        self._state_size = self._optimizer_state_size()

    @torch.no_grad()
    def restore(self) -> None:
        """Puts back everything the snapshot holds (on the host's decision)."""
        for t, copy in zip(self._tracked, self._copies):
            t.copy_(copy)

    @torch.no_grad()
    def keep_if(self, ok: torch.Tensor) -> None:
        """Keep the step where ``ok`` (a 0-dim bool tensor) is true, restore the snapshot where false."""
        for t, copy in zip(self._tracked, self._copies):
            if t.device == ok.device:
                torch.where(ok, t, copy, out=t)
        if self._optimizer_state_size() != self._state_size:  # state the step created (its first step)
            known = {id(t) for t in self._tracked}
            for t in self._tensors():
                if id(t) not in known and t.device == ok.device:
                    torch.where(ok, t, torch.zeros_like(t), out=t)


def optimisation_step(
    model: nn.Module,
    method: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: dict,
    cfg: Config,
    device: torch.device,
    healthy: torch.Tensor | None = None,
    guard: StepGuard | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One training step: forward under autocast, backward, clipping, the optimiser step and the
    method's ``on_step_end``, guarded so that a non-finite loss or gradient changes nothing.

    Returns the loss dict and ``healthy``: a 0-dim bool tensor on the device, true when this step's
    loss and gradients were finite and so was the ``healthy`` passed in (the steps before it). When it
    is false, the parameters, buffers and optimiser state are those from before the step
    (:class:`StepGuard`); so once a step fails, every later step that is passed the flag is a no-op
    as well. Nothing here waits for the device (on the CPU, where nothing runs ahead of the host, the
    flag is read at once and a bad step's optimiser step is skipped): the caller reads the flag when
    it chooses to.

    Under DDP the ranks agree without a collective of their own: a non-finite local loss is turned
    into NaN gradients (the loss is multiplied by ``where(finite, 1, nan)``, exactly 1 otherwise),
    which DDP's gradient average hands to every rank. ``model`` is what runs the forward (``method``,
    or it wrapped by DDP or torch.compile).
    """
    guard = guard if guard is not None else StepGuard(method, optimizer, device_side=device.type != "cpu")
    guard.snapshot()
    with autocast(device, cfg.train.amp):
        out = model(batch)
    loss = out["loss"]
    finite = torch.isfinite(loss.detach())
    optimizer.zero_grad(set_to_none=True)
    (loss * torch.where(finite, 1.0, math.nan).to(loss.dtype)).backward()
    grads = [p.grad for p in method.parameters() if p.grad is not None]
    if cfg.train.grad_clip > 0:
        norm = nn.utils.clip_grad_norm_(method.parameters(), cfg.train.grad_clip)
    else:
        norm = nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=device)
    ok = finite & torch.isfinite(norm).to(finite.device)
    if healthy is not None:
        ok = ok & healthy
    if guard.device_side:
        optimizer.step()
        method.on_step_end()
        guard.keep_if(ok)
    elif bool(ok):  # the CPU: the flag is ready, reading it waits for nothing
        optimizer.step()
        method.on_step_end()
    else:
        guard.restore()  # the buffers the forward changed (BatchNorm statistics)
    return out, ok


# -- resuming with a changed configuration --------------------------------------------------------
# Keys whose new value wins on --resume. Everything else (model.*, method.*, what a sample is, the batch
# size, the seed, the optimiser's kind) refuses to resume: the checkpoint's weights, optimiser state and
# data order would not mean what the new configuration says.
RESUME_LENGTH_KEYS = {"train.epochs", "eval.epochs", "train.max_steps_per_epoch"}  # the schedule spans the new length
RESUME_OPTIM_KEYS = {  # applied to the optimiser from the next step; momentum buffers are kept
    "optim.lr",
    "optim.momentum",
    "optim.weight_decay",
    "optim.schedule",
    "optim.warmup_epochs",
    "optim.step_epochs",
    "optim.step_gamma",
    "optim.plateau_patience",
    "optim.lr_scaling",
    "optim.base_batch",
    "eval.lr",
    "eval.momentum",
    "eval.weight_decay",
    "eval.schedule",
    "eval.warmup_epochs",
    "eval.step_epochs",
    "eval.step_gamma",
    "train.grad_clip",
    "train.amp",
}
RESUME_FREE_KEYS = {  # where and how the run works, not what it computes
    "train.out",
    "data.root",
    "data.num_workers",
    "data.pin_memory",
    "data.persistent_workers",
    "data.prefetch_factor",
    "data.normalize_on_device",
    "data.test_clips",
    "data.val_split",
    "data.test_split",
    "train.device",
    "train.compile",
    "train.channels_last",
    "train.log_every",
    "train.keep_checkpoints",
    "train.tensorboard",
    "train.progress",
    "eval.linear_lr",
    "eval.linear_weight_decay",
    "eval.linear_epochs",
    "eval.topk",
}


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def resume_differences(saved: dict, new: dict, kind: str) -> tuple[dict, dict]:
    """``(changed, refused)``: the keys whose value differs between a checkpoint's configuration and this
    run's, as ``{key: (checkpoint value, new value)}``; ``changed`` may change on resume (the new value wins),
    ``refused`` may not. Keys the kind of run never reads (``eval.*`` when pretraining, ``optim.*`` and
    ``train.epochs`` when fine-tuning) may always change."""
    saved, new = _flatten(saved), _flatten(new)
    unused = ("eval.",) if kind == "pretrain" else ("optim.", "train.epochs") if kind == "finetune" else ()
    changed, refused = {}, {}
    for key in sorted(set(saved) | set(new)):
        if key not in saved or key not in new or saved[key] == new[key]:
            continue  # a key added to the configuration since the checkpoint was written takes its default
        allowed = key in RESUME_LENGTH_KEYS | RESUME_OPTIM_KEYS | RESUME_FREE_KEYS or key.startswith(unused)
        (changed if allowed else refused)[key] = (saved[key], new[key])
    return changed, refused


def _describe(diffs: dict) -> str:
    return ", ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in diffs.items())


# -- the loop ------------------------------------------------------------------------------------
class _EpochMeter:
    """What an epoch adds up: the loss dict's scalars over the current log window (on the device, no
    host synchronisation), the epoch's sums of the windows' global means, the data wait and compute
    times and the samples per second of the window."""

    def __init__(self, device: torch.device):
        self.device = device
        self.keys: list[str] = []
        self.window: torch.Tensor | None = None  # the scalars' sums since the last log line, on the device
        self.window_steps = 0
        self.sums: dict[str, float] = {}  # the epoch's sums of global means, one per window
        self.count = 0
        self.wait = self.compute = 0.0
        self.window_samples, self.window_start = 0, time.perf_counter()

    def add(self, out: dict, batch: dict, wait: float, compute: float) -> None:
        self.wait += wait
        self.compute += compute
        self.count += 1
        batch_size = next(v for v in batch.values() if torch.is_tensor(v)).shape[0]
        self.window_samples += batch_size * dist.world_size()
        if not self.keys:
            self.keys = [k for k, v in out.items() if torch.is_tensor(v) and v.dim() == 0]
        values = torch.stack([out[k].detach().float() for k in self.keys])
        self.window = values if self.window is None else self.window + values
        self.window_steps += 1

    def close_window(self, means: dict[str, float]) -> dict[str, float]:
        """Adds the window's global ``means`` (over its steps and the ranks) to the epoch's and starts a new one."""
        for k, v in means.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * self.window_steps
        self.window, self.window_steps = None, 0
        return means

    def window_rate(self) -> float:
        """Samples per second (all ranks) since the last call, which starts a new count."""
        elapsed = time.perf_counter() - self.window_start
        rate = self.window_samples / max(elapsed, 1e-9)
        self.window_samples, self.window_start = 0, time.perf_counter()
        return rate

    def epoch_means(self) -> dict[str, float]:
        means = {k: v / max(self.count, 1) for k, v in self.sums.items()}
        total = self.wait + self.compute
        means["data_wait_fraction"] = self.wait / total if total > 0 else 0.0
        means["step_time_s"] = total / max(self.count, 1)
        return means


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps taken
    best_metric: float = -math.inf
    history: list = field(default_factory=list)  # one dict of means per epoch


class Trainer:
    """Runs ``epochs`` epochs of ``method`` on ``loader`` and writes everything under ``out``.

    ``evaluate(method) -> dict`` (optional) runs after each epoch on the main process; when it
    returns ``metric``, the best epoch is kept as ``best.pt`` (the paper keeps the best validation
    checkpoint). ``meta`` is stored in every checkpoint (classes, kind of run, ...). ``model`` runs the
    forward: :func:`~avcl.engine.setup.place_method`'s (DDP, torch.compile); the method itself by default.
    A schedule with an ``epoch_end(value)`` (``optim.schedule=plateau``) is given, after each epoch, the
    negated validation metric when the run has one, otherwise the epoch's mean training loss.
    """

    def __init__(
        self,
        cfg: Config,
        method: nn.Module,
        loader,
        *,
        out: str | Path,
        epochs: int,
        optimizer: torch.optim.Optimizer,
        scheduler_factory: Callable[[torch.optim.Optimizer, int], Any],
        device: torch.device,
        evaluate: Callable[[nn.Module], dict] | None = None,
        metric: str = "val_acc",
        meta: dict | None = None,
        kind: str = "pretrain",
        model: nn.Module | None = None,
    ):
        self.cfg = cfg
        self.out = Path(out)
        self.loader = loader
        self.epochs = epochs
        self.device = device
        self.evaluate = evaluate
        self.metric = metric
        self.meta = meta or {}
        self.kind = kind
        self.is_main = dist.is_main()
        self.method = method
        if model is None and dist.is_distributed():
            raise ValueError("under DDP, pass the model of place_method (the method wrapped for gradient averaging)")
        self.model: nn.Module = method if model is None else model
        self.optimizer = optimizer
        self.steps_per_epoch = self._steps_per_epoch()
        self.scheduler = scheduler_factory(optimizer, self.steps_per_epoch)
        self.state = TrainState()
        self.device_side_guard = device.type != "cpu"  # see StepGuard: the CPU decides on the host at no cost
        self.logger = RunLogger(self.out, tensorboard=cfg.train.tensorboard, enabled=self.is_main)

    def _steps_per_epoch(self) -> int:
        steps = len(self.loader)
        if self.cfg.train.max_steps_per_epoch > 0:
            steps = min(steps, self.cfg.train.max_steps_per_epoch)
        if steps == 0:
            raise UserError(
                "the training split has fewer samples than one batch "
                f"(batch_size={self.cfg.train.batch_size} per process); lower train.batch_size or add videos"
            )
        return steps

    # -- checkpoints ------------------------------------------------------------------------------
    def checkpoint_state(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "format": CHECKPOINT_FORMAT,
            "kind": self.kind,
            "method": getattr(self.method, "name", type(self.method).__name__),
            "config": self.cfg.to_dict(),
            "meta": self.meta,
            "model": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.state.epoch,
            "step": self.state.step,
            "best_metric": self.state.best_metric,
            "history": self.state.history,
            "rng": rng,
        }

    def save(self, improved: bool) -> None:
        if not self.is_main:
            return
        data = encode_checkpoint(self.checkpoint_state())  # serialised and hashed once, written up to three times
        write_checkpoint(data, self.out / f"epoch-{self.state.epoch:04d}.pt")
        write_checkpoint(data, self.out / "last.pt")
        if improved:
            write_checkpoint(data, self.out / "best.pt")
        kept = sorted(self.out.glob("epoch-*.pt"))
        for old in kept[: max(0, len(kept) - self.cfg.train.keep_checkpoints)]:
            old.unlink(missing_ok=True)

    def resume(self, path: str | Path | None = None) -> bool:
        """Restore from ``path`` (default ``out/last.pt``; a folder means its ``last.pt``); returns False when
        there is nothing to resume.

        The checkpoint's configuration is compared with this run's (:func:`resume_differences`): keys that
        change the model, the data or the run's randomness refuse to resume; the training length, the
        optimiser's hyper-parameters and where/how the run works may change, and the new value wins.
        """
        explicit = path is not None
        path = Path(path) if path else self.out / "last.pt"
        if path.is_dir():
            path = path / "last.pt"
        if not path.exists():
            if explicit:
                raise UserError(f"{path}: no checkpoint there to resume from")
            return False
        ckpt = load_checkpoint(path, map_location=self.device)
        if ckpt.get("kind") != self.kind:
            raise UserError(f"{path}: is a '{ckpt.get('kind')}' checkpoint, not '{self.kind}'")
        changed, refused = resume_differences(ckpt.get("config", {}), self.cfg.to_dict(), self.kind)
        if refused:
            raise UserError(
                f"{path}: cannot resume with a configuration that differs from the checkpoint's in "
                f"{_describe(refused)}: these change the model, the data or the run's randomness; resume with the "
                f"checkpoint's values (drop those overrides) or start a new run in another --out"
            )
        # The optimiser's hyper-parameters and the schedule's base rates come from this run's configuration
        # (identical to the checkpoint's unless changed); its momentum buffers and step count from the file.
        fresh_groups = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        fresh_base = list(getattr(self.scheduler, "base_lrs", []))
        self.method.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        lambdas = getattr(self.scheduler, "lr_lambdas", None)
        if fresh_base and lambdas:  # a make_schedule (LambdaLR) schedule: recompute this step's rate
            for group, fresh in zip(self.optimizer.param_groups, fresh_groups):
                group.update(fresh)
            self.scheduler.base_lrs = fresh_base
            for group, base, factor in zip(self.optimizer.param_groups, fresh_base, lambdas):
                group["lr"] = base * factor(self.scheduler.last_epoch)
            self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]
        self.state = TrainState(ckpt["epoch"], ckpt["step"], ckpt["best_metric"], list(ckpt["history"]))
        torch.set_rng_state(ckpt["rng"]["torch"].cpu())
        if "cuda" in ckpt["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in ckpt["rng"]["cuda"]])
        if self.is_main:
            print(f"resuming from {path}: {self.state.epoch} of {self.epochs} epochs done, step {self.state.step}")
            if changed:
                print(f"configuration changed since the checkpoint, the new values win: {_describe(changed)}")
        return True

    # -- training ---------------------------------------------------------------------------------
    def fit(self) -> TrainState:
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            self.cfg.save(self.out / "config.yaml")
            # a killed run logged past its last checkpoint: those steps are trained (and logged) again
            self.logger.drop_after(self.state.step)
        while self.state.epoch < self.epochs:
            means = self.train_epoch(self.state.epoch)
            means.update(self.method_diagnostics())
            metrics = self.evaluate(self.method) if (self.evaluate is not None and self.is_main) else {}
            record = {"epoch": self.state.epoch + 1, **means, **metrics}
            improved = False
            if self.metric in metrics and metrics[self.metric] > self.state.best_metric:
                self.state.best_metric = float(metrics[self.metric])
                improved = True
            self._schedule_epoch_end(means, metrics)
            self.state.epoch += 1
            self.state.history.append(record)
            self.logger.log("epoch", self.state.step, **record)
            self.save(improved or self.evaluate is None)
            if self.is_main:
                summary = ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k != "epoch" and isinstance(v, float))
                progress_write(f"epoch {record['epoch']}/{self.epochs}: {summary}")
            dist.barrier()
        if self.is_main:
            self.logger.close()
        return self.state

    def _schedule_epoch_end(self, means: dict[str, float], metrics: dict[str, float]) -> None:
        """Hands a plateau schedule the epoch's monitored value: the negated validation metric when the
        run validates (computed on the main process, sent to every rank), else the mean training loss
        (already the same on every rank)."""
        epoch_end = getattr(self.scheduler, "epoch_end", None)
        if epoch_end is None or getattr(getattr(self.scheduler, "factor", None), "schedule", None) != "plateau":
            return
        if self.evaluate is not None:
            value = [-float(metrics[self.metric]) if self.metric in metrics else math.nan]
            if dist.is_distributed():
                torch.distributed.broadcast_object_list(value, src=0)
            value = value[0]
        else:
            value = means.get("loss", math.nan)
        if epoch_end(value) and self.is_main:
            progress_write(
                f"plateau: no improvement for more than {self.scheduler.factor.patience} epochs, "
                f"learning rate now {self.optimizer.param_groups[0]['lr']:.3g}"
            )

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One epoch; returns the means over it of the loss dict's scalars (over all ranks), the fraction
        of the time spent waiting for data and the time per step.

        Nothing waits for the device between log points: the scalars of the loss dict add up on the
        device, and every ``train.log_every`` steps (and at the end of the epoch, before the checkpoint)
        one all-reduce brings the window's sums and the non-finite flag together. The log line and the
        progress bar show the window's mean over its steps and over every rank's batch. A step whose
        loss or gradients are not finite changes nothing (:func:`optimisation_step`), neither does any
        step after it, and the run stops at the next check naming the first such step. On CUDA the
        data wait and compute times are host-side (the device is not synchronised per step).
        """
        guard = self._start_epoch(epoch)
        meter = _EpochMeter(self.device)
        bar = self._progress_bar(epoch)
        batches = iter(self.loader)
        for _ in range(self.steps_per_epoch):
            t0 = time.perf_counter()
            batch = self._next_batch(batches)
            if batch is None:
                break
            t1 = time.perf_counter()
            out = self._step(batch, guard)
            meter.add(out, batch, wait=t1 - t0, compute=time.perf_counter() - t1)
            bar.update(1)
            if self.state.step % max(1, self.cfg.train.log_every) == 0:
                means = self._log_window(meter, epoch)
                bar.set_postfix(loss=f"{means['loss']:.4f}")
        if meter.window_steps:  # the epoch's last steps since the last log line, checked before the checkpoint
            meter.close_window(self._check_and_reduce(meter.window, meter.window_steps, meter.keys, epoch))
        bar.close()
        return meter.epoch_means()

    def _start_epoch(self, epoch: int) -> StepGuard:
        """Training mode, the sampler's epoch, the non-finite flags reset; returns the epoch's step guard."""
        self.model.train()
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        self._window_start_step = self.state.step  # the last step checked
        self._healthy = torch.ones((), dtype=torch.bool, device=self.device)
        self._good = torch.zeros((), dtype=torch.long, device=self.device)  # healthy steps since the check
        return StepGuard(self.method, self.optimizer, device_side=self.device_side_guard)

    def _progress_bar(self, epoch: int):
        return progress_bar(
            total=self.steps_per_epoch,
            desc=f"{self.kind} epoch {epoch + 1}/{self.epochs}",
            unit="step",
            disable=not (self.is_main and self.cfg.train.progress),
            dynamic_ncols=True,
            leave=False,
        )

    def _next_batch(self, batches) -> dict | None:
        """The loader's next batch as the model takes it (on the device), or None at the loader's end."""
        try:
            batch = next(batches)
        except StopIteration:
            return None
        batch = to_model_input(batch, self.cfg.data, self.device, channels_last=self.cfg.train.channels_last)
        self._last_batch = batch
        return batch

    def _step(self, batch: dict, guard: StepGuard) -> dict[str, torch.Tensor]:
        """One guarded optimiser step and one step of the schedule."""
        out, self._healthy = optimisation_step(
            self.model, self.method, self.optimizer, batch, self.cfg, self.device, self._healthy, guard
        )
        self._good += self._healthy
        self.scheduler.step()
        self.state.step += 1
        return out

    def _log_window(self, meter: _EpochMeter, epoch: int) -> dict[str, float]:
        """Checks the flag, closes the window and writes its log line; returns the window's means."""
        means = meter.close_window(self._check_and_reduce(meter.window, meter.window_steps, meter.keys, epoch))
        self.logger.log(
            "train",
            self.state.step,
            epoch=epoch + 1,
            lr=self.optimizer.param_groups[0]["lr"],
            samples_per_s=meter.window_rate(),
            **means,
        )
        return means

    def method_diagnostics(self) -> dict[str, float]:
        """The method's ``diagnostics(batch) -> dict[str, float]`` (e.g. AVCL's gradient ratios), if it has
        one, on the epoch's last batch; the values join the epoch record."""
        fn = getattr(self.method, "diagnostics", None)
        batch, self._last_batch = getattr(self, "_last_batch", None), None
        if fn is None or batch is None:
            return {}
        return {k: float(v) for k, v in fn(batch).items()}

    def _check_and_reduce(
        self, window: torch.Tensor | None, steps: int, keys: list[str], epoch: int
    ) -> dict[str, float]:
        """Stops the run (on every rank) when a step since the last check had a non-finite loss or
        gradient; otherwise returns the means of ``window`` (sums of ``keys`` over ``steps`` steps) over
        the steps and the ranks."""
        world = dist.world_size()
        unhealthy = (~self._healthy).to(torch.float64).reshape(1)
        good = self._good.to(torch.float64).reshape(1)
        sums = (
            window.to(torch.float64) if window is not None else torch.zeros(0, dtype=torch.float64, device=self.device)
        )
        packed = self._all_finite(torch.cat([unhealthy, good, sums]))
        if packed[0] > 0:
            # the ranks' flags agree (a non-finite loss anywhere makes every rank's gradients NaN)
            first_bad = self._window_start_step + int(packed[1]) // world + 1
            last = self.out / "last.pt"
            kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
            amp = amp_dtype(self.device, self.cfg.train.amp)
            hint = (
                f" Mixed precision is on (train.amp={self.cfg.train.amp}, {str(amp).removeprefix('torch.')}): "
                "try train.amp=off."
                if amp is not None
                else ""
            )
            raise TrainingDiverged(
                f"loss is not finite at step {first_bad} (epoch {epoch + 1}); no update was applied from that "
                f"step on, {kept}. Lower optim.lr or check the data.{hint}"
            )
        self._window_start_step = self.state.step
        self._good.zero_()
        values = (packed[2:] / (max(steps, 1) * world)).tolist()
        return dict(zip(keys, values))

    def _all_finite(self, packed: torch.Tensor) -> torch.Tensor:
        """Sums ``packed`` (the non-finite flag, the healthy-step count, the window's sums) over the ranks:
        the one collective and host synchronisation of a log interval; every rank stops together."""
        if dist.is_distributed():
            packed = packed.clone()
            torch.distributed.all_reduce(packed)
        return packed.cpu()
