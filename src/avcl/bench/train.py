"""``avcl bench train``: AVCL training speed per backbone: samples/s, data wait vs compute, and MFU.

For each backbone the benchmark builds AVCL and its training loader as ``avcl pretrain`` does (the
engine's run builder, :mod:`avcl.engine.run`: same config, loader, ``to_model_input``, autocast,
optimiser, memory format and torch.compile, one process), then
times ``warmup + steps`` optimiser steps on real batches from a prepared cache. Only the last
``steps`` are measured, so worker start-up, cuDNN's first calls and ``torch.compile`` stay out of the
figures. As in the trainer, a step's *data wait* is the time to get the next batch from the loader and
through ``to_model_input``; *compute* is forward, backward and the guarded optimiser step (the trainer's
:func:`~avcl.engine.trainer.optimisation_step`; the benchmark synchronises CUDA after it to time it, the
trainer does not).
On a CPU shared with other programs the wall-clock figures drop with the load; the CPU time the
training process received during compute (all its threads) does not, so ``gflop_per_cpu_s`` is the
figure to compare between CPU runs.

Training FLOPs per sample are counted by ``FlopCounterMode`` over one forward and backward of the
method on the first batch (see :mod:`avcl.bench.flops`), so

    MFU = samples/s x FLOPs per sample / peak FLOP/s of the device.

The peak is the dense bf16 tensor-core figure of the GPU's data sheet; on the CPU there is no
trustworthy peak, so the achieved GFLOP/s is reported and MFU is left out (None).

Presets: on CUDA ``configs/avcl_<backbone>.yaml`` (16x112x112 clips, 112x112 spectrogram crops);
on the CPU ``configs/demo_cpu.yaml`` (quarter width, 8x56x56) with ``model.backbone`` set, so a CPU
run takes minutes. ``config`` replaces the preset for every backbone; ``overrides`` apply on top.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import Iterator, Sequence

import torch

from avcl import fileio, presets
from avcl.bench import BACKBONES
from avcl.bench.flops import device_peak, training_flops
from avcl.bench.host import machine
from avcl.config import Config, get_key, load_config, set_key
from avcl.data.cache import PreparedCache
from avcl.data.transforms import to_model_input
from avcl.engine.run import Recipe, Training, build_training, start_run
from avcl.engine.setup import check_amp, resolve_device
from avcl.engine.trainer import StepGuard, optimisation_step
from avcl.errors import UserError
from avcl.methods import build_method
from avcl.methods.base import count_parameters

# (measured steps, warm-up steps) per backbone when not given: a GPU step is tens of milliseconds, a
# CPU step of the demo preset at batch 64 about a second or two.
DEFAULT_STEPS = {"cuda": (30, 10), "cpu": (4, 1)}
SWITCHES = (
    "train.amp",
    "train.channels_last",
    "train.compile",
    "data.num_workers",
    "data.pin_memory",
    "data.persistent_workers",
    "data.prefetch_factor",
    "data.normalize_on_device",
    "data.decode_device",
)


def preset_path(backbone: str, device: torch.device) -> Path:
    """The paper preset of ``backbone`` on CUDA, the CPU demo preset elsewhere."""
    return presets.preset_path(
        f"avcl_{backbone}" if device.type == "cuda" else "demo_cpu", hint="; pass one with --config"
    )


def bench_config(
    backbone: str,
    device: torch.device,
    batch_size: int,
    config: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
) -> tuple[Config, str]:
    """The run's config (``config`` or the default preset, then ``overrides``) with the backbone and the
    per-process batch size of the benchmark; returns it with the preset's path."""
    preset = Path(config) if config is not None else preset_path(backbone, device)
    cfg = load_config(preset, overrides)
    set_key(cfg, "model.backbone", backbone)
    cfg.train.batch_size = batch_size
    return cfg, str(preset)


def _batches(loader) -> Iterator[dict]:
    """Batches epoch after epoch, as training draws them (``set_epoch`` before each epoch)."""
    for epoch in itertools.count():
        loader.sampler.set_epoch(epoch)
        yield from loader


SYNTHETIC_CLASSES = 12  # classes of the random labels of --data synthetic


def _random_batches(cfg: Config, device: torch.device, count: int = 4) -> Iterator[dict]:
    """``count`` batches of random uint8 clips, spectrogram crops and labels made on ``device``, cycled:
    what the loader would deliver, at no data cost (``avcl bench train --data synthetic``)."""
    d, size = cfg.data, cfg.train.batch_size
    g = torch.Generator(device=device)
    g.manual_seed(cfg.train.seed)
    made = [
        {
            "video": torch.randint(
                0, 256, (size, 3, d.clip_len, d.crop_size, d.crop_size), dtype=torch.uint8, device=device, generator=g
            ),
            "audio": torch.randn(size, 1, d.audio_crop, d.audio_crop, device=device, generator=g),
            "label": torch.randint(0, SYNTHETIC_CLASSES, (size,), device=device, generator=g),
            "index": torch.arange(size, device=device),
        }
        for _ in range(count)
    ]
    return itertools.cycle(made)


def _precision(device: torch.device, amp: str) -> str:
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return "fp32"
    return "fp16" if amp == "fp16" else "bf16"


def bench_backbone(
    cfg: Config,
    cache: PreparedCache | None,
    split: str | None,
    device: torch.device,
    steps: int,
    warmup: int,
    peak_tflops: float | None,
) -> dict:
    """Times ``warmup + steps`` training steps of ``cfg``'s method; returns the figures of the last ``steps``.

    ``cache=None``: random batches made on the device (compute only, no loader)."""
    training = _training(cfg, cache, split, device)
    batches = _random_batches(cfg, device) if training.loader is None else _batches(training.loader)
    first = to_model_input(next(batches), cfg.data, device, channels_last=cfg.train.channels_last)
    flops = training_flops(training.method, first, device, cfg.train.amp) / cfg.train.batch_size
    del first
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, losses = _timed_steps(training, batches, cfg, device, steps, warmup)
    result = _figures(cfg, training, times, losses, flops, steps, warmup, peak_tflops)
    if device.type == "cuda":
        result["max_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    if training.loader is not None and hasattr(training.loader, "close"):
        training.loader.close()
    del training, batches  # stops persistent workers now, not at the next garbage collection
    return result


def _training(cfg: Config, cache: PreparedCache | None, split: str | None, device: torch.device) -> Training:
    """The method, its loader and its optimiser as ``avcl pretrain`` builds them (one process)."""
    setup = start_run(cfg, device=device, cache=cache, data=False)
    classes = SYNTHETIC_CLASSES if cache is None else len(cache.classes)
    method = build_method(cfg, num_classes=classes or None)
    training = build_training(setup, method, Recipe.pretraining(cfg), split=split, distributed=False)
    if training.loader is not None and len(training.loader) == 0:
        raise UserError(
            f"{cache.root}: {len(training.dataset)} usable videos, fewer than one batch of {cfg.train.batch_size}; "
            "lower --batch-size or use a larger cache"
        )
    return training


def _timed_steps(
    training: Training, batches: Iterator[dict], cfg: Config, device: torch.device, steps: int, warmup: int
) -> tuple[dict[str, float], list[float]]:
    """Runs ``warmup + steps`` guarded optimiser steps as the trainer does; returns the data wait, compute
    and compute CPU time summed over the last ``steps``, and every step's loss."""
    times = {"wait": 0.0, "compute": 0.0, "compute_cpu": 0.0}
    losses = []
    guard = StepGuard(training.method, training.optimizer, device_side=device.type != "cpu")  # as the trainer's
    for step in range(warmup + steps):
        t0 = time.perf_counter()
        batch = to_model_input(next(batches), cfg.data, device, channels_last=cfg.train.channels_last)
        t1, c1 = time.perf_counter(), time.process_time()
        out, healthy = optimisation_step(  # the trainer's
            training.model, training.method, training.optimizer, batch, cfg, device, guard=guard
        )
        if device.type == "cuda":  # the benchmark waits for each step to time it; the trainer does not
            torch.cuda.synchronize(device)
        t2, c2 = time.perf_counter(), time.process_time()
        if not bool(healthy):
            raise UserError(
                f"{cfg.model.backbone}: the loss is not finite at step {step + 1}; "
                "the figures of a diverging run mean nothing (lower optim.lr)"
            )
        losses.append(float(out["loss"].detach()))
        if step >= warmup:
            times["wait"] += t1 - t0
            times["compute"] += t2 - t1
            times["compute_cpu"] += c2 - c1
    return times, losses


def _figures(
    cfg: Config,
    training: Training,
    times: dict[str, float],
    losses: list[float],
    flops: float,
    steps: int,
    warmup: int,
    peak_tflops: float | None,
) -> dict:
    wait, compute, compute_cpu = times["wait"], times["compute"], times["compute_cpu"]
    step_time = (wait + compute) / steps
    samples_per_s = cfg.train.batch_size / step_time
    achieved = samples_per_s * flops
    return {
        "backbone": cfg.model.backbone,
        "clip": [cfg.data.clip_len, cfg.data.crop_size, cfg.data.crop_size],
        "audio": [cfg.data.audio_crop, cfg.data.audio_crop],
        "width": cfg.model.width,
        "depth": cfg.model.depth,
        "batch_size": cfg.train.batch_size,
        "videos": len(training.dataset) if training.dataset is not None else 0,
        "warmup_steps": warmup,
        "steps": steps,
        "parameters": count_parameters(training.method),
        "flops_per_sample": flops,
        "step_time_s": step_time,
        "data_wait_s": wait / steps,
        "compute_s": compute / steps,
        "compute_cpu_s": compute_cpu / steps,
        "data_wait_fraction": wait / (wait + compute),
        "samples_per_s": samples_per_s,
        "achieved_tflops": achieved / 1e12,
        "gflop_per_cpu_s": flops * cfg.train.batch_size * steps / compute_cpu / 1e9 if compute_cpu > 0 else None,
        "mfu": achieved / (peak_tflops * 1e12) if peak_tflops else None,
        "loss_first": losses[0],
        "loss_last": losses[-1],
    }


def run_train_bench(
    cache: str | os.PathLike | None,
    *,
    out: str | os.PathLike | None = None,
    backbones: Sequence[str] = BACKBONES,
    batch_size: int = 64,
    steps: int | None = None,
    warmup: int | None = None,
    config: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    split: str | None = "train",
    peak_tflops: float | None = None,
    progress: bool = True,
) -> dict:
    """AVCL training speed for each of ``backbones`` on batches of the prepared ``cache``.

    ``batch_size`` is per process (the benchmark runs one); ``steps`` measured steps follow ``warmup``
    unmeasured ones (defaults: 30 and 10 on CUDA, 4 and 1 on the CPU). ``split``: the split to draw
    from; all videos of the cache when it holds fewer than one batch (or ``split=None``).
    ``peak_tflops`` replaces the device's peak from the table (for a GPU missing from it).
    Writes ``bench_train.json`` under ``out`` when given; returns what it writes. ``cache=None``: random
    batches made on the device (``--data synthetic``: the compute-only figures, no loader, no decoding).
    """
    _check_choices(backbones, batch_size)
    cache = cache if isinstance(cache, PreparedCache) or cache is None else PreparedCache(cache)
    if cache is not None and split is not None and len(cache.indices(split)) < batch_size:
        split = None
    # train.device (auto, or set by the preset or an override) picks the device, which picks the preset
    base = load_config(config, overrides)
    device = resolve_device(base.train.device)
    check_amp(device, base.train.amp)  # bf16 and fp16 are for CUDA only
    steps, warmup = _step_counts(device, steps, warmup)
    results = _description(device, peak_tflops, cache, split)
    for backbone in backbones:
        cfg, preset = bench_config(backbone, device, batch_size, config, overrides)
        if progress:
            print(
                f"  {backbone}: {preset} {' '.join(overrides)} "
                f"(batch {batch_size}, {warmup} + {steps} steps on {device})",
                flush=True,
            )
        run = {
            "preset": preset,
            "precision": _precision(device, cfg.train.amp),
            "settings": {key: get_key(cfg, key) for key in SWITCHES},
            **bench_backbone(cfg, cache, split, device, steps, warmup, results["peak_tflops"]),
        }
        results["runs"].append(run)
        if progress:
            print(
                f"    {run['samples_per_s']:.1f} samples/s, data wait {100 * run['data_wait_fraction']:.1f}%, "
                f"{run['flops_per_sample'] / 1e9:.2f} GFLOP/sample",
                flush=True,
            )
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        fileio.write_json(Path(out) / "bench_train.json", results, indent=1)
    return results


def _check_choices(backbones: Sequence[str], batch_size: int) -> None:
    unknown = [b for b in backbones if b not in BACKBONES]
    if unknown or not backbones:
        raise UserError(
            f"unknown backbone(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(BACKBONES)}"
        )
    if batch_size < 1:
        raise UserError(f"--batch-size must be positive, got {batch_size}")


def _step_counts(device: torch.device, steps: int | None, warmup: int | None) -> tuple[int, int]:
    """``(steps, warmup)``: those given, else the device's defaults (:data:`DEFAULT_STEPS`)."""
    default_steps, default_warmup = DEFAULT_STEPS["cuda" if device.type == "cuda" else "cpu"]
    steps = default_steps if steps is None else steps
    warmup = default_warmup if warmup is None else warmup
    if steps < 1 or warmup < 0:
        raise UserError(f"--steps must be at least 1 and --warmup at least 0, got {steps} and {warmup}")
    return steps, warmup


def _description(
    device: torch.device, peak_tflops: float | None, cache: PreparedCache | None, split: str | None
) -> dict:
    """The machine, the device and its peak, and the data; with an empty list of ``runs`` to fill."""
    peak = device_peak(device, peak_tflops)
    host = {**machine(), "torch_threads": torch.get_num_threads()}
    if device.type == "cpu":
        peak["device_name"] = host["cpu"]
    return {
        "machine": host,
        "device": str(device),
        **peak,
        "cache": "synthetic (random batches on the device)" if cache is None else str(cache.root),
        "split": split or "all",
        "runs": [],
    }


def format_train_table(results: dict) -> str:
    """A markdown table of the runs: throughput, the step split into data wait and compute, FLOPs, MFU.

    On the CPU the FLOP rate is in GFLOP/s, with GFLOP per CPU-second of the training process beside it.
    """
    cpu = results["device"] == "cpu"
    rate = "achieved GFLOP/s (per CPU-second)" if cpu else "achieved TFLOP/s"
    lines = [
        "| backbone | clip | audio | batch | precision | samples/s | step (ms) | data wait (ms) | "
        f"compute (ms) | data wait | GFLOP/sample | {rate} | MFU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        mfu = "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        if cpu:
            per_cpu = "-" if r["gflop_per_cpu_s"] is None else f"{r['gflop_per_cpu_s']:.1f}"
            achieved = f"{1e3 * r['achieved_tflops']:.1f} ({per_cpu})"
        else:
            achieved = f"{r['achieved_tflops']:.1f}"
        lines.append(
            f"| {r['backbone']} (width {r['width']:g}) | {'x'.join(map(str, r['clip']))} "
            f"| {'x'.join(map(str, r['audio']))} "
            f"| {r['batch_size']} | {r['precision']} | {r['samples_per_s']:.1f} | {1e3 * r['step_time_s']:.0f} "
            f"| {1e3 * r['data_wait_s']:.1f} | {1e3 * r['compute_s']:.0f} | {100 * r['data_wait_fraction']:.1f}% "
            f"| {r['flops_per_sample'] / 1e9:.2f} | {achieved} | {mfu} |"
        )
    peak = results["peak_tflops"]
    m = results["machine"]
    load = "unknown" if m.get("load_1min") is None else f"{m['load_1min']:.1f}"
    lines.append(
        f"\ndevice: {results['device']} ({results['device_name']}), peak "
        f"{'n/a' if peak is None else f'{peak:g} TFLOP/s'} ({results['peak_source']}); "
        f"{m['cores']} cores, {m['torch_threads']} torch threads, load average {load}; "
        f"cache {results['cache']} (split {results['split']})"
    )
    return "\n".join(lines)
