"""Options shared by the commands that take a configuration."""

from __future__ import annotations

import argparse

from avcl.config import Config, apply_dict, load_config, parse_override, read_preset, set_key, upgrade_saved, validate


def add_config_options(parser: argparse.ArgumentParser, out_help: str = "run folder (train.out)") -> None:
    parser.add_argument("--config", help="YAML preset, e.g. configs/avcl_r3d.yaml")
    parser.add_argument("--data", help="prepared cache folder (data.root)")
    parser.add_argument("--out", help=out_help)
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="dotted config overrides, e.g. train.epochs=5 method.lambda_cor=0.5",
    )


def config_from_args(args: argparse.Namespace, base: dict | None = None) -> Config:
    """Defaults (or ``base``, a config saved in a checkpoint, then the keys --config sets), then overrides,
    then --data/--out."""
    if base is None:
        cfg = load_config(args.config, args.overrides)
    else:
        cfg = apply_dict(Config(), upgrade_saved(base), "checkpoint config")
        if args.config:  # the keys the preset sets, over the checkpoint's (a fine-tuning preset sets eval.*)
            cfg = apply_dict(cfg, read_preset(args.config), args.config)
        for text in args.overrides:
            key, value = parse_override(text)
            set_key(cfg, key, value)
        validate(cfg)
    if args.data:
        cfg.data.root = args.data
    if getattr(args, "out", None):
        cfg.train.out = args.out
    return cfg
