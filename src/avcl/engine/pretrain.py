"""``avcl pretrain``: self-supervised (or supervised) training of a method on a prepared cache."""

from __future__ import annotations

from pathlib import Path

from avcl import distributed as dist
from avcl.config import Config
from avcl.engine.run import Recipe, build_training, refuse_existing_run, resume_run, start_run
from avcl.methods import build_method


def pretrain(cfg: Config, resume: bool | str = False) -> Path:
    """Train ``cfg.method`` for ``cfg.train.epochs`` epochs; returns the run folder.

    ``resume=True`` continues from ``<train.out>/last.pt`` (a path continues from that file). Without
    it, a folder that already holds a run is refused rather than overwritten.
    """
    out = Path(cfg.train.out)
    refuse_existing_run(out, resume, "set train.out elsewhere")
    setup = start_run(cfg)
    classes = setup.classes
    method = build_method(cfg, num_classes=len(classes) or None)
    training = build_training(setup, method, Recipe.pretraining(cfg), split=cfg.data.train_split)
    if dist.is_main() and getattr(training.dataset, "report", None):
        print(training.dataset.report)
    trainer = training.trainer(
        out, meta={"classes": classes, "num_classes": len(classes), "train_videos": len(training.dataset)}
    )
    resume_run(trainer, resume)
    if dist.is_main():
        print(
            f"pretraining {training.method.name} ({cfg.model.backbone}) on {len(training.dataset)} videos, "
            f"{trainer.steps_per_epoch} steps per epoch, {cfg.train.epochs} epochs, device {setup.device}, "
            f"{dist.world_size()} process(es) -> {out}"
        )
    trainer.fit()
    return out
