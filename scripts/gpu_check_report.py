"""Collect the runs of scripts/gpu_check.sh into OUT/gpu_check.json and OUT/gpu_check.md."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(out: str) -> int:
    out = Path(out)
    status = {}
    if (out / "runs.txt").exists():
        for line in (out / "runs.txt").read_text().splitlines():
            name, _, state = line.partition("|")
            status[name] = state
    runs, machine = [], None
    for name, state in status.items():
        path = out / "runs" / name / "bench_train.json"
        if not path.exists():
            runs.append({"run": name, "status": state or "missing", "log": f"runs/{name}.log"})
            continue
        result = json.loads(path.read_text())
        machine = machine or {
            k: result.get(k) for k in ("device", "device_name", "peak_tflops", "peak_source", "machine")
        }
        for r in result["runs"]:
            runs.append({"run": name, "status": state, "cache": result.get("cache"), **r})
    report = {
        "machine": machine,
        "preflight": (out / "preflight.txt").read_text() if (out / "preflight.txt").exists() else None,
        "runs": runs,
    }
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    lines = [
        "| run | backbone | clip | batch | precision | channels_last | compile | workers | samples/s | step (ms) "
        "| data wait (ms) | compute (ms) | data wait | GFLOP/sample | TFLOP/s | MFU | max memory (GB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        if "backbone" not in r:
            lines.append(f"| {r['run']} | - | - | - | - | - | - | - | {r['status']} | | | | | | | | |")
            continue
        s = r.get("settings", {})
        synthetic = str(r.get("cache", "")).startswith("synthetic")
        mfu = "n/a" if r.get("mfu") is None else f"{100 * r['mfu']:.1f}%"
        memory = r.get("max_memory_gb")
        lines.append(
            f"| {r['run']} | {r['backbone']} | {'x'.join(map(str, r['clip']))} | {r['batch_size']} | {r['precision']} "
            f"| {s.get('train.channels_last')} | {s.get('train.compile')} "
            f"| {'- (on device)' if synthetic else s.get('data.num_workers')} | {r['samples_per_s']:.1f} "
            f"| {1e3 * r['step_time_s']:.1f} | {1e3 * r['data_wait_s']:.1f} | {1e3 * r['compute_s']:.1f} "
            f"| {100 * r['data_wait_fraction']:.1f}% | {r['flops_per_sample'] / 1e9:.2f} | {r['achieved_tflops']:.2f} "
            f"| {mfu} | {'-' if memory is None else f'{memory:.1f}'} |"
        )
    if machine:
        m = machine.get("machine") or {}
        lines.append(
            f"\ndevice: {machine['device']} ({machine['device_name']}), peak {machine['peak_tflops']} TFLOP/s "
            f"({machine['peak_source']}); {m.get('cores')} cores ({m.get('cpu')}), torch {m.get('torch')}, "
            f"load average {m.get('load_1min')}"
        )
    (out / "gpu_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "runs/gpu_check"))
