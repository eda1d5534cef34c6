"""``avcl pretrain``: self-supervised (or supervised) training of a method on a prepared cache."""

from __future__ import annotations

from pathlib import Path

from avcl import distributed as dist
from avcl.config import Config
from avcl.engine.setup import open_cache, place_method, scaled_lr, setup_device, split_dataset, split_loader
from avcl.engine.trainer import Trainer, make_optimizer, make_schedule, seed_everything
from avcl.errors import UserError
from avcl.methods import build_method


def pretrain(cfg: Config, resume: bool | str = False) -> Path:
    """Train ``cfg.method`` for ``cfg.train.epochs`` epochs; returns the run folder.

    ``resume=True`` continues from ``<train.out>/last.pt`` (a path continues from that file). Without
    it, a folder that already holds a run is refused rather than overwritten.
    """
    out = Path(cfg.train.out)
    if not resume and (out / "last.pt").exists():
        raise UserError(f"{out} already holds a run (last.pt); pass --resume to continue it or set train.out elsewhere")
    device = setup_device(cfg)
    seed_everything(cfg.train.seed)
    cache = open_cache(cfg)
    classes = list(cache.meta.get("classes", []))
    method = place_method(cfg, build_method(cfg, num_classes=len(classes) or None), device)
    dataset = split_dataset(
        cfg, cache, cfg.data.train_split, getattr(method, "sample_mode", "train"), require_audio=method.uses_audio
    )
    if dist.is_main() and getattr(dataset, "report", None):
        print(dataset.report)
    loader = split_loader(
        cfg,
        dataset,
        batch_size=cfg.train.batch_size,
        shuffle=True,
        device=device,
        distributed=dist.is_distributed(),
        drop_last=True,
    )
    optimizer = make_optimizer(
        method.parameters(), cfg.optim.name, scaled_lr(cfg.optim.lr, cfg), cfg.optim.momentum, cfg.optim.weight_decay
    )

    def schedule(opt, steps_per_epoch):
        return make_schedule(
            opt,
            cfg.optim.schedule,
            cfg.train.epochs,
            steps_per_epoch,
            cfg.optim.warmup_epochs,
            cfg.optim.step_epochs,
            cfg.optim.step_gamma,
        )

    trainer = Trainer(
        cfg,
        method,
        loader,
        out=out,
        epochs=cfg.train.epochs,
        optimizer=optimizer,
        scheduler_factory=schedule,
        device=device,
        kind="pretrain",
        meta={"classes": classes, "num_classes": len(classes), "train_videos": len(dataset)},
    )
    if resume:
        found = trainer.resume(resume if isinstance(resume, (str, Path)) else None)
        if not found and dist.is_main():
            print(f"nothing to resume in {out}; starting a new run")
    if dist.is_main():
        print(
            f"pretraining {method.name} ({cfg.model.backbone}) on {len(dataset)} videos, "
            f"{trainer.steps_per_epoch} steps per epoch, {cfg.train.epochs} epochs, device {device}, "
            f"{dist.world_size()} process(es) -> {out}"
        )
    trainer.fit()
    return out
