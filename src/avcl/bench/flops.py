"""Training FLOPs of a method and the peak of the device they run on, for model FLOPs utilisation.

MFU = samples/s x training FLOPs per sample / the device's peak FLOP/s. The FLOPs are counted by
``torch.utils.flop_counter.FlopCounterMode`` over one real forward and backward of the method, so
they are the matrix multiplications and convolutions that training actually executes (both encoders,
AMFM, the CGRA and SelfCL losses); element-wise work (BatchNorm, ReLU, the optimiser) is not counted,
as is usual for MFU.
"""

from __future__ import annotations

import re

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from avcl.engine.setup import autocast

# Dense (no structured sparsity) bf16 tensor-core peaks in TFLOP/s, from NVIDIA's data sheets, which
# print the sparse figure (twice the dense one) first: H100 SXM 1979 -> 989.4, H100 PCIe 1513 -> 756.5,
# H100 NVL 1671 -> 835.5, H200 SXM and GH200 as H100 SXM, A100 (SXM and PCIe) 624 -> 312,
# L40S 733 -> 362, L4 242 -> 121, A10 250 -> 125. The first pattern that matches
# ``torch.cuda.get_device_name()`` wins, so the more specific names come first ("H100 PCIe" before "H100").
CUDA_PEAK_BF16_TFLOPS: tuple[tuple[str, str, float], ...] = (
    (r"H100.*PCIe", "H100 PCIe", 756.5),
    (r"H100.*NVL", "H100 NVL", 835.5),
    (r"H200.*NVL", "H200 NVL", 835.5),
    (r"GH200", "GH200", 989.4),
    (r"H200", "H200 SXM", 989.4),
    (r"H100", "H100 SXM", 989.4),
    (r"A100", "A100", 312.0),
    (r"L40S", "L40S", 362.0),
    (r"\bL4\b", "L4", 121.0),
    (r"\bA10\b", "A10", 125.0),
)


def cuda_peak_tflops(name: str) -> tuple[str, float] | None:
    """``(table entry, dense bf16 TFLOP/s)`` for a CUDA device name, or None when it is not in the table."""
    for pattern, entry, tflops in CUDA_PEAK_BF16_TFLOPS:
        if re.search(pattern, name):
            return entry, tflops
    return None


def device_peak(device: torch.device, override_tflops: float | None = None) -> dict:
    """The device's name and the peak used for MFU: ``{"device_name", "peak_tflops", "peak_source"}``.

    ``peak_tflops`` is None on the CPU (its peak depends on the vector units, clock and threads that a
    shared machine does not report reliably: the benchmark gives achieved GFLOP/s there instead) and
    on a GPU missing from :data:`CUDA_PEAK_BF16_TFLOPS`, unless ``override_tflops`` is given.
    """
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        import platform

        name = platform.processor() or platform.machine() or "cpu"
    if override_tflops is not None:
        return {"device_name": name, "peak_tflops": float(override_tflops), "peak_source": "given (--peak-tflops)"}
    known = cuda_peak_tflops(name) if device.type == "cuda" else None
    if known is None:
        return {
            "device_name": name,
            "peak_tflops": None,
            "peak_source": "unknown" if device.type == "cuda" else "n/a (CPU)",
        }
    entry, tflops = known
    return {"device_name": name, "peak_tflops": tflops, "peak_source": f"dense bf16 of the {entry} data sheet"}


def training_flops(method: nn.Module, batch: dict, device: torch.device, amp: str = "auto") -> int:
    """FLOPs of one training forward and backward of ``method`` on ``batch`` (the whole batch).

    ``batch`` is the output of ``to_model_input`` (tensors on ``device``). The gradients it leaves
    are cleared, so the count does not leak into a following optimiser step. Divide by the batch
    size for FLOPs per sample; the only terms that grow faster than the batch are the B x B
    similarities of SelfCL, a negligible part at any batch size used for training.
    """
    method.train()
    with FlopCounterMode(display=False) as counter:
        with autocast(device, amp):
            loss = method(batch)["loss"]
        loss.backward()
    method.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())
