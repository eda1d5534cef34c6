"""Each rank trains every self-supervised method of the registry for a few steps on its N rows of a global batch of 2N.

The tiny configuration (``tiny_config``), the batches (``global_batch``) and the training run
(``run_method``) are shared with ``tests/test_methods.py``, which runs the same steps in one process
on all 2N rows as the reference.

BatchNorm normalises with the statistics of the batch it sees, so a rank's N samples and the
single process's 2N samples are normalised differently by design (the methods keep local BN, as
their papers). The equivalence runs therefore put every BatchNorm layer in eval mode (running
statistics, which stay fixed); everything else (negatives, cross-correlations, queues, momentum
encoders, intra negatives) runs as in training.
"""

from __future__ import annotations

import argparse
from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel

from avcl import distributed
from avcl.config import Config, parse_override, set_key, validate
from avcl.methods import REGISTRY, build_method
from ddp.harness import save_result


def method_names() -> tuple[str, ...]:
    """Every self-supervised method of the registry: a method registered there is trained here."""
    return tuple(name for name, entry in REGISTRY.items() if not entry.load().supervised)


def video_only() -> set[str]:
    """The methods without an audio encoder."""
    return {name for name in method_names() if not REGISTRY[name].load().uses_audio}


METHOD_NAMES = method_names()
VIDEO_ONLY = video_only()
STEPS = 3
# Barlow Twins' loss (and CGRA, 90% of AVCL's) sums over feature dimensions, so its gradients are ~30x the others':
# a smaller step keeps three steps in the range where float32 rounding stays small
LR = {"barlow": 0.001, "avcl": 0.001}
DEFAULT_LR = 0.01
QUEUE = 20  # 3 steps of 8 keys wrap around a queue of 20 rows once


def tiny_config(name: str, **method_options) -> Config:
    """r3d at width 0.125 (8 to 64 channels), small heads, then the overrides the method's registry entry
    declares for tiny inputs (``MethodEntry.tiny``: e.g. a queue of 8 keys, TCGL's 4-frame snippets);
    ``method_options`` override fields of ``cfg.method``."""
    cfg = Config()
    cfg.method.name = name
    cfg.model.width = 0.125
    m = cfg.method
    m.proj_hidden, m.proj_dim, m.pred_hidden = 32, 16, 16
    for text in REGISTRY[name].tiny:
        set_key(cfg, *parse_override(text), source=f"the registry entry of {name}")
    for key, value in method_options.items():
        set_key(cfg, f"method.{key}", value)
    validate(cfg)
    return cfg


def global_batch(n_global: int, step: int) -> dict[str, Tensor]:
    """A batch dict of ``n_global`` samples: video (n, 3, 4, 16, 16), audio (n, 1, 16, 16), and TCGL's
    tuple (n, 3, 3, 4, 16, 16) of three 4-frame snippets with its order label (n,) in 0..5."""
    g = torch.Generator().manual_seed(1000 + step)
    batch = {
        "video": torch.randn(n_global, 3, 4, 16, 16, generator=g),
        "audio": torch.randn(n_global, 1, 16, 16, generator=g),
        "label": torch.randint(0, 3, (n_global,), generator=g),
        "index": torch.arange(n_global) + 100 * step,
    }
    batch["tuple"] = torch.randn(n_global, 3, 3, 4, 16, 16, generator=g)
    batch["order"] = torch.randint(0, 6, (n_global,), generator=g)
    return batch


def freeze_batch_norm(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, _BatchNorm):
            m.eval()


def run_method(name: str, n_global: int, rows: slice, wrap: Callable[[nn.Module], nn.Module] = lambda m: m) -> dict:
    """``STEPS`` SGD steps on ``rows`` of each global batch: per step the loss and every parameter's
    gradient, then the final state dict (parameters, momentum copies, queues, counters)."""
    torch.manual_seed(0)  # the same initial weights and queues on every rank and in the reference
    method = build_method(tiny_config(name, moco_queue=QUEUE))
    method.train()
    freeze_batch_norm(method)
    model = wrap(method)
    optimizer = torch.optim.SGD(method.parameters(), lr=LR.get(name, DEFAULT_LR))
    steps = []
    for step in range(STEPS):
        batch = {k: v[rows] for k, v in global_batch(n_global, step).items()}
        loss = model(batch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}
        steps.append({"loss": loss.detach(), "grads": grads})
        optimizer.step()
        method.on_step_end()
    return {"steps": steps, "state": {k: v.clone() for k, v in method.state_dict().items()}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples-per-rank", type=int, default=4)
    args = parser.parse_args()
    rank, world, _, device = distributed.setup()
    assert device.type == "cpu" and world > 1, (device, world)
    torch.set_num_threads(1)
    n = args.samples_per_rank
    rows = slice(rank * n, (rank + 1) * n)

    def ddp(method: nn.Module) -> nn.Module:
        return DistributedDataParallel(method, find_unused_parameters=method.find_unused_parameters)

    result = {name: run_method(name, n * world, rows, wrap=ddp) for name in METHOD_NAMES}
    distributed.barrier()
    save_result(rank, result)
    distributed.cleanup()


if __name__ == "__main__":
    main()
