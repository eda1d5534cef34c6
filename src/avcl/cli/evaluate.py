"""``avcl finetune``, ``avcl linear``, ``avcl test``: the action recognition protocols."""

from __future__ import annotations

import json
from pathlib import Path

from avcl.cli._common import add_config_options, config_from_args
from avcl.config import MODALITIES
from avcl.errors import UserError


def register(sub) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune pretrained encoders with a classifier, then test at video level",
        description="Fine-tune (paper: SGD, weight decay 5e-3, 150 epochs; eval.* keys). Without "
        "--checkpoint the encoders start from scratch: the supervised baselines.",
    )
    p.add_argument("--checkpoint", help="pretraining checkpoint (file or run folder)")
    p.add_argument("--modality", choices=MODALITIES, help="features to classify (eval.modality)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted fine-tuning in --out")
    add_config_options(p, out_help="fine-tuning run folder")
    p.set_defaults(func=run_finetune)

    p = sub.add_parser("linear", help="linear probe on frozen features, tested at video level")
    p.add_argument("--checkpoint", help="pretraining checkpoint; omit for randomly initialised encoders")
    p.add_argument("--modality", choices=MODALITIES, help="features to classify (eval.modality)")
    add_config_options(p, out_help="report folder")
    p.set_defaults(func=run_linear)

    p = sub.add_parser(
        "test", help="video-level test of a fine-tuned checkpoint (10 clips, top-1/top-5, confusion PNG)"
    )
    p.add_argument("--checkpoint", required=True, help="fine-tuning checkpoint (file or run folder; best.pt first)")
    p.add_argument("--split", help="split to test (default data.test_split)")
    add_config_options(p, out_help="report folder")
    p.set_defaults(func=run_test)


def _config_and_method(args):
    from avcl.api import method_from_checkpoint
    from avcl.engine.checkpoint import load_checkpoint

    if args.checkpoint:
        ckpt = load_checkpoint(args.checkpoint)
        cfg = config_from_args(args, base=ckpt["config"])
        method = method_from_checkpoint(ckpt)
    else:
        if not args.config:
            raise UserError("without --checkpoint, give --config so the encoders can be built")
        from avcl.engine.setup import seed_everything
        from avcl.methods import build_method

        cfg = config_from_args(args)
        seed_everything(cfg.train.seed)
        method = build_method(cfg)
    if getattr(args, "modality", None):
        cfg.eval.modality = args.modality
    return cfg, method


def _out(args, default: str) -> Path:
    return Path(args.out) if args.out else Path(default)


def run_finetune(args) -> int:
    from avcl.api import finetune_and_test

    cfg, method = _config_and_method(args)
    out = _out(args, "runs/finetune")
    result = finetune_and_test(cfg, out, pretrained=method if args.checkpoint else None, resume=args.resume)
    test = result["test"]
    print(
        f"best validation top-1 {result['best_val_acc']:.1f}%; video-level test top-1 {test['top1']:.1f}% "
        f"top-5 {test['top5']:.1f}% -> {out}"
    )
    return 0


def run_linear(args) -> int:
    from avcl.evaluation.probe import linear_probe

    cfg, method = _config_and_method(args)
    out = _out(args, "runs/linear")
    metrics = linear_probe(method, cfg, out)
    print(
        f"linear probe ({metrics['modality']}): video-level top-1 {metrics['top1']:.1f}% "
        f"top-5 {metrics['top5']:.1f}% -> {out}"
    )
    return 0


def finetuned(args, command: str, hint: str):
    """``(cfg, model, default output folder)`` of the fine-tuning checkpoint ``args.checkpoint``; any other
    kind of checkpoint is refused with ``hint``."""
    from avcl.api import method_from_checkpoint
    from avcl.engine.checkpoint import load_checkpoint

    ckpt = load_checkpoint(args.checkpoint)
    if ckpt.get("kind") != "finetune":
        raise UserError(f"{args.checkpoint}: is a {ckpt.get('kind')} checkpoint; `avcl {command}` {hint}")
    run = Path(args.checkpoint)
    return (
        config_from_args(args, base=ckpt["config"]),
        method_from_checkpoint(ckpt),
        (run.parent if run.is_file() else run),
    )


def run_test(args) -> int:
    from avcl.evaluation.video_test import video_level_test

    cfg, model, run = finetuned(args, "test", "takes a fine-tuned one (use `avcl linear` for a pretraining checkpoint)")
    out = _out(args, str(run / "test"))
    metrics = video_level_test(model, cfg, out, split=args.split)
    print(json.dumps({k: metrics[k] for k in ("split", "videos", "top1", "top5")}))
    print(f"confusion.png and metrics.json in {out}")
    return 0
