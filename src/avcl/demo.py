"""``avcl demo``: the whole pipeline on the embedded synthetic benchmark, on a laptop CPU.

synth -> prepare -> pretrain AVCL (default, and the paper's text read literally) -> a supervised
reference trained with labels -> regularised linear probes of the video encoder, the audio encoder and
both, for every set of encoders and for untrained ones -> one table, the timings and a report folder
(config, metrics.json, loss curves, confusion matrices, the full log of every stage).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from avcl.config import MODALITIES, ConfigError, load_config

PRESET = Path(__file__).resolve().parents[2] / "configs" / "demo_cpu.yaml"
PAPER_PRESET = PRESET.parent / "avcl_paper_r3d.yaml"
# Without the paper-literal preset: the two options that read the paper's text literally.
PAPER_FALLBACK = ("method.gate=relu", "method.standardize=false")


def _preset_path() -> Path:
    if not PRESET.is_file():
        from avcl.errors import UserError

        raise UserError(f"{PRESET} not found: the demo runs from a source checkout (its configs/ folder)")
    return PRESET


def paper_overrides() -> tuple[tuple[str, ...], str]:
    """Overrides that turn the demo's AVCL into the paper-literal one, and where they come from: the
    ``method`` section of ``configs/avcl_paper_r3d.yaml`` when it is there (only the method: sizes and
    epochs stay the demo's), else ``PAPER_FALLBACK``."""
    import yaml

    if PAPER_PRESET.is_file():
        try:
            method = (yaml.safe_load(PAPER_PRESET.read_text()) or {}).get("method") or {}
            overrides = tuple(f"method.{k}={json.dumps(v)}" for k, v in method.items())
            load_config(_preset_path(), overrides)  # every key known to this version
            return overrides, f"the method section of {PAPER_PRESET.name}"
        except (ConfigError, AttributeError, yaml.YAMLError):
            pass
    return PAPER_FALLBACK, "method.gate=relu method.standardize=false (" + PAPER_PRESET.name + " not usable here)"


class _Stages:
    """Wall-clock and CPU seconds (this process and its finished children) per stage; each stage's
    output goes to ``logs/<stage>.log`` unless ``verbose``."""

    def __init__(self, out: Path, verbose: bool):
        self.out, self.verbose = out, verbose
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        (out / "logs").mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _cpu() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    @contextlib.contextmanager
    def __call__(self, name: str, what: str):
        print(f"{what} ...", end="" if not self.verbose else "\n", flush=True)
        wall, cpu = time.perf_counter(), self._cpu()
        log = self.out / "logs" / f"{name}.log"
        with contextlib.ExitStack() as stack:
            if not self.verbose:
                f = stack.enter_context(open(log, "a", buffering=1))  # line-buffered: the log follows the run
                stack.enter_context(contextlib.redirect_stdout(f))
                stack.enter_context(contextlib.redirect_stderr(f))
            yield
        wall, cpu = time.perf_counter() - wall, self._cpu() - cpu
        self.wall[name] = self.wall.get(name, 0.0) + wall
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu
        print(f" {wall:.0f} s (CPU {cpu:.0f} s)", flush=True)

    def line(self) -> str:
        parts = [f"{k} {self.wall[k]:.0f}/{self.cpu[k]:.0f}" for k in self.wall]
        return (
            f"Timings (s, wall/CPU): {', '.join(parts)}; total {sum(self.wall.values()):.0f}/"
            f"{sum(self.cpu.values()):.0f} on {os.cpu_count()} cores"
        )


def _pretrain_or_note(pretrain, cfg, row: str, seed: int, diverged: dict[str, list[str]]) -> bool:
    """Pretrain; a run whose loss stops being finite is a result of the demo (the row says so), not
    the end of it."""
    from avcl.engine.trainer import TrainingDiverged
    from avcl.evaluation.plots import plot_run

    try:
        plot_run(pretrain(cfg))
        return True
    except TrainingDiverged as exc:
        diverged.setdefault(row, []).append(f"seed {seed}: {exc}")
        return False


def _cell(values: list[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}"


def run_demo(
    out: str | Path,
    classes: int = 8,
    per_class: int = 60,
    epochs: int | None = 10,
    supervised: bool = True,
    paper: bool = True,
    seeds: int = 1,
    overrides: tuple[str, ...] = (),
    seed: int = 0,
    verbose: bool = False,
) -> dict:
    """The demo; returns what ``metrics.json`` holds. ``seeds`` repeats every training and probe with
    seeds ``seed .. seed+seeds-1`` (the benchmark stays the one of ``seed``) for a mean and a std."""
    from avcl.api import finetune_and_test, method_from_checkpoint
    from avcl.data.prepare import prepare
    from avcl.data.synth import generate_benchmark
    from avcl.engine.pretrain import pretrain
    from avcl.evaluation.probe import linear_probes
    from avcl.experiments import neighbour_metrics, random_encoders

    out = Path(out)
    if out.exists():
        shutil.rmtree(out)  # the demo is a fresh run every time
    out.mkdir(parents=True)
    stage = _Stages(out, verbose)
    quiet = () if verbose else ("train.progress=false",)
    cfg = load_config(_preset_path(), (*quiet, *overrides))
    if epochs is not None:
        cfg.train.epochs = epochs
    paper_ovr, paper_source = paper_overrides()
    steps = 3 + (seeds * (1 + paper + supervised))
    n = iter(range(1, steps + 1))

    with stage("synth", f"[{next(n)}/{steps}] synthetic benchmark: {classes} classes x {per_class} videos"):
        generate_benchmark(out / "videos", classes=classes, per_class=per_class, seed=seed, progress=verbose)
    size = (cfg.data.crop_size * 8 // 7, round(cfg.data.crop_size * 8 // 7 * 171 / 128))
    with stage("prepare", f"[{next(n)}/{steps}] prepare: decoding into the cache at {size[0]}x{size[1]}"):
        prepare(out / "videos", out / "data", size=size, progress=verbose)
    cfg.data.root = str(out / "data")

    from avcl.engine.setup import open_cache

    cache = open_cache(cfg)
    num_classes = len(cache.meta["classes"])
    test_videos = len(cache.indices(cfg.data.test_split))
    rows = (
        ["random init", "AVCL"] + (["AVCL paper-literal"] if paper else []) + (["supervised R+A"] if supervised else [])
    )
    probes: dict[str, list[dict]] = {r: [] for r in rows}  # row -> one {modality: metrics} per seed
    diverged: dict[str, list[str]] = {}  # row -> why a seed's pretraining stopped
    supervised_test: list[dict] = []
    methods_per_seed = []
    for s in range(seed, seed + seeds):
        run_cfg = load_config(_preset_path(), (*quiet, *overrides))
        run_cfg.train.epochs, run_cfg.data.root, run_cfg.train.seed = cfg.train.epochs, cfg.data.root, s
        tag = f" (seed {s})" if seeds > 1 else ""
        methods = {"random init": lambda c=run_cfg: random_encoders(c, num_classes)}
        with stage(
            "pretrain",
            f"[{next(n)}/{steps}] pretraining AVCL{tag}: {cfg.model.backbone}, width "
            f"{cfg.model.width}, {cfg.train.epochs} epochs",
        ):
            run_cfg.train.out = str(out / "avcl" / f"seed{s}")
            if _pretrain_or_note(pretrain, run_cfg, "AVCL", s, diverged):
                methods["AVCL"] = lambda p=out / "avcl" / f"seed{s}" / "last.pt": method_from_checkpoint(p)
        if paper:
            with stage("pretrain_paper", f"[{next(n)}/{steps}] pretraining AVCL paper-literal{tag}"):
                paper_cfg = load_config(_preset_path(), (*quiet, *paper_ovr, *overrides))
                paper_cfg.train.epochs, paper_cfg.data.root, paper_cfg.train.seed = cfg.train.epochs, cfg.data.root, s
                paper_cfg.train.out = str(out / "avcl_paper" / f"seed{s}")
                if _pretrain_or_note(pretrain, paper_cfg, "AVCL paper-literal", s, diverged):
                    methods["AVCL paper-literal"] = lambda p=out / "avcl_paper" / f"seed{s}" / "last.pt": (
                        method_from_checkpoint(p)
                    )
        if supervised:
            with stage("supervised", f"[{next(n)}/{steps}] supervised R+A{tag}: trained from scratch with labels"):
                sup_cfg = load_config(_preset_path(), (*quiet, *overrides))
                sup_cfg.data.root, sup_cfg.train.seed = cfg.data.root, s
                supervised_test.append(
                    finetune_and_test(sup_cfg, out / "supervised" / f"seed{s}", pretrained=None)["test"]
                )
            methods["supervised R+A"] = lambda p=out / "supervised" / f"seed{s}" / "best.pt": method_from_checkpoint(p)
        methods_per_seed.append((s, run_cfg, methods))
    with stage(
        "probes", f"[{next(n)}/{steps}] linear probes (video, audio, both) of {len(rows)} x {seeds} encoder sets"
    ):
        for s, run_cfg, methods in methods_per_seed:
            for row in rows:
                if row in methods:
                    folder = out / "probes" / row.replace(" ", "_").replace("+", "") / f"seed{s}"
                    probes[row].append(linear_probes(methods[row](), run_cfg, folder, MODALITIES, title=row))

    neighbours: dict[str, dict[str, float]] = {}
    first_cfg, first_methods = methods_per_seed[0][1], methods_per_seed[0][2]
    with stage("neighbours", "    kNN, retrieval and t-SNE of random init vs AVCL (first seed)"):
        for row in ("random init", "AVCL"):
            if row in first_methods:
                slug = row.replace(" ", "_").lower()
                neighbours[row] = neighbour_metrics(first_methods[row](), first_cfg, out / f"tsne_{slug}.png", row)

    table = ["| linear probe, frozen features | video | audio | both |", "|---|---|---|---|"]
    for row in rows:
        cells = [_cell([p[m]["top1"] for p in probes[row]]) for m in MODALITIES]
        if row in diverged:
            cells = [
                f"{c} (diverged: {len(diverged[row])} of {seeds} seeds)" if probes[row] else "diverged" for c in cells
            ]
        table.append(f"| {row} | " + " | ".join(cells) + " |")
    if neighbours:
        table += [
            "",
            "| frozen features, both modalities | kNN top-1 | retrieval R@1 | retrieval R@5 |",
            "|---|---|---|---|",
        ]
        table += [
            f"| {row} | {r['knn']:.1f} | {r['retrieval_top1']:.1f} | {r['retrieval_top5']:.1f} |"
            for row, r in neighbours.items()
        ]
    notes = [
        f"Top-1 (%) at video level on {test_videos} test videos (one video = {100 / max(1, test_videos):.1f} "
        f"points), {cfg.data.test_clips} clips each; chance {100 / num_classes:.1f} %; "
        + (f"mean ± std over {seeds} seeds." if seeds > 1 else "one seed.")
    ]
    if supervised:
        notes.append(
            f"Supervised R+A with its own classifier (fine-tuned end to end): "
            f"{_cell([t['top1'] for t in supervised_test])} %."
        )
    if paper:
        notes.append(f"AVCL paper-literal: {paper_source}.")
    for row, reasons in diverged.items():
        notes.append(f"{row}: pretraining stopped, {reasons[0]}")
    summary = {
        "results": {
            row: [
                {
                    m: {
                        "top1": p[m]["top1"],
                        "top5": p[m]["top5"],
                        "weight_decay": p[m]["weight_decay"],
                        "block_scale": p[m]["block_scale"],
                    }
                    for m in MODALITIES
                }
                for p in probes[row]
            ]
            for row in rows
        },
        "neighbours": neighbours,
        "supervised_finetuned": [{"top1": t["top1"], "top5": t["top5"]} for t in supervised_test],
        "diverged": diverged,
        "seeds": list(range(seed, seed + seeds)),
        "paper_literal_overrides": list(paper_ovr) if paper else None,
        "timings_s": {k: round(v, 1) for k, v in stage.wall.items()},
        "cpu_s": {k: round(v, 1) for k, v in stage.cpu.items()},
        "cores": os.cpu_count(),
        "config": cfg.to_dict(),
        "classes": classes,
        "per_class": per_class,
        "test_videos": test_videos,
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    shutil.copy(out / "avcl" / f"seed{seed}" / "config.yaml", out / "config.yaml")
    report = [
        "# avcl demo report",
        "",
        f"Synthetic benchmark: {classes} classes x {per_class} videos; configs/demo_cpu.yaml, "
        f"{cfg.train.epochs} pretraining epochs.",
        "",
        *table,
        "",
        *notes,
        "",
        stage.line(),
        "",
        "Random init: the same encoders untrained. Linear probe: logistic regression on standardised frozen "
        "features, weight decay (and, for both, the scale between the two modalities) picked on the validation "
        "split, refitted on train + val. Both: AVCL's AMFM-fused features; the others' concatenated.",
        "",
        "Files: `config.yaml`, `metrics.json`, `avcl/seed*/loss_curves.png`"
        + (", `avcl_paper/seed*/loss_curves.png`" if paper else "")
        + (", `supervised/seed*/loss_curves.png`, `supervised/seed*/test/confusion.png`" if supervised else "")
        + ", `probes/<row>/seed*/<modality>/confusion.png` and `metrics.json` (the validation choice), "
        "`tsne_random_init.png`, `tsne_avcl.png`, "
        "`logs/<stage>.log`.",
    ]
    (out / "report.md").write_text("\n".join(report) + "\n")
    print()
    print("\n".join(table))
    print()
    print("\n".join(notes))
    print(stage.line())
    print(f"Report: {out / 'report.md'}")
    sys.stdout.flush()
    return summary
