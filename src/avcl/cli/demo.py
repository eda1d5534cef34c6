"""``avcl demo``: the main job on the embedded synthetic benchmark (what ``make demo`` runs)."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="synth -> prepare -> pretrain AVCL -> supervised reference -> probes; one table",
        description="Runs the whole pipeline on a generated benchmark with the CPU preset "
        "(configs/demo_cpu.yaml): AVCL (default and, with --paper, the paper's text read "
        "literally), a supervised R+A reference and untrained encoders, each read by a linear "
        "probe of the video encoder, the audio encoder and both. Prints one table and the "
        "timings of each stage; writes a report folder.",
    )
    p.add_argument("--out", default="runs/demo", help="report folder (replaced if it exists)")
    p.add_argument("--classes", type=int, default=8, help="classes of the synthetic benchmark")
    p.add_argument("--per-class", type=int, default=60, help="videos per class")
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="pretraining epochs of each AVCL run (default: the preset's train.epochs, 40; about 8 minutes "
        "for the whole demo on 2 cores)",
    )
    p.add_argument("--seeds", type=int, default=1, help="seeds of every training and probe (mean ± std)")
    p.add_argument(
        "--paper",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also pretrain AVCL paper-literal (configs/avcl_paper_r3d.yaml's method section)",
    )
    p.add_argument("--no-supervised", action="store_true", help="skip the supervised reference")
    p.add_argument("--verbose", action="store_true", help="show every stage's output (default: logs/<stage>.log)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides on top of the preset")
    p.set_defaults(func=run)


def run(args) -> int:
    from avcl.demo import run_demo
    from avcl.errors import UserError

    if args.seeds < 1 or args.classes < 2 or args.per_class < 1:
        raise UserError("--seeds and --per-class must be at least 1, --classes at least 2")
    run_demo(
        args.out,
        classes=args.classes,
        per_class=args.per_class,
        epochs=args.epochs,
        supervised=not args.no_supervised,
        paper=args.paper,
        seeds=args.seeds,
        overrides=tuple(args.overrides),
        verbose=args.verbose,
    )
    return 0
