"""Real multi-process checks (torchrun, gloo on CPU): 2 processes x N samples == 1 process x 2N.

Convention (documented in ``avcl.losses``): each rank's SelfCL loss is the mean over its own anchors,
the CGRA loss is the full global value on every rank. The reference is one process on the 2N rows;
the ranks' losses average to it, DDP's averaged parameter gradients equal its gradients, and each
rank's input gradients equal ``world_size`` times its gradients for that rank's rows.
"""

from __future__ import annotations

import pytest
import torch
from ddp.harness import run_ddp
from ddp.worker_losses import CASES, run_case

from avcl import distributed

N_PER_RANK, WORLD = 4, 2

pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def ranks() -> list[dict]:
    return run_ddp("ddp.worker_losses", "--samples-per-rank", str(N_PER_RANK), nproc=WORLD)


def test_setup_reads_torchrun_environment_and_uses_gloo_on_cpu(ranks):
    assert [r["setup"] for r in ranks] == [(0, 2, 0, "cpu"), (1, 2, 1, "cpu")]


def test_single_process_helpers_are_identities():
    assert not distributed.is_distributed()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    x = torch.randn(3, 2)
    assert distributed.gather_with_grad(x) is x and distributed.all_reduce_with_grad(x) is x
    assert torch.equal(distributed.gather_no_grad(x), x)
    assert distributed.setup()[:3] == (0, 1, 0)


def test_collectives_gather_in_rank_order_and_route_gradients_back(ranks):
    for rank, r in enumerate(ranks):
        c = r["collectives"]
        assert (int(c["rank"]), int(c["world"]), bool(c["is_main"])) == (rank, 2, rank == 0)
        assert torch.equal(c["gathered"], torch.tensor([[1.0] * 3] * 2 + [[2.0] * 3] * 2))
        # every rank weighted the gathered tensor by (its rank + 1): 1 + 2
        assert torch.equal(c["gather_grad"], torch.full((2, 3), 3.0))
        assert torch.equal(c["reduced"], torch.tensor([3.0])) and torch.equal(c["reduce_grad"], torch.tensor([3.0]))
        assert torch.equal(c["gather_no_grad"], torch.tensor([0.0, 1, 2, 10, 11, 12]))


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_ranks_match_one_process_with_the_global_batch(ranks, case):
    ref = run_case(case, N_PER_RANK * WORLD, slice(None))
    losses = torch.stack([r[case]["loss"] for r in ranks])
    torch.testing.assert_close(losses.mean(), ref["loss"], rtol=1e-5, atol=1e-6)
    if case.startswith("cross_correlation"):  # the global value on every rank
        torch.testing.assert_close(losses, ref["loss"].expand(WORLD), rtol=1e-5, atol=1e-6)
    for rank, r in enumerate(ranks):
        rows = slice(rank * N_PER_RANK, (rank + 1) * N_PER_RANK)
        for key in ("grad.x_v", "grad.x_a"):
            torch.testing.assert_close(r[case][key] / WORLD, ref[key][rows], rtol=1e-4, atol=1e-6)
        params = [k for k in ref if k.startswith("param.")]
        assert len(params) == 4
        for key in params:
            torch.testing.assert_close(r[case][key], ref[key], rtol=1e-4, atol=1e-6)
