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

from avcl import fileio
from avcl.config import MODALITIES, ConfigError, load_config
from avcl.presets import preset_path

PRESET, PAPER_PRESET = "demo_cpu", "avcl_paper_r3d"
# Without the paper-literal preset: the two options that read the paper's text literally.
PAPER_FALLBACK = ("method.gate=relu", "method.standardize=false")


def _preset_path() -> Path:
    return preset_path(PRESET)


def paper_overrides() -> tuple[tuple[str, ...], str]:
    """Overrides that turn the demo's AVCL into the paper-literal one, and where they come from: the
    ``method`` section of ``configs/avcl_paper_r3d.yaml`` when it is there (only the method: sizes and
    epochs stay the demo's), else ``PAPER_FALLBACK``."""
    import yaml

    paper = preset_path(PAPER_PRESET, required=False)
    if paper.is_file():
        try:
            method = (yaml.safe_load(paper.read_text()) or {}).get("method") or {}
            overrides = tuple(f"method.{k}={json.dumps(v)}" for k, v in method.items())
            load_config(_preset_path(), overrides)  # every key known to this version
            return overrides, f"the method section of {paper.name}"
        except (ConfigError, AttributeError, yaml.YAMLError):
            pass
    return PAPER_FALLBACK, "method.gate=relu method.standardize=false (" + paper.name + " not usable here)"


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
    epochs: int | None = None,
    supervised: bool = True,
    paper: bool = True,
    seeds: int = 1,
    overrides: tuple[str, ...] = (),
    seed: int = 0,
    verbose: bool = False,
) -> dict:
    """The demo; returns what ``metrics.json`` holds. ``epochs``: pretraining epochs of each AVCL run
    (None: the preset's ``train.epochs``). ``seeds`` repeats every training and probe with seeds
    ``seed .. seed+seeds-1`` (the benchmark stays the one of ``seed``) for a mean and a std."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)  # the demo is a fresh run every time
    out.mkdir(parents=True)
    quiet = () if verbose else ("train.progress=false",)
    cfg = load_config(_preset_path(), (*quiet, *overrides))
    if epochs is not None:
        cfg.train.epochs = epochs
    paper_ovr, paper_source = paper_overrides()
    demo = _Demo(out, _Stages(out, verbose), cfg, quiet, overrides, steps=3 + (seeds * (1 + paper + supervised)))

    test_videos, num_classes = demo.make_data(classes, per_class, seed, verbose)
    rows = (
        ["random init", "AVCL"] + (["AVCL paper-literal"] if paper else []) + (["supervised R+A"] if supervised else [])
    )
    tag = (lambda s: f" (seed {s})") if seeds > 1 else (lambda s: "")
    methods_per_seed = [
        demo.train_seed(s, tag(s), num_classes, paper_ovr if paper else None, supervised)
        for s in range(seed, seed + seeds)
    ]
    probes = demo.probe(rows, seeds, methods_per_seed)
    neighbours = demo.neighbours(*methods_per_seed[0][1:])

    table = _tables(rows, probes, neighbours, demo.diverged, seeds)
    notes = _notes(demo, cfg, test_videos, num_classes, seeds, supervised, paper_source if paper else None)
    summary = {
        "results": {row: [_probe_summary(p) for p in probes[row]] for row in rows},
        "neighbours": neighbours,
        "supervised_finetuned": [{"top1": t["top1"], "top5": t["top5"]} for t in demo.supervised_test],
        "diverged": demo.diverged,
        "seeds": list(range(seed, seed + seeds)),
        "paper_literal_overrides": list(paper_ovr) if paper else None,
        "timings_s": {k: round(v, 1) for k, v in demo.stage.wall.items()},
        "cpu_s": {k: round(v, 1) for k, v in demo.stage.cpu.items()},
        "cores": os.cpu_count(),
        "config": cfg.to_dict(),
        "classes": classes,
        "per_class": per_class,
        "test_videos": test_videos,
    }
    fileio.write_json(out / "metrics.json", summary)
    shutil.copy(out / "avcl" / f"seed{seed}" / "config.yaml", out / "config.yaml")
    _report(out, demo.stage, cfg, classes, per_class, table, notes, paper, supervised)
    return summary


def _notes(
    demo: _Demo, cfg, test_videos: int, num_classes: int, seeds: int, supervised: bool, paper_source: str | None
) -> list[str]:
    """The lines under the report's table: what the figures are, the supervised reference, where the
    paper-literal settings come from (``paper_source``, None without that row) and what diverged."""
    notes = [
        f"Top-1 (%) at video level on {test_videos} test videos (one video = {100 / max(1, test_videos):.1f} "
        f"points), {cfg.data.test_clips} clips each; chance {100 / num_classes:.1f} %; "
        + (f"mean ± std over {seeds} seeds." if seeds > 1 else "one seed.")
    ]
    if supervised:
        notes.append(
            f"Supervised R+A with its own classifier (fine-tuned end to end): "
            f"{_cell([t['top1'] for t in demo.supervised_test])} %."
        )
    if paper_source is not None:
        notes.append(f"AVCL paper-literal: {paper_source}.")
    notes += [f"{row}: pretraining stopped, {reasons[0]}" for row, reasons in demo.diverged.items()]
    return notes


class _Demo:
    """The demo's stages, in order; what they share (the output folder, the stage timer and counter,
    the configuration) and what they collect (diverged pretrainings, supervised test results)."""

    def __init__(self, out: Path, stage: _Stages, cfg, quiet: tuple[str, ...], overrides: tuple[str, ...], steps: int):
        self.out, self.stage, self.cfg, self.quiet, self.overrides = out, stage, cfg, quiet, overrides
        self.steps, self._counter = steps, iter(range(1, steps + 1))
        self.diverged: dict[str, list[str]] = {}  # row -> why a seed's pretraining stopped
        self.supervised_test: list[dict] = []

    def step(self) -> str:
        return f"[{next(self._counter)}/{self.steps}]"

    def config(self, seed: int, extra: tuple[str, ...] = ()):
        """The demo preset with ``extra`` then the user's overrides, on the prepared data with ``seed``."""
        cfg = load_config(_preset_path(), (*self.quiet, *extra, *self.overrides))
        cfg.data.root, cfg.train.seed = self.cfg.data.root, seed
        return cfg

    def make_data(self, classes: int, per_class: int, seed: int, verbose: bool) -> tuple[int, int]:
        """Generate the synthetic benchmark and prepare it; returns ``(test videos, classes)``."""
        from avcl.data.prepare import prepare
        from avcl.data.synth import generate_benchmark
        from avcl.engine.setup import open_cache

        out, cfg = self.out, self.cfg
        with self.stage("synth", f"{self.step()} synthetic benchmark: {classes} classes x {per_class} videos"):
            generate_benchmark(out / "videos", classes=classes, per_class=per_class, seed=seed, progress=verbose)
        size = (cfg.data.crop_size * 8 // 7, round(cfg.data.crop_size * 8 // 7 * 171 / 128))
        with self.stage("prepare", f"{self.step()} prepare: decoding into the cache at {size[0]}x{size[1]}"):
            prepare(out / "videos", out / "data", size=size, progress=verbose)
        cfg.data.root = str(out / "data")
        cache = open_cache(cfg)
        return len(cache.indices(cfg.data.test_split)), len(cache.meta["classes"])

    def train_seed(self, s: int, tag: str, num_classes: int, paper_ovr: tuple[str, ...] | None, supervised: bool):
        """Pretrain (and train the supervised reference) with seed ``s``; returns ``(s, its config,
        {row: a function that loads the row's encoders})``, without the rows that diverged."""
        from avcl.api import finetune_and_test, method_from_checkpoint
        from avcl.engine.pretrain import pretrain
        from avcl.experiments import random_encoders

        out, cfg = self.out, self.cfg
        run_cfg = self.config(s)
        run_cfg.train.epochs = cfg.train.epochs
        methods = {"random init": lambda c=run_cfg: random_encoders(c, num_classes)}
        with self.stage(
            "pretrain",
            f"{self.step()} pretraining AVCL{tag}: {cfg.model.backbone}, width "
            f"{cfg.model.width}, {cfg.train.epochs} epochs",
        ):
            run_cfg.train.out = str(out / "avcl" / f"seed{s}")
            if _pretrain_or_note(pretrain, run_cfg, "AVCL", s, self.diverged):
                methods["AVCL"] = lambda p=out / "avcl" / f"seed{s}" / "last.pt": method_from_checkpoint(p)
        if paper_ovr is not None:
            with self.stage("pretrain_paper", f"{self.step()} pretraining AVCL paper-literal{tag}"):
                paper_cfg = self.config(s, paper_ovr)
                paper_cfg.train.epochs = cfg.train.epochs
                paper_cfg.train.out = str(out / "avcl_paper" / f"seed{s}")
                if _pretrain_or_note(pretrain, paper_cfg, "AVCL paper-literal", s, self.diverged):
                    methods["AVCL paper-literal"] = lambda p=out / "avcl_paper" / f"seed{s}" / "last.pt": (
                        method_from_checkpoint(p)
                    )
        if supervised:
            with self.stage("supervised", f"{self.step()} supervised R+A{tag}: trained from scratch with labels"):
                sup_cfg = self.config(s)
                self.supervised_test.append(
                    finetune_and_test(sup_cfg, out / "supervised" / f"seed{s}", pretrained=None)["test"]
                )
            methods["supervised R+A"] = lambda p=out / "supervised" / f"seed{s}" / "best.pt": method_from_checkpoint(p)
        return s, run_cfg, methods

    def probe(self, rows: list[str], seeds: int, methods_per_seed: list) -> dict[str, list[dict]]:
        """Linear probes of every row and seed: row -> one ``{modality: metrics}`` per seed."""
        from avcl.evaluation.probe import linear_probes

        probes: dict[str, list[dict]] = {r: [] for r in rows}
        with self.stage(
            "probes", f"{self.step()} linear probes (video, audio, both) of {len(rows)} x {seeds} encoder sets"
        ):
            for s, run_cfg, methods in methods_per_seed:
                for row in rows:
                    if row in methods:
                        folder = self.out / "probes" / row.replace(" ", "_").replace("+", "") / f"seed{s}"
                        probes[row].append(linear_probes(methods[row](), run_cfg, folder, MODALITIES, title=row))
        return probes

    def neighbours(self, cfg, methods: dict) -> dict[str, dict[str, float]]:
        """kNN, retrieval and t-SNE of random init and AVCL (the first seed's ``cfg`` and ``methods``)."""
        from avcl.experiments import neighbour_metrics

        neighbours: dict[str, dict[str, float]] = {}
        with self.stage("neighbours", "    kNN, retrieval and t-SNE of random init vs AVCL (first seed)"):
            for row in ("random init", "AVCL"):
                if row in methods:
                    slug = row.replace(" ", "_").lower()
                    neighbours[row] = neighbour_metrics(methods[row](), cfg, self.out / f"tsne_{slug}.png", row)
        return neighbours


def _probe_summary(probe: dict) -> dict:
    """What ``metrics.json`` keeps of one seed's probes of a row: per modality, top-1, top-5 and the
    regularisation that the validation split chose."""
    keys = ("top1", "top5", "weight_decay", "block_scale")
    return {m: {k: probe[m][k] for k in keys} for m in MODALITIES}


def _tables(rows: list[str], probes: dict, neighbours: dict, diverged: dict, seeds: int) -> list[str]:
    """The Markdown tables of the report: linear probes per row and modality, then kNN and retrieval."""
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
    return table


def _report(out: Path, stage: _Stages, cfg, classes: int, per_class: int, table, notes, paper: bool, supervised: bool):
    """Write ``report.md`` and print its tables and notes."""
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
