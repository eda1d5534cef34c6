"""``avcl compare`` (Table 4) and ``avcl ablate table1|table2|table3`` on any prepared dataset."""

from __future__ import annotations

from avcl.cli._common import add_config_options, config_from_args
from avcl.errors import UserError


def _common(p) -> None:
    add_config_options(p, out_help="folder for the runs, the table (.md, .json) and the bar chart (.png)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per row (mean and standard deviation)")
    p.add_argument(
        "--protocols",
        default="linear,finetune",
        help="comma-separated: linear (probes on frozen features: video, audio, both), finetune "
        "(end to end), knn (weighted kNN, k=20), retrieval (R@1 and R@5, pooled features)",
    )


def register(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="Table 4: every method with the same budget, evaluated the same way",
        description="Pretrains each method (and trains the supervised baselines) on --data with "
        "the same preset, evaluates each by the same protocols at video level, and writes "
        "table4.md, table4.json and a bar chart per protocol. Interrupted, it resumes.",
    )
    from avcl.experiments import compare_rows

    p.add_argument(
        "--methods",
        default="all",
        help=f"all (the paper's Table 4), or some of {', '.join(compare_rows())} "
        "(avcl-paper: AVCL with the paper's text to the letter)",
    )
    _common(p)
    p.set_defaults(func=run_compare)

    p = sub.add_parser(
        "ablate",
        help="Tables 1-3: sampling and model number, CGRA layer, loss weights and AMFM",
        description="Runs the rows of the paper's Table 1, 2 or 3 as config variations of AVCL.",
    )
    from avcl.experiments import TABLES

    p.add_argument("table", choices=tuple(TABLES))
    _common(p)
    p.set_defaults(func=run_ablate)


def _protocols(text: str) -> tuple[str, ...]:
    protocols = tuple(p.strip() for p in text.split(",") if p.strip())
    from avcl.experiments import PROTOCOLS

    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad or not protocols:
        raise UserError(f"--protocols takes some of {', '.join(PROTOCOLS)}, got {text!r}")
    return protocols


def run_compare(args) -> int:
    from avcl.experiments import run_table, table4_rows

    cfg = config_from_args(args)
    rows = table4_rows(args.methods)
    run_table(
        cfg,
        "Table 4: comparison of methods (two encoders, RGB + audio)",
        rows,
        args.out or "runs/compare",
        args.seeds,
        _protocols(args.protocols),
        "table4",
    )
    return 0


def run_ablate(args) -> int:
    from avcl.experiments import TABLES, run_table

    cfg = config_from_args(args)
    title, rows = TABLES[args.table]
    run_table(cfg, title, rows, args.out or f"runs/{args.table}", args.seeds, _protocols(args.protocols), args.table)
    return 0
