"""``avcl demo``: the main job on the embedded synthetic benchmark (what ``make demo`` runs)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("demo", help="synth -> prepare -> pretrain AVCL -> linear probe and test; prints a table",
                       description="Runs the whole pipeline on a generated benchmark with the CPU preset "
                       "(configs/demo_cpu.yaml) and writes a report folder.")
    p.add_argument("--out", default="runs/demo", help="report folder (replaced if it exists)")
    p.add_argument("--classes", type=int, default=8)
    p.add_argument("--per-class", type=int, default=20)
    p.add_argument("--epochs", type=int, help="pretraining epochs (default: the preset's)")
    p.add_argument("--no-supervised", action="store_true", help="skip the supervised reference")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides on top of the preset")
    p.set_defaults(func=run)


def run(args) -> int:
    from avcl.demo import run_demo

    run_demo(args.out, classes=args.classes, per_class=args.per_class, epochs=args.epochs,
             supervised=not args.no_supervised, overrides=tuple(args.overrides))
    return 0
