"""A method's outputs over a loader, without training: validation during fine-tuning, and the features
and logits of the evaluation protocols."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from avcl.config import Config
from avcl.data.transforms import to_model_input
from avcl.engine.setup import autocast
from avcl.progress import progress as progress_bar


@torch.no_grad()
def collect(
    fn: Callable[[dict], Tensor], loader, cfg: Config, device: torch.device, desc: str
) -> tuple[Tensor, Tensor]:
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
