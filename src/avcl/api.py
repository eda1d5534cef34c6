"""Using trained models from other code: rebuild a method from a checkpoint, get its encoders."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from avcl import fileio
from avcl.config import config_from_dict
from avcl.engine.checkpoint import load_checkpoint
from avcl.errors import UserError
from avcl.methods import build_method
from avcl.methods.base import Method
from avcl.methods.supervised import Supervised


def method_from_checkpoint(checkpoint: str | Path | dict, map_location: str | torch.device = "cpu") -> Method:
    """The method a checkpoint was trained as (pretraining or fine-tuning), with its weights, in eval mode."""
    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint, map_location)
    if "config" not in ckpt or "model" not in ckpt:
        raise UserError(f"{checkpoint}: not an avcl checkpoint (no config or model entry)")
    cfg = config_from_dict(ckpt["config"])
    meta = ckpt.get("meta", {})
    num_classes = meta.get("num_classes") or None
    if ckpt.get("kind") == "finetune":
        backbone = None
        if meta.get("backbone_method"):  # fine-tuned from a pretrained method: rebuild it first
            cfg.method.name = meta["backbone_method"]
            backbone = build_method(cfg, num_classes=num_classes)
        method: Method = Supervised(cfg, num_classes, modality=meta.get("modality"), backbone_method=backbone)
    else:
        method = build_method(cfg, num_classes=num_classes)
    method.load_state_dict(ckpt["model"])
    return method.eval()


def load_encoders(checkpoint: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, nn.Module]:
    """``(video_encoder, audio_encoder)`` of a checkpoint, as plain modules in eval mode.

    video_encoder: (B, 3, T, H, W) -> (B, D); audio_encoder: (B, 1, F, Ta) -> (B, D).
    """
    method = method_from_checkpoint(checkpoint, map_location)
    return method.video_encoder, method.audio_encoder


def finetune_and_test(
    cfg, out: str | Path, pretrained: Method | None = None, resume: bool = False, test: bool = True
) -> dict:
    """``avcl finetune``: fine-tune (:func:`avcl.engine.finetune.finetune`), plot the run's curves, and
    test the best validation epoch at video level (``out/test``); returns and writes ``result.json``:
    ``{"best_val_acc", "epochs", "test"}`` (without ``test=False``: no test and no file)."""

    from avcl import distributed as dist
    from avcl.engine.finetune import finetune
    from avcl.evaluation.plots import plot_run
    from avcl.evaluation.video_test import video_level_test

    out = Path(out)
    model, result = finetune(cfg, out, pretrained=pretrained, resume=resume)
    if dist.is_main():
        plot_run(out)
    if test:
        device = next(model.parameters()).device
        result["test"] = video_level_test(model, cfg, out / "test", device=device, title="fine-tuned")
        fileio.write_json(out / "result.json", result)
    return result
