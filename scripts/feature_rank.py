"""Dimensional collapse of pretrained features: effective rank and cross-modal correlation.

For the untrained encoders of a preset (its initialisation seed) and each pretraining checkpoint given,
the clip-mean features of the test split (``avcl.evaluation.probe.extract_features``) are summarised by
their effective rank (``avcl.methods.diagnostics.effective_rank``); for a method with projectors
(``video_proj``/``audio_proj``, e.g. Barlow Twins) the projector outputs of those features too, with the
per-dimension correlation between the two modalities' outputs (what Barlow Twins' loss drives to 1).

    python scripts/feature_rank.py --data PREPARED [--config configs/demo_cpu.yaml] CHECKPOINT...
"""

from __future__ import annotations

import argparse

import torch

from avcl.api import method_from_checkpoint
from avcl.config import config_from_dict, load_config
from avcl.data.cache import PreparedCache
from avcl.engine.checkpoint import load_checkpoint
from avcl.evaluation.probe import extract_features
from avcl.experiments import random_encoders
from avcl.methods.diagnostics import effective_rank, per_dim_correlation


def summary(name: str, method, cfg) -> str:
    feats, _ = extract_features(method, cfg, "test", ("video", "audio"))
    v, a = feats["video"].mean(1), feats["audio"].mean(1)
    line = f"{name}: effective rank video {effective_rank(v):.1f}, audio {effective_rank(a):.1f} (of {v.shape[1]})"
    if hasattr(method, "video_proj") and hasattr(method, "audio_proj"):
        device = next(method.video_proj.parameters()).device
        with torch.no_grad():
            zv, za = method.video_proj(v.to(device)).cpu(), method.audio_proj(a.to(device)).cpu()
        line += (
            f"; projector outputs {effective_rank(zv):.1f} / {effective_rank(za):.1f} (of {zv.shape[1]}),"
            f" per-dimension correlation {per_dim_correlation(zv, za):.2f}"
        )
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="*", help="pretraining checkpoints (.pt)")
    parser.add_argument("--data", required=True, help="the prepared dataset the checkpoints were trained on")
    parser.add_argument("--config", default="configs/demo_cpu.yaml", help="preset of the random-init row")
    args = parser.parse_args()
    cfg = load_config(args.config, [f"data.root={args.data}", "train.progress=false"])
    classes = len(PreparedCache(args.data).meta["classes"])
    print(summary(f"random init (seed {cfg.train.seed})", random_encoders(cfg, classes), cfg), flush=True)
    for path in args.checkpoints:
        ckpt = load_checkpoint(path)
        ckpt_cfg = config_from_dict(ckpt["config"])
        ckpt_cfg.data.root, ckpt_cfg.train.progress = args.data, False
        print(summary(path, method_from_checkpoint(ckpt), ckpt_cfg), flush=True)


if __name__ == "__main__":
    main()
