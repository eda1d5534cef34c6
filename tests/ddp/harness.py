"""Run a worker module under ``torchrun`` on the CPU (gloo) and collect what each rank saved.

Usage from a test::

    from ddp.harness import run_ddp
    results = run_ddp("ddp.worker_losses", "--samples-per-rank", "4")      # [rank 0's result, rank 1's result]

and in the worker module (run as ``python -m``, with ``tests/`` on the path)::

    from ddp.harness import save_result
    rank, world, _, device = avcl.distributed.setup()
    ...
    save_result(rank, {"loss": loss.detach(), ...})

Worker options must not be prefixes of torchrun's own (argparse would read ``--n`` as ``--nnodes``):
use long names such as ``--samples-per-rank``. The worker sees ``CUDA_VISIBLE_DEVICES=""`` (so ``setup()``
picks gloo) and ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

TESTS_DIR = Path(__file__).resolve().parent.parent
RESULT_DIR_ENV = "AVCL_DDP_RESULTS"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def save_result(rank: int, result: Any) -> None:
    """Called by a worker: store this rank's result where :func:`run_ddp` collects it."""
    torch.save(result, Path(os.environ[RESULT_DIR_ENV]) / f"rank{rank}.pt")


def run_ddp(module: str, *args: str, nproc: int = 2, timeout: float = 120.0) -> list[Any]:
    """``python -m torch.distributed.run --nproc_per_node=nproc -m module args``; one result per rank.

    Raises ``AssertionError`` with the workers' output when the launch fails or a rank saved nothing.
    """
    with tempfile.TemporaryDirectory(prefix="avcl-ddp-") as out:
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", **{RESULT_DIR_ENV: out})
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR), env.get("PYTHONPATH", "")) if p)
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={nproc}",
            "--master_addr=127.0.0.1",
            f"--master_port={free_port()}",
            "-m",
            module,
            *args,
        ]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited with {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        paths = [Path(out) / f"rank{r}.pt" for r in range(nproc)]
        missing = [p.name for p in paths if not p.exists()]
        if missing:
            raise AssertionError(f"{module}: no result from {missing}\n{proc.stdout}\n{proc.stderr}")
        return [torch.load(p, weights_only=False) for p in paths]
