"""``avcl bench train`` on the CPU: a tiny preset, a few steps through a real DataLoader worker.

Also the two sides of MFU on their own: the FLOP count against a convolution counted by hand, and the
table of GPU peaks against the names CUDA reports.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY, run_cli
from torch import nn

from avcl.bench.flops import cuda_peak_tflops, device_peak, training_flops
from avcl.bench.train import format_train_table, run_train_bench
from avcl.errors import UserError


def test_bench_train_measures_samples_flops_and_data_wait_on_cpu(tiny_cache, tmp_path):
    out = tmp_path / "bench"
    results = run_train_bench(
        tiny_cache,
        out=out,
        backbones=("r3d",),
        batch_size=4,
        steps=2,
        warmup=1,
        overrides=[*TINY, "data.num_workers=1"],
        progress=False,
    )
    (run,) = results["runs"]
    assert run["backbone"] == "r3d" and run["clip"] == [4, 32, 32] and run["audio"] == [28, 28]
    assert run["samples_per_s"] > 0 and run["flops_per_sample"] > 0
    assert 0.0 <= run["data_wait_fraction"] <= 1.0
    assert run["step_time_s"] == pytest.approx(run["data_wait_s"] + run["compute_s"])
    assert run["samples_per_s"] == pytest.approx(4 / run["step_time_s"])
    assert run["achieved_tflops"] == pytest.approx(run["samples_per_s"] * run["flops_per_sample"] / 1e12)
    assert run["precision"] == "fp32" and run["settings"]["data.num_workers"] == 1
    assert results["device"] == "cpu" and results["peak_tflops"] is None and run["mfu"] is None
    assert json.loads((out / "bench_train.json").read_text()) == results
    table = format_train_table(results)
    assert "| r3d (width 0.125) | 4x32x32 | 28x28 | 4 | fp32 |" in table and "| n/a |" in table
    assert run["compute_cpu_s"] > 0
    assert run["gflop_per_cpu_s"] == pytest.approx(4 * run["flops_per_sample"] / run["compute_cpu_s"] / 1e9)


def test_bench_train_command_writes_json_and_prints_the_table(tiny_cache, tmp_path):
    proc = run_cli(
        "bench",
        "train",
        "--cache",
        str(tiny_cache),
        "--out",
        str(tmp_path),
        "--backbones",
        "r21d",
        "--batch-size",
        "4",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--quiet",
        *TINY,
    )
    results = json.loads((tmp_path / "bench_train.json").read_text())
    assert [r["backbone"] for r in results["runs"]] == ["r21d"] and results["runs"][0]["samples_per_s"] > 0
    assert "| r21d (width 0.125) |" in proc.stdout and "bench_train.json" in proc.stdout


def test_bench_train_refuses_unknown_backbones_and_batches_larger_than_the_cache(tiny_cache):
    with pytest.raises(UserError, match="unknown backbone"):
        run_train_bench(tiny_cache, backbones=("r50",), overrides=TINY, progress=False)
    with pytest.raises(UserError, match="fewer than one batch of 64"):
        run_train_bench(tiny_cache, backbones=("r3d",), batch_size=64, steps=1, overrides=TINY, progress=False)


class _OneConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 8, kernel_size=3, padding=1, bias=False)

    def forward(self, batch: dict) -> dict:
        return {"loss": self.conv(batch["video"]).square().mean()}


def test_training_flops_count_forward_and_backward_convolutions():
    batch = {"video": torch.randn(2, 3, 4, 8, 8)}
    forward = 2 * (3 * 27) * 8 * (4 * 8 * 8) * 2  # 2 FLOPs per multiply-add, per output element, per sample
    # the input needs no gradient, so the backward computes the weight gradient only: as many FLOPs again
    assert training_flops(_OneConv(), batch, torch.device("cpu")) == 2 * forward


def test_training_flops_per_sample_do_not_depend_on_the_batch(tmp_path):
    from conftest import ROOT

    from avcl.config import load_config
    from avcl.methods import build_method

    cfg = load_config(ROOT / "configs" / "demo_cpu.yaml", TINY)
    method = build_method(cfg)
    per_sample = []
    for b in (2, 4):
        batch = {"video": torch.randn(b, 3, 4, 32, 32), "audio": torch.randn(b, 1, 28, 28)}
        per_sample.append(training_flops(method, batch, torch.device("cpu")) / b)
        assert all(p.grad is None for p in method.parameters())  # the count leaves no gradient behind
    assert per_sample[0] == pytest.approx(per_sample[1], rel=1e-3)


@pytest.mark.parametrize(
    "name, tflops",
    [
        ("NVIDIA H100 80GB HBM3", 989.4),
        ("NVIDIA H100 PCIe", 756.5),
        ("NVIDIA H100 NVL", 835.5),
        ("NVIDIA H200", 989.4),
        ("NVIDIA GH200 480GB", 989.4),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA A100 80GB PCIe", 312.0),
        ("NVIDIA L4", 121.0),
        ("NVIDIA L40S", 362.0),
        ("NVIDIA A10", 125.0),
    ],
)
def test_gpu_peaks_are_found_by_the_names_cuda_reports(name, tflops):
    assert cuda_peak_tflops(name)[1] == tflops


def test_unknown_gpus_and_the_cpu_have_no_peak_unless_given():
    assert cuda_peak_tflops("NVIDIA GeForce RTX 4090") is None
    assert device_peak(torch.device("cpu"))["peak_tflops"] is None
    assert device_peak(torch.device("cpu"), override_tflops=1.5)["peak_tflops"] == 1.5
