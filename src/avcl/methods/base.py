"""The base of every method: two encoders, a training objective, and the features used for evaluation."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from avcl.config import Config
from avcl.models.backbones import build_encoders


class Method(nn.Module):
    """A training objective over the batch dict of ``docs/architecture.md``.

    Subclasses set ``name`` and implement :meth:`forward`, which returns a loss dict whose ``"loss"``
    entry is back-propagated (the other entries are logged). ``uses_audio`` / ``uses_video`` say which
    inputs a method reads, so the data pipeline can keep videos without an audio track for video-only
    methods. ``supervised`` methods read ``batch["label"]``.

    ``options`` is the dataclass of the method's own config keys, declared beside it; they join the
    ``method`` section (``method.<key>``), or a section of their own named by ``options_section``.
    ``saved_fallbacks`` gives the options added after checkpoints were already being saved the value
    that reproduces how those earlier runs were trained (a saved config without the key predates it).
    """

    name: str = "method"
    supervised: bool = False
    uses_video: bool = True
    uses_audio: bool = True
    # DDP must be told when some parameters get no gradient in a step (e.g. momentum encoders).
    find_unused_parameters: bool = False
    options: ClassVar[type | None] = None
    options_section: ClassVar[str] = "method"
    saved_fallbacks: ClassVar[dict[str, Any]] = {}

    def __init__(self, cfg: Config, num_classes: int | None = None):
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.video_encoder, self.audio_encoder = build_encoders(cfg.model)
        self.feature_dim = self.video_encoder.out_dim

    # -- training ---------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:  # pragma: no cover - abstract
        raise TypeError(f"{type(self).__name__} must define forward(batch) -> loss dict")

    @torch.no_grad()
    def on_step_end(self) -> None:
        """Called after each optimiser step (momentum encoders, queues)."""

    # -- evaluation -------------------------------------------------------------------------------
    def embed(self, video: Tensor | None, audio: Tensor | None, modality: str = "both") -> Tensor:
        """Features used downstream: ``(B, D)`` for one modality, ``(B, 2D)`` concatenated for both.

        video: (B, 3, T, H, W) normalised float; audio: (B, 1, F, Ta).
        """
        parts = []
        if modality in ("video", "both"):
            parts.append(self.video_encoder(video))
        if modality in ("audio", "both"):
            parts.append(self.audio_encoder(audio))
        return torch.cat(parts, dim=1)

    def eval_modules(self, modality: str) -> list[nn.Module]:
        """The modules :meth:`embed` reads for ``modality``: what fine-tuning trains (the rest, projectors,
        predictors, momentum copies, is pretraining-only and is frozen)."""
        modules = []
        if modality in ("video", "both"):
            modules.append(self.video_encoder)
        if modality in ("audio", "both"):
            modules.append(self.audio_encoder)
        return modules

    def embed_dim(self, modality: str) -> int:
        return self.feature_dim * (2 if modality == "both" else 1)

    def extra_repr(self) -> str:
        return f"name={self.name}"


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
