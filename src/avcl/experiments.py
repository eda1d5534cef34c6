"""The paper's tables on any prepared dataset: ``avcl compare`` (Table 4) and ``avcl ablate`` (Tables 1-3).

A table is a list of rows; a row is a set of config overrides on top of a preset (or a supervised
baseline trained from scratch). Every row runs with the same budget for each seed: pretraining, then
the evaluation protocols, each tested at video level: the linear probe on frozen features of the video
encoder alone, the audio encoder alone and both (AVCL: its fused features), and fine-tuning. Every
table starts with a random-init row (the same encoders, untrained), the reference any learned
features have to beat. Results are cached per row and seed (``result.json``), so an interrupted table
resumes where it stopped. The outputs are a Markdown table (mean and standard deviation over seeds,
beside the paper's number on Kinetics-Sounds 32) and a bar chart PNG per protocol.
"""

from __future__ import annotations

import copy
import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

from avcl import fileio
from avcl.config import MODALITIES, Config, parse_override, set_key, validate
from avcl.errors import UserError


@dataclass(frozen=True)
class Row:
    name: str
    overrides: tuple[str, ...] = ()
    paper: float | None = None  # the paper's top-1 on K32, for the side-by-side
    supervised: str | None = None  # video | audio | both: a supervised baseline trained from scratch
    note: str = ""
    random: bool = False  # untrained encoders: linear probes only (fine-tuned, they are Baseline-R+A)


RANDOM_INIT = Row("random init", random=True, note="untrained encoders")
PROBE_MODALITIES = MODALITIES
# protocol -> the result keys (table columns) it fills
COLUMNS = {
    "linear": tuple(f"linear_{m}" for m in PROBE_MODALITIES),
    "finetune": ("finetune",),
    "knn": ("knn",),
    "retrieval": ("retrieval_top1", "retrieval_top5"),
}
HEADERS = {
    "linear_video": "linear video (%)",
    "linear_audio": "linear audio (%)",
    "linear_both": "linear both (%)",
    "finetune": "finetune top-1 (%)",
    "knn": "kNN both (%)",
    "retrieval_top1": "retrieval R@1 (%)",
    "retrieval_top5": "retrieval R@5 (%)",
}
PROTOCOLS = tuple(COLUMNS)


def compare_rows() -> dict[str, tuple[Row, bool]]:
    """Every row ``avcl compare`` can run, from the method registry: ``--methods`` name -> (row, whether
    ``all``, the paper's Table 4, holds it), in the registry's order."""
    from avcl.methods import REGISTRY

    rows = {}
    for entry in REGISTRY.values():
        for r in entry.compare_rows():
            overrides = r.overrides if r.supervised else (f"method.name={entry.name}", *r.overrides)
            rows[r.key] = (Row(r.title, overrides, r.paper, r.supervised, r.note), entry.in_paper_table)
    return rows


TABLE4 = [row for row, in_table4 in compare_rows().values() if in_table4]

TABLES: dict[str, tuple[str, list[Row]]] = {
    "table1": (
        "Table 1: sampling of the two modalities and the number of models",
        [
            Row("RGB 1 frame, 1.2 s audio, 2 models", ("data.clip_len=1", "data.audio_window=1.2"), paper=67.9),
            Row("RGB clip, 1.2 s audio, 2 models", ("data.audio_window=1.2",), paper=72.1),
            Row("RGB clip, whole audio, 2 models", (), paper=75.6),
            Row(
                "RGB clip, whole audio, 1 shared model",
                ("model.shared=true",),
                paper=60.5,
                note="for C3D also set model.c3d_audio=tile",
            ),
        ],
    ),
    "table2": (
        "Table 2: the layer CGRA aligns",
        [
            Row("no CGRA", ("method.cgra=false",), paper=72.5),
            Row("CGRA at conv3", ("method.cgra_layer=conv3",), paper=68.5),
            Row("CGRA at conv4", ("method.cgra_layer=conv4",), paper=69.3),
            Row("CGRA at conv5", ("method.cgra_layer=conv5",), paper=70.9),
            Row("CGRA at pool-final", ("method.cgra_layer=pool",), paper=75.6),
            Row("CGRA at conv5+pool", ("method.cgra_layer=conv5+pool",), paper=70.4),
        ],
    ),
    "table3": (
        "Table 3: SelfCL, the loss weights and AMFM",
        [
            Row(
                "no SelfCL (1.0 / 0.0)",
                ("method.selfcl=false", "method.lambda_cor=1.0", "method.lambda_self=0.0"),
                paper=73.5,
            ),
            Row("0.1 / 0.9", ("method.lambda_cor=0.1", "method.lambda_self=0.9"), paper=72.0),
            Row("0.3 / 0.7", ("method.lambda_cor=0.3", "method.lambda_self=0.7"), paper=72.2),
            Row("0.5 / 0.5", ("method.lambda_cor=0.5", "method.lambda_self=0.5"), paper=74.1),
            Row("0.7 / 0.3", ("method.lambda_cor=0.7", "method.lambda_self=0.3"), paper=73.7),
            Row("0.9 / 0.1", ("method.lambda_cor=0.9", "method.lambda_self=0.1"), paper=75.6),
            Row(
                "0.9 / 0.1, no AMFM",
                ("method.lambda_cor=0.9", "method.lambda_self=0.1", "method.amfm=false"),
                paper=73.5,
            ),
        ],
    ),
}


def table4_rows(methods: str) -> list[Row]:
    """``all`` (the paper's Table 4) or a comma-separated list of row names (avcl, simclr, ..., baseline-r,
    baseline-a, baseline-r+a, and the registered methods beyond the paper's table, e.g. tcgl)."""
    rows = compare_rows()
    if methods == "all":
        return [row for row, in_table4 in rows.values() if in_table4]
    names = [m.strip().lower() for m in methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in rows]
    if unknown:
        raise UserError(f"unknown method(s) {', '.join(unknown)}; choose from all, {', '.join(rows)}")
    return [rows[m][0] for m in names]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def row_config(base: Config, row: Row, seed: int) -> Config:
    cfg = copy.deepcopy(base)
    for text in row.overrides:
        key, value = parse_override(text)
        set_key(cfg, key, value, f"row '{row.name}'")
    cfg.train.seed = seed
    if row.supervised:
        cfg.method.name = "supervised"
        cfg.method.supervised_modality = cfg.eval.modality = row.supervised
    validate(cfg)
    return cfg


def _columns(row: Row, protocols: tuple[str, ...]) -> tuple[str, ...]:
    """The result keys a row fills: probes for learned or random features, fine-tuning for the rest."""
    if row.supervised:
        return ("finetune",)
    return tuple(c for p in protocols for c in COLUMNS[p] if not (row.random and p == "finetune"))


def neighbour_metrics(method, cfg: Config, tsne: Path | None = None, title: str = "") -> dict[str, float]:
    """kNN top-1 (k=20) and retrieval R@1/R@5 (``pooled`` convention) of the frozen features of both
    modalities: test videos against training videos (METHOD.md section 6); ``tsne``: also draw the
    t-SNE of the test videos' features there."""
    from avcl.evaluation.features import embed_videos, tsne_plot
    from avcl.evaluation.neighbours import knn_accuracy, retrieval_topk

    feats = embed_videos(
        method, copy.deepcopy(cfg), cfg.data.root, modality="both", layer="pool", progress=cfg.train.progress
    )
    if tsne is not None and len(feats.rows(cfg.data.test_split)) >= 5:  # too few to draw otherwise
        tsne_plot(feats, cfg.data.test_split, tsne, title=f"t-SNE, {title}: test videos, both modalities")
    train, train_y = feats.split(cfg.data.train_split)
    test, test_y = feats.split(cfg.data.test_split)
    retrieval = retrieval_topk(train, train_y, test, test_y, ks=(1, 5), convention="pooled")
    knn = knn_accuracy(train, train_y, test, test_y, len(feats.classes))
    return {"knn": knn["top1"], "retrieval_top1": retrieval["top1"], "retrieval_top5": retrieval["top5"]}


def random_encoders(cfg: Config, num_classes: int):
    """The encoders of ``cfg.model``, untrained (initialised from ``cfg.train.seed``), features
    concatenated for "both": the random-init reference of every table and of the demo."""
    from avcl.engine.setup import seed_everything
    from avcl.methods.supervised import Supervised

    seed_everything(cfg.train.seed)
    return Supervised(cfg, num_classes, modality="both")


def run_row(base: Config, row: Row, seed: int, out: Path, protocols: tuple[str, ...]) -> dict:
    """One row, one seed: pretrain (unless supervised or random), then each protocol. Cached in
    ``result.json``; a cached result that lacks a column (an older table) gets only that column run."""
    from avcl.api import finetune_and_test, method_from_checkpoint
    from avcl.engine.pretrain import pretrain
    from avcl.engine.setup import open_cache
    from avcl.evaluation.plots import plot_run
    from avcl.evaluation.probe import linear_probes

    result_file = out / "result.json"
    result: dict = _read_result(result_file) or {"row": row.name, "seed": seed}
    missing = [c for c in _columns(row, protocols) if c not in result]
    if not missing:
        return result
    cfg = row_config(base, row, seed)
    if row.supervised:  # trained with labels: the fine-tuning protocol is its evaluation
        res = finetune_and_test(cfg, out / "finetune", pretrained=None, resume=(out / "finetune" / "last.pt").exists())
        result["finetune"] = res["test"]["top1"]
    else:
        if row.random:
            method = random_encoders(cfg, len(open_cache(cfg).meta["classes"]))
        else:
            cfg.train.out = str(out / "pretrain")
            plot_run(pretrain(cfg, resume=(out / "pretrain" / "last.pt").exists()))
            method = method_from_checkpoint(out / "pretrain" / "last.pt")
        if any(c.startswith("linear_") for c in missing):
            probes = linear_probes(method, cfg, out / "linear", PROBE_MODALITIES, title=row.name)
            result.update({f"linear_{m}": r["top1"] for m, r in probes.items()})
        if {"knn", "retrieval_top1", "retrieval_top5"} & set(missing):
            result.update(neighbour_metrics(method, cfg))
        if "finetune" in missing:
            res = finetune_and_test(
                cfg, out / "finetune", pretrained=method, resume=(out / "finetune" / "last.pt").exists()
            )
            result["finetune"] = res["test"]["top1"]
    fileio.write_json(result_file, result)
    return result


def _read_result(path: Path) -> dict | None:
    """The cached result of a row and seed, or None when there is none. A file that is not JSON (cut
    short by a run killed while an older version wrote it) is computed again, not trusted."""
    try:
        result = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError:
        print(f"{path}: not valid JSON, computing this row again", file=sys.stderr)
        return None
    return result if isinstance(result, dict) else None


@dataclass
class TableResult:
    title: str
    rows: list[Row]
    runs: dict[str, list[dict]] = field(default_factory=dict)  # row name -> one result per seed

    def summary(self, protocol: str) -> list[tuple[str, float | None, float | None, int]]:
        out = []
        for row in self.rows:
            values = [r[protocol] for r in self.runs.get(row.name, []) if protocol in r]
            mean = statistics.fmean(values) if values else None
            std = statistics.stdev(values) if len(values) > 1 else (0.0 if values else None)
            out.append((row.name, mean, std, len(values)))
        return out


def format_markdown(result: TableResult, protocols: tuple[str, ...]) -> str:
    columns = [c for p in protocols for c in COLUMNS[p]]
    head = ["| row |"] + [f" {HEADERS[c]} |" for c in columns] + [" seeds | paper, K32 (%) |"]
    lines = [f"### {result.title}", "", "".join(head), "|---|" + "---|" * (len(columns) + 2)]
    summaries = {c: {name: (m, s, n) for name, m, s, n in result.summary(c)} for c in columns}
    for row in result.rows:
        cells = []
        seeds = 0
        for c in columns:
            mean, std, n = summaries[c][row.name]
            seeds = max(seeds, n)
            cells.append("n/a" if mean is None else f"{mean:.1f} ± {std:.1f}")
        paper = f"{row.paper:.1f}" if row.paper is not None else "-"
        name = row.name + (f" ({row.note})" if row.note else "")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {seeds} | {paper} |")
    lines += [
        "",
        "Mean ± standard deviation over seeds, top-1 at video level. Linear: a regularised linear "
        "probe on frozen features of the video encoder, the audio encoder, and both (AVCL: AMFM-fused). "
        "Random init: the same encoders untrained; fine-tuned from there they are the supervised "
        "baseline, hence n/a.",
    ]
    return "\n".join(lines) + "\n"


def run_table(
    base: Config,
    title: str,
    rows: list[Row],
    out: str | Path,
    seeds: int,
    protocols: tuple[str, ...],
    name: str,
    random_row: bool = True,
) -> TableResult:
    from avcl.evaluation.plots import plot_bars, plot_grouped_bars

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base.save(out / "base_config.yaml")
    if random_row and not any(r.random for r in rows):
        rows = [RANDOM_INIT, *rows]
    if any(r.supervised for r in rows) and "finetune" not in protocols:
        protocols = (*protocols, "finetune")  # a supervised baseline's only evaluation
    result = TableResult(title, rows)
    total = len(rows) * seeds
    done = 0
    for row in rows:
        for seed in range(seeds):
            done += 1
            print(f"[{done}/{total}] {row.name}, seed {seed}")
            result.runs.setdefault(row.name, []).append(
                run_row(base, row, seed, out / _slug(row.name) / f"seed{seed}", protocols)
            )
    markdown = format_markdown(result, protocols)
    fileio.atomic_write(out / f"{name}.md", markdown)
    fileio.write_json(
        out / f"{name}.json",
        {"title": title, "protocols": protocols, "runs": result.runs, "paper": {r.name: r.paper for r in rows}},
    )
    if "linear" in protocols:
        series = {c.split("_", 1)[1]: result.summary(c) for c in COLUMNS["linear"]}
        names = [n for n, m, _, _ in series["both"] if m is not None]
        if names:
            plot_grouped_bars(
                names,
                {k: [(m, s) for n, m, s, _ in v if n in names] for k, v in series.items()},
                out / f"{name}_linear.png",
                title=f"{title} (linear probe, {seeds} seed(s))",
            )
    if "finetune" in protocols:
        summary = [(n, m, s) for n, m, s, _ in result.summary("finetune") if m is not None]
        if summary:
            plot_bars(
                [n for n, _, _ in summary],
                [m for _, m, _ in summary],
                [s for _, _, s in summary],
                out / f"{name}_finetune.png",
                title=f"{title} (finetune, {seeds} seed(s))",
            )
    print(markdown)
    return result
