"""The video-level test (METHOD.md section 6): the logits of ``data.test_clips`` clips spread uniformly over
each video (centre crop) averaged, top-1 and top-5 accuracy, and a confusion-matrix PNG beside the numbers."""

from __future__ import annotations

from pathlib import Path

import torch

from avcl import fileio
from avcl.config import Config
from avcl.engine.inference import collect
from avcl.engine.run import start_run
from avcl.evaluation.metrics import report_predictions
from avcl.methods.supervised import Supervised


def video_level_test(
    model: Supervised,
    cfg: Config,
    out: Path | None,
    split: str | None = None,
    device: torch.device | None = None,
    title: str = "test",
) -> dict:
    """Logits averaged over ``data.test_clips`` uniform clips per video (centre crop)."""
    setup = start_run(cfg, device=device, seed=False)
    device = setup.device
    split = split or cfg.data.test_split
    model = model.to(device).eval()
    loader, dataset = setup.eval_loader(split, "test", require_audio=model.uses_audio)
    logits, labels = collect(
        lambda b: model.classifier(model.embed(b.get("video"), b.get("audio"))), loader, cfg, device, f"test ({split})"
    )
    metrics = report_predictions(logits.mean(dim=1), labels, dataset.classes, out, title, cfg.eval.topk)
    metrics.update({"split": split, "clips_per_video": cfg.data.test_clips, "modality": model.modality})
    if out is not None:
        fileio.write_json(out / "metrics.json", metrics)
    return metrics
