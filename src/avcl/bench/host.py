"""What a benchmark's numbers were measured on: CPU model, cores, load, Python and PyTorch versions."""

from __future__ import annotations

import os
import platform

import torch


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_1min": load,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
