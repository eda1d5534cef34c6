"""``avcl demo``: the whole pipeline on the embedded synthetic benchmark, on a laptop CPU.

synth -> prepare -> pretrain AVCL -> linear probe (random encoders vs AVCL) -> supervised reference ->
a table and a report folder (config, metrics.json, loss curves, confusion matrices).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from avcl.config import load_config

PRESET = Path(__file__).resolve().parents[2] / "configs" / "demo_cpu.yaml"


def _preset_path() -> Path:
    if not PRESET.is_file():
        from avcl.errors import UserError

        raise UserError(f"{PRESET} not found: the demo runs from a source checkout (its configs/ folder)")
    return PRESET


def run_demo(out: str | Path, classes: int = 8, per_class: int = 20, epochs: int | None = None,
             supervised: bool = True, overrides: tuple[str, ...] = (), seed: int = 0) -> dict:
    from avcl.data.prepare import prepare
    from avcl.data.synth import generate_benchmark
    from avcl.engine.pretrain import pretrain
    from avcl.engine.trainer import seed_everything
    from avcl.evaluation.classify import finetune, linear_probe
    from avcl.methods import build_method

    out = Path(out)
    if out.exists():
        shutil.rmtree(out)  # the demo is a fresh run every time
    out.mkdir(parents=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t0
        timings[name] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()

    print(f"[1/5] generating the synthetic benchmark ({classes} classes x {per_class} videos)")
    generate_benchmark(out / "videos", classes=classes, per_class=per_class, seed=seed)
    lap("synth")

    cfg = load_config(_preset_path(), overrides)
    if epochs is not None:
        cfg.train.epochs = epochs
    size = (cfg.data.crop_size * 8 // 7, round(cfg.data.crop_size * 8 // 7 * 171 / 128))
    print(f"[2/5] preparing the cache (frames {size[0]}x{size[1]})")
    prepare(out / "videos", out / "data", size=size)
    cfg.data.root = str(out / "data")
    lap("prepare")

    print(f"[3/5] pretraining AVCL ({cfg.model.backbone}, width {cfg.model.width}, {cfg.train.epochs} epochs)")
    cfg.train.out = str(out / "pretrain")
    pretrain(cfg)
    lap("pretrain")

    from avcl.api import method_from_checkpoint

    print("[4/5] linear probes: random encoders vs AVCL features")
    results: dict[str, dict] = {}
    seed_everything(cfg.train.seed)
    random_method = build_method(cfg)
    results["random init"] = linear_probe(random_method, cfg, out / "linear_random", title="random encoders")
    avcl_method = method_from_checkpoint(out / "pretrain" / "last.pt")
    results["AVCL"] = linear_probe(avcl_method, cfg, out / "linear_avcl", title="AVCL")
    lap("linear")

    if supervised:
        print("[5/5] supervised reference (Baseline-R+A, trained from scratch with labels)")
        sup_cfg = load_config(_preset_path(), overrides)
        sup_cfg.data.root = cfg.data.root
        res = finetune(sup_cfg, out / "supervised", pretrained=None)
        results["supervised R+A"] = res["test"]
        lap("supervised")

    rows = [(name, r["top1"], r["top5"]) for name, r in results.items()]
    table = ["| features | protocol | top-1 (%) | top-5 (%) |", "|---|---|---|---|"]
    for name, top1, top5 in rows:
        protocol = "fine-tuned with labels" if name.startswith("supervised") else "linear probe, frozen"
        table.append(f"| {name} | {protocol} | {top1:.1f} | {top5:.1f} |")
    summary = {
        "results": {k: {"top1": v["top1"], "top5": v["top5"]} for k, v in results.items()},
        "timings_s": timings,
        "config": cfg.to_dict(),
        "classes": classes,
        "per_class": per_class,
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    report = [
        "# avcl demo report",
        "",
        f"Synthetic benchmark: {classes} classes x {per_class} videos; video-level test over "
        f"{cfg.data.test_clips} clips per video.",
        "",
        *table,
        "",
        "Timings (s): " + ", ".join(f"{k} {v}" for k, v in timings.items()),
        "",
        "Figures: `pretrain/loss_curves.png`, `linear_random/confusion.png`, `linear_avcl/confusion.png`"
        + (", `supervised/loss_curves.png`, `supervised/test/confusion.png`" if supervised else "") + ".",
    ]
    (out / "report.md").write_text("\n".join(report) + "\n")
    shutil.copy(out / "pretrain" / "config.yaml", out / "config.yaml")
    print()
    print("\n".join(table))
    print(f"\nreport: {out / 'report.md'} (timings: {timings})")
    return summary
