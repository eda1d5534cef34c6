"""Which factor of the synthetic benchmark's class do untrained (or pretrained) encoders read?

For each initialisation seed, the random-init encoders of a preset (``avcl.experiments.random_encoders``),
or the encoders of each pretrained ``--checkpoint``, embed every video of a prepared synthetic benchmark
(uniform clips, centre crop, the mean over clips); a logistic regression (standardised features, C picked
on the validation split, scikit-learn) is fitted on the training split and scored on the test split for
three targets: the class, its motion pattern (the part of the name before '-') and its timbre (after it),
on video, audio and both modalities ("both": the two encoders' features side by side, before AVCL's
fusion, so not the "both" of ``avcl compare``, whose probe reads AVCL's fused features and is fitted
differently). With ``--static`` every frame of a video clip is replaced by the clip's first frame, so the
video columns say what the encoder reads from a single still picture.

    python scripts/factor_probe.py PREPARED [--config configs/demo_cpu.yaml] [--seeds 0 1 2] [--static]
    python scripts/factor_probe.py PREPARED --checkpoint runs/simclr/last.pt [...]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import Tensor, nn

from avcl.api import method_from_checkpoint
from avcl.config import load_config
from avcl.data.cache import PreparedCache
from avcl.evaluation.probe import extract_features
from avcl.experiments import random_encoders

SPLITS = ("train", "val", "test")
C_GRID = (0.001, 0.01, 0.1, 1.0)


def _fit(x: dict, y: dict) -> float:
    """Test accuracy (%) of the logistic regression whose C scores best on the validation split."""
    scaler = StandardScaler().fit(x["train"])
    z = {s: scaler.transform(x[s]) for s in SPLITS}
    fits = [LogisticRegression(C=c, max_iter=2000).fit(z["train"], y["train"]) for c in C_GRID]
    best = max(fits, key=lambda f: f.score(z["val"], y["val"]))
    return 100.0 * best.score(z["test"], y["test"])


class _FirstFrame(nn.Module):
    """A video encoder that sees every frame of its clip ``(B, C, T, H, W)`` as the clip's first."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, video: Tensor) -> Tensor:
        return self.encoder(video[:, :, :1].expand_as(video).contiguous())


def factor_table(
    prepared: str,
    preset: str | None,
    seed: int,
    checkpoint: str | None = None,
    static: bool = False,
    overrides: tuple[str, ...] = (),
) -> dict[str, dict[str, float]]:
    """Test accuracy (%) per modality and target, for the random-init encoders of ``preset`` (with
    ``overrides``) and ``seed``, or for those of ``checkpoint`` (its own config, with ``prepared`` as
    the data)."""
    classes = list(PreparedCache(prepared).meta["classes"])
    if checkpoint is None:
        cfg = load_config(preset, [*overrides, f"data.root={prepared}", f"train.seed={seed}", "train.progress=false"])
        method = random_encoders(cfg, len(classes))
    else:
        method = method_from_checkpoint(checkpoint)
        cfg = method.cfg
        cfg.data.root, cfg.train.progress = prepared, False
    if static:  # a model fine-tuned from a pretrained method embeds through that method's encoders
        owner = getattr(method, "backbone_method", None) or method
        owner.video_encoder = _FirstFrame(owner.video_encoder)
    feats = {s: extract_features(method, cfg, s, ("video", "audio")) for s in SPLITS}
    targets = {
        "class": np.array(classes),
        "pattern": np.array([c.split("-")[0] for c in classes]),
        "timbre": np.array([c.split("-")[-1] for c in classes]),
    }
    table: dict[str, dict[str, float]] = {}
    for modality in ("video", "audio", "both"):
        keys = ("video", "audio") if modality == "both" else (modality,)
        x = {s: torch.cat([feats[s][0][k] for k in keys], -1).mean(1).numpy() for s in SPLITS}
        table[modality] = {
            name: _fit(x, {s: names[feats[s][1].numpy()] for s in SPLITS}) for name, names in targets.items()
        }
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prepared", help="a synthetic benchmark prepared by avcl prepare")
    parser.add_argument("--config", help="preset of the random-init encoders (default configs/demo_cpu.yaml)")
    parser.add_argument("--seeds", type=int, nargs="+", help="their initialisation seeds (default 0 1 2)")
    parser.add_argument(
        "--checkpoint", nargs="+", help="pretrained checkpoints to probe instead (each with its own config)"
    )
    parser.add_argument("--static", action="store_true", help="video clips frozen to their first frame")
    args = parser.parse_args()
    if args.checkpoint and (args.config or args.seeds):
        parser.error("--config and --seeds choose random-init encoders; a --checkpoint brings its own")
    config, seeds = args.config or "configs/demo_cpu.yaml", args.seeds or [0, 1, 2]
    # (name in the table, init seed, checkpoint): the checkpoints given (their seed unused), or else the seeds
    runs = [(c, 0, c) for c in args.checkpoint] if args.checkpoint else [(str(s), s, None) for s in seeds]
    print("| encoders | modality | class | pattern | timbre |\n|---|---|---|---|---|")
    for name, seed, checkpoint in runs:
        table = factor_table(args.prepared, config, seed, checkpoint, args.static)
        for modality, row in table.items():
            cells = " | ".join(f"{row[k]:.1f}" for k in ("class", "pattern", "timbre"))
            print(f"| {name} | {modality} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
