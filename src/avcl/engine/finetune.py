"""``avcl finetune``: the encoders and a classifier trained end to end with labels (METHOD.md section 6),
the best validation epoch kept. The video-level test of the result is the caller's
(:func:`avcl.api.finetune_and_test`)."""

from __future__ import annotations

from pathlib import Path

import torch

from avcl.config import Config
from avcl.engine.checkpoint import load_checkpoint
from avcl.engine.inference import collect
from avcl.engine.run import Recipe, build_training, refuse_existing_run, resume_run, start_run
from avcl.methods.base import Method
from avcl.methods.supervised import Supervised


@torch.no_grad()
def clip_accuracy(model: Supervised, loader, cfg: Config, device: torch.device) -> float:
    """Top-1 (%) on single centre clips: the per-epoch validation of fine-tuning."""
    was_training = model.training
    model.eval()
    logits, labels = collect(lambda b: model.logits(b), loader, cfg, device, "validate")
    model.train(was_training)
    return 100.0 * float((logits.argmax(1) == labels).float().mean())


def finetune(
    cfg: Config, out: str | Path, pretrained: Method | None = None, resume: bool = False
) -> tuple[Supervised, dict]:
    """Train the encoders of ``pretrained`` and a classifier with labels (``eval.*``: epochs, batch,
    optimiser, learning rate, warm-up and schedule; paper: SGD, weight decay 5e-3, 150 epochs),
    validating each epoch on single centre clips of ``data.val_split`` (the training split when there
    is none). Returns the model with the weights of the best validation epoch (``best.pt``) and
    ``{"best_val_acc", "epochs"}``.

    ``pretrained=None`` trains from scratch: that is the supervised Baseline-R / -A / -R+A of Table 4.
    """
    out = Path(out)
    refuse_existing_run(out, resume, "choose another --out")
    setup = start_run(cfg)
    classes = setup.classes
    model = Supervised(cfg, len(classes), modality=cfg.eval.modality, backbone_method=pretrained)
    training = build_training(setup, model, Recipe.finetuning(cfg), split=cfg.data.train_split, drop_last=None)
    model = training.method
    val_split = cfg.data.val_split if setup.has_split(cfg.data.val_split) else cfg.data.train_split
    val_loader, _ = setup.eval_loader(val_split, "eval", require_audio=model.uses_audio)
    trainer = training.trainer(
        out,
        metric="val_acc",
        evaluate=lambda m: {"val_acc": clip_accuracy(m, val_loader, cfg, setup.device)},
        meta={
            "classes": classes,
            "num_classes": len(classes),
            "modality": model.modality,
            "backbone_method": pretrained.name if pretrained is not None else None,
            "val_split": val_split,
        },
    )
    resume_run(trainer, resume)
    state = trainer.fit()
    model.load_state_dict(load_checkpoint(out / "best.pt", map_location=setup.device)["model"])
    return model, {"best_val_acc": state.best_metric, "epochs": state.epoch}
