"""Barlow Twins (Zbontar et al., 2021) with the two modalities of a video as its two views (paper Table 4)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from avcl.config import Config, choice
from avcl.losses import REDUCTIONS, cross_correlation_loss
from avcl.methods.base import Method
from avcl.models.heads import mlp


@dataclass
class BarlowOptions:
    barlow_proj_dim: int = 2048  # hidden and output width of the 3-layer projectors
    barlow_reduce: str = choice("sum", REDUCTIONS)  # sum (the paper's loss, grows with P) | mean (divided by P)


class BarlowTwins(Method):
    """The cross-correlation loss alone, on the outputs of Barlow Twins' 3-layer projectors.

    Each modality has its own projector ``(B, D) -> (B, P)`` with P = ``method.barlow_proj_dim`` for
    the hidden and the output layers (8192 in the paper on ImageNet; 2048 here by default).
    The loss is :func:`avcl.losses.cross_correlation_loss` over the global batch, with the
    off-diagonal weight ``method.cgra_lambda`` (0.005, the value CGRA shares with Barlow Twins) and
    per-dimension standardisation: ``sum_i (1 - C_ii)^2 + lambda sum_{i!=j} C_ij^2``, a sum over the P
    dimensions, so its scale grows with P.
    """

    name = "barlow"
    options = BarlowOptions

    def __init__(self, cfg: Config, num_classes: int | None = None):
        super().__init__(cfg, num_classes)
        p = cfg.method.barlow_proj_dim
        self.video_proj = mlp(self.feature_dim, p, p, layers=3)
        self.audio_proj = mlp(self.audio_encoder.out_dim, p, p, layers=3)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        z_v = self.video_proj(self.video_encoder(batch["video"]))
        z_a = self.audio_proj(self.audio_encoder(batch["audio"]))
        return {
            "loss": cross_correlation_loss(
                z_v.float(),
                z_a.float(),
                lambd=self.cfg.method.cgra_lambda,
                standardize=True,
                reduction=self.cfg.method.barlow_reduce,
            )
        }
