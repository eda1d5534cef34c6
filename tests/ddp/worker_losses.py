"""Each rank takes its N rows of a global batch of 2N and runs the losses through a DDP-wrapped model.

The cases (``CASES``) and the step (``run_case``) are shared with ``tests/test_distributed.py``, which
runs the same step in one process on all 2N rows as the reference.
"""

from __future__ import annotations

import argparse
from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from avcl import distributed
from avcl.losses import cross_correlation_loss, info_nce_cross_modal
from ddp.harness import save_result

IN_DIM, EMB_DIM = 6, 5

CASES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "info_nce": lambda v, a: info_nce_cross_modal(v, a, temperature=0.5),
    "info_nce_t0.1": lambda v, a: info_nce_cross_modal(v, a, temperature=0.1),
    "cross_correlation": lambda v, a: cross_correlation_loss(v, a, lambd=0.005, standardize=True),
    "cross_correlation_eq6": lambda v, a: cross_correlation_loss(v, a, lambd=0.005, standardize=False),
    # the AVCL total, Eq. 11
    "avcl_total": lambda v, a: 0.9 * cross_correlation_loss(v, a) + 0.1 * info_nce_cross_modal(v, a),
}


class Embedder(nn.Module):
    """Two linear maps, one per modality: the smallest model with parameters behind each input."""

    def __init__(self) -> None:
        super().__init__()
        self.video = nn.Linear(IN_DIM, EMB_DIM)
        self.audio = nn.Linear(IN_DIM, EMB_DIM)

    def forward(self, x_v: Tensor, x_a: Tensor) -> tuple[Tensor, Tensor]:
        return self.video(x_v), self.audio(x_a)


def global_batch(case: str, n_global: int) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """The same inputs and initial weights on every rank (seeded by the case)."""
    g = torch.Generator().manual_seed(sorted(CASES).index(case))
    x_v = torch.randn(n_global, IN_DIM, generator=g)
    x_a = x_v @ torch.randn(IN_DIM, IN_DIM, generator=g) + 0.5 * torch.randn(n_global, IN_DIM, generator=g) + 1.0
    weights = {name: torch.randn(p.shape, generator=g) * 0.5 for name, p in Embedder().named_parameters()}
    return x_v, x_a, weights


def run_case(
    case: str, n_global: int, rows: slice, wrap: Callable[[nn.Module], nn.Module] = lambda m: m
) -> dict[str, Tensor]:
    """One forward/backward on ``rows`` of the global batch; the loss and every gradient."""
    x_v, x_a, weights = global_batch(case, n_global)
    model = Embedder()
    model.load_state_dict(weights)
    step_model = wrap(model)
    x_v = x_v[rows].clone().requires_grad_(True)
    x_a = x_a[rows].clone().requires_grad_(True)
    loss = CASES[case](*step_model(x_v, x_a))
    loss.backward()
    grads = {f"param.{name}": p.grad.clone() for name, p in model.named_parameters()}
    return {"loss": loss.detach(), "grad.x_v": x_v.grad, "grad.x_a": x_a.grad, **grads}


def collectives(rank: int, world: int) -> dict[str, Tensor]:
    """The helpers of avcl.distributed on rank-dependent values (checked exactly by the test)."""
    x = torch.full((2, 3), float(rank + 1), requires_grad=True)
    gathered = distributed.gather_with_grad(x)
    # rank r weights the whole gathered tensor by (r + 1): x's gradient sums all ranks' weights
    (gathered * (rank + 1)).sum().backward()
    y = torch.tensor([float(rank + 1)], requires_grad=True)
    reduced = distributed.all_reduce_with_grad(y)
    (reduced * (rank + 1)).sum().backward()
    return {
        "rank": torch.tensor(distributed.rank()),
        "world": torch.tensor(distributed.world_size()),
        "is_main": torch.tensor(distributed.is_main()),
        "gathered": gathered.detach(),
        "gather_grad": x.grad,
        "reduced": reduced.detach(),
        "reduce_grad": y.grad,
        "gather_no_grad": distributed.gather_no_grad(torch.arange(3.0) + 10 * rank),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples-per-rank", type=int, default=4)
    args = parser.parse_args()
    rank, world, local_rank, device = distributed.setup()
    assert device.type == "cpu" and world > 1, (device, world)
    n_global = args.samples_per_rank * world
    rows = slice(rank * args.samples_per_rank, (rank + 1) * args.samples_per_rank)
    result: dict = {"setup": (rank, world, local_rank, str(device)), "collectives": collectives(rank, world)}
    for case in CASES:
        result[case] = run_case(case, n_global, rows, wrap=DistributedDataParallel)
    distributed.barrier()
    save_result(rank, result)
    distributed.cleanup()


if __name__ == "__main__":
    main()
