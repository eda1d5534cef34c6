"""``avcl pretrain``: train a method on a prepared cache (one process, or many under torchrun)."""

from __future__ import annotations

from pathlib import Path

from avcl.cli._common import add_config_options, config_from_args


def register(sub) -> None:
    from avcl.methods import REGISTRY

    p = sub.add_parser(
        "pretrain",
        help="self-supervised pretraining (AVCL or a baseline) on a prepared cache",
        description=f"Pretrain the method method.name ({', '.join(REGISTRY)}; default avcl). Under torchrun "
        "every process runs this command: "
        "torchrun --nproc_per_node=4 -m avcl.cli pretrain --config configs/avcl_r3d.yaml --data DATA",
    )
    add_config_options(p)
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="CHECKPOINT",
        help="continue the run in --out from last.pt (or from CHECKPOINT)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from avcl.engine.pretrain import pretrain

    if isinstance(args.resume, str) and "=" in args.resume and not Path(args.resume).exists():
        # `--resume train.epochs=5`: argparse took the override for the optional CHECKPOINT
        args.overrides = [args.resume, *args.overrides]
        args.resume = True
    cfg = config_from_args(args)
    from avcl import distributed as dist

    out = pretrain(cfg, resume=args.resume)
    if dist.is_main():
        from avcl.evaluation.plots import plot_run

        plot_run(out)
        print(f"checkpoints, config, logs and loss_curves.png in {out}")
    dist.cleanup()
    return 0
