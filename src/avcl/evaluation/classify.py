"""Action recognition protocols (METHOD.md section 6): fine-tuning, linear probe, video-level test.

Video-level testing averages the logits of ``data.test_clips`` clips spread uniformly over each video
(centre crop) and reports top-1 and top-5 accuracy, with a confusion-matrix PNG beside the numbers.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from avcl.progress import progress as progress_bar

from avcl.config import Config
from avcl.data.transforms import to_model_input
from avcl.engine.checkpoint import load_checkpoint
from avcl.engine.setup import open_cache, place_method, setup_device, split_dataset, split_loader
from avcl.engine.trainer import Trainer, autocast, make_optimizer, make_schedule, seed_everything
from avcl.errors import UserError
from avcl.evaluation.plots import plot_confusion_matrix
from avcl.methods.base import Method
from avcl.methods.supervised import Supervised


# -- metrics -------------------------------------------------------------------------------------
def topk_accuracy(logits: Tensor, labels: Tensor, ks=(1, 5)) -> dict[str, float]:
    """Percent of rows whose label is among the k largest logits, for each k (capped at #classes)."""
    out = {}
    for k in ks:
        k_eff = min(k, logits.shape[1])
        hit = (logits.topk(k_eff, dim=1).indices == labels[:, None]).any(dim=1).float().mean()
        out[f"top{k}"] = 100.0 * float(hit)
    return out


def confusion_matrix(pred: np.ndarray, true: np.ndarray, num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (true, pred), 1)
    return matrix


def report_predictions(logits: Tensor, labels: Tensor, classes: list[str], out: Path | None, title: str,
                       ks=(1, 5)) -> dict:
    """Top-k, per-class accuracy and the confusion matrix; files ``metrics.json`` and ``confusion.png``."""
    metrics = topk_accuracy(logits, labels, ks)
    pred = logits.argmax(dim=1).numpy()
    true = labels.numpy()
    matrix = confusion_matrix(pred, true, len(classes))
    per_class = {c: (100.0 * matrix[i, i] / matrix[i].sum()) if matrix[i].sum() else None for i, c in enumerate(classes)}
    metrics.update({"videos": int(len(true)), "per_class_top1": per_class, "confusion": matrix.tolist(),
                    "classes": list(classes)})
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        plot_confusion_matrix(matrix, classes, out / "confusion.png", title=f"{title}: top-1 {metrics['top1']:.1f}%")
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


# -- features and logits over a loader -----------------------------------------------------------
@torch.no_grad()
def collect(fn: Callable[[dict], Tensor], loader, cfg: Config, device: torch.device, desc: str) -> tuple[Tensor, Tensor]:
    """Apply ``fn`` to every batch; test-mode batches (B, N, ...) are flattened to B*N clips and
    returned as (B, N, D). Returns (outputs on the CPU, labels)."""
    outs, labels = [], []
    for batch in progress_bar(loader, desc=desc, unit="batch", leave=False, disable=not cfg.train.progress):
        batch = to_model_input(batch, cfg.data, device)
        clips = batch["video"].dim() == 6 if "video" in batch else batch["audio"].dim() == 5
        if clips:
            b, n = (batch["video"] if "video" in batch else batch["audio"]).shape[:2]
            flat = {k: v.flatten(0, 1) if k in ("video", "audio") else v for k, v in batch.items()}
        with autocast(device, cfg.train.amp):
            y = fn(flat if clips else batch).float()
        outs.append(y.view(b, n, -1).cpu() if clips else y.cpu())
        labels.append(batch["label"].cpu())
    return torch.cat(outs), torch.cat(labels)


def _eval_loader(cfg: Config, cache, split: str, mode: str, require_audio: bool, device: torch.device):
    dataset = split_dataset(cfg, cache, split, mode, require_audio=require_audio)
    return split_loader(cfg, dataset, batch_size=cfg.eval.batch_size, shuffle=False, device=device), dataset


def _has_split(cache, split: str) -> bool:
    return split and len(cache.indices(split)) > 0


def _embed_fn(method: Method, modality: str) -> Callable[[dict], Tensor]:
    return lambda b: method.embed(b.get("video"), b.get("audio"), modality)


# -- video-level test ----------------------------------------------------------------------------
def video_level_test(model: Supervised, cfg: Config, out: Path | None, split: str | None = None,
                     device: torch.device | None = None, title: str = "test") -> dict:
    """Logits averaged over ``data.test_clips`` uniform clips per video (centre crop)."""
    device = device or setup_device(cfg)
    cache = open_cache(cfg)
    split = split or cfg.data.test_split
    model = model.to(device).eval()
    loader, dataset = _eval_loader(cfg, cache, split, "test", model.uses_audio, device)
    logits, labels = collect(lambda b: model.classifier(model.embed(b.get("video"), b.get("audio"))),
                             loader, cfg, device, f"test ({split})")
    metrics = report_predictions(logits.mean(dim=1), labels, dataset.classes, out, title, cfg.eval.topk)
    metrics.update({"split": split, "clips_per_video": cfg.data.test_clips, "modality": model.modality})
    if out is not None:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


# -- fine-tuning ---------------------------------------------------------------------------------
@torch.no_grad()
def clip_accuracy(model: Supervised, loader, cfg: Config, device: torch.device) -> float:
    """Top-1 (%) on single centre clips: the per-epoch validation of fine-tuning."""
    was_training = model.training
    model.eval()
    logits, labels = collect(lambda b: model.logits(b), loader, cfg, device, "validate")
    model.train(was_training)
    return 100.0 * float((logits.argmax(1) == labels).float().mean())


def finetune(cfg: Config, out: str | Path, pretrained: Method | None = None, resume: bool = False,
             test: bool = True) -> dict:
    """Train the encoders and a classifier end to end with labels (``eval.*`` settings; paper: SGD,
    weight decay 5e-3, 150 epochs) and keep the best validation epoch; then test it at video level.

    ``pretrained=None`` trains from scratch: that is the supervised Baseline-R / -A / -R+A of Table 4.
    """
    out = Path(out)
    if not resume and (out / "last.pt").exists():
        raise UserError(f"{out} already holds a run (last.pt); pass --resume to continue it or choose another --out")
    device = setup_device(cfg)
    seed_everything(cfg.train.seed)
    cache = open_cache(cfg)
    classes = list(cache.meta["classes"])
    model = place_method(cfg, Supervised(cfg, len(classes), modality=cfg.eval.modality, backbone_method=pretrained), device)
    train_set = split_dataset(cfg, cache, cfg.data.train_split, "train", require_audio=model.uses_audio)
    loader = split_loader(cfg, train_set, batch_size=cfg.eval.batch_size, shuffle=True, device=device,
                          distributed=True, drop_last=len(train_set) > cfg.eval.batch_size)
    val_split = cfg.data.val_split if _has_split(cache, cfg.data.val_split) else cfg.data.train_split
    val_loader, _ = _eval_loader(cfg, cache, val_split, "eval", model.uses_audio, device)
    optimizer = make_optimizer(model.parameters(), "sgd", cfg.eval.lr, cfg.eval.momentum, cfg.eval.weight_decay)

    def schedule(opt, steps):
        return make_schedule(opt, cfg.eval.schedule, cfg.eval.epochs, steps)

    trainer = Trainer(
        cfg, model, loader, out=out, epochs=cfg.eval.epochs, optimizer=optimizer, scheduler_factory=schedule,
        device=device, kind="finetune", metric="val_acc",
        evaluate=lambda m: {"val_acc": clip_accuracy(m, val_loader, cfg, device)},
        meta={"classes": classes, "num_classes": len(classes), "modality": model.modality,
              "backbone_method": pretrained.name if pretrained is not None else None, "val_split": val_split},
    )
    if resume:
        trainer.resume()
    state = trainer.fit()
    result = {"best_val_acc": state.best_metric, "epochs": state.epoch}
    if test:
        best = load_checkpoint(out / "best.pt", map_location=device)
        model.load_state_dict(best["model"])
        result["test"] = video_level_test(model, cfg, out / "test", device=device, title="fine-tuned")
        (out / "result.json").write_text(json.dumps(result, indent=2))
    return result


# -- linear probe --------------------------------------------------------------------------------
def _fit_probe(x: Tensor, y: Tensor, x_val: Tensor | None, y_val: Tensor | None, num_classes: int, cfg: Config,
               seed: int) -> nn.Linear:
    """Multinomial logistic regression on standardised features, best epoch by validation accuracy."""
    torch.manual_seed(seed)
    probe = nn.Linear(x.shape[1], num_classes)
    opt = torch.optim.SGD(probe.parameters(), lr=cfg.eval.linear_lr, momentum=0.9,
                          weight_decay=cfg.eval.linear_weight_decay)
    epochs = cfg.eval.linear_epochs
    batch = 256
    steps = epochs * math.ceil(len(x) / batch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    gen = torch.Generator().manual_seed(seed)
    best, best_state = -1.0, None
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(batch):
            loss = F.cross_entropy(probe(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if x_val is not None:
            with torch.no_grad():
                acc = float((probe(x_val).mean(dim=1) if x_val.dim() == 3 else probe(x_val)).argmax(1).eq(y_val).float().mean())
            if acc > best:
                best, best_state = acc, {k: v.clone() for k, v in probe.state_dict().items()}
    if best_state is not None:
        probe.load_state_dict(best_state)
    return probe


def linear_probe(method: Method, cfg: Config, out: str | Path | None, modality: str | None = None,
                 title: str = "linear probe") -> dict:
    """Frozen encoders; a linear classifier on their (fused, for AVCL) features.

    Training features come from ``data.test_clips`` uniform clips of every training video (each clip
    one sample); the classifier is chosen on the validation split and tested at video level.
    """
    out = Path(out) if out is not None else None
    modality = modality or cfg.eval.modality
    device = setup_device(cfg)
    cache = open_cache(cfg)
    classes = list(cache.meta["classes"])
    method = method.to(device).eval()
    embed = _embed_fn(method, modality)
    needs_audio = modality in ("audio", "both")

    def features(split: str):
        loader, _ = _eval_loader(cfg, cache, split, "test", needs_audio, device)
        return collect(embed, loader, cfg, device, f"features ({split})")

    x_tr, y_tr = features(cfg.data.train_split)
    mean, std = x_tr.flatten(0, 1).mean(0), x_tr.flatten(0, 1).std(0) + 1e-6
    norm = lambda x: (x - mean) / std  # noqa: E731
    x_val = y_val = None
    if _has_split(cache, cfg.data.val_split):
        x_val, y_val = features(cfg.data.val_split)
        x_val = norm(x_val)
    n_clips = x_tr.shape[1]
    x_fit = norm(x_tr).flatten(0, 1)
    y_fit = y_tr.repeat_interleave(n_clips)
    probe = _fit_probe(x_fit, y_fit, x_val, y_val, len(classes), cfg, cfg.train.seed)
    x_te, y_te = features(cfg.data.test_split)
    with torch.no_grad():
        logits = probe(norm(x_te)).mean(dim=1)
    metrics = report_predictions(logits, y_te, classes, out, title, cfg.eval.topk)
    metrics.update({"protocol": "linear", "modality": modality, "train_videos": int(len(y_tr)),
                    "clips_per_video": n_clips, "feature_dim": int(x_tr.shape[-1])})
    if out is not None:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
