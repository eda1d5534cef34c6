"""BYOL (Grill et al., 2020) with the two modalities of a video as its two views (paper Table 4)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from avcl.config import Config
from avcl.losses import negative_cosine
from avcl.methods.base import Method
from avcl.methods.ema import ema_update, momentum_copy, online_branches
from avcl.models.heads import mlp


@dataclass
class BYOLOptions:
    byol_momentum: float = 0.99  # of the target's EMA (constant)


class BYOL(Method):
    """Online encoder, projector and predictor per modality, chasing an EMA target of the other modality.

    The online video branch predicts the target projection of the audio, and the online audio branch
    that of the video: ``L = 0.5 * (l(p_v, z'_a) + l(p_a, z'_v))`` with ``l = 2 - 2 cos`` averaged
    over the batch (in [0, 4]; the mean over the 2N predictions, where BYOL's paper sums the two
    directions). The target (``target.video_encoder``, ``target.audio_encoder``, ``target.video_proj``,
    ``target.audio_proj``) is an EMA of the online modules with the constant ``method.byol_momentum``
    (BYOL raises it to 1 on a cosine schedule), updated in :meth:`on_step_end`. Projector
    ``(B, D) -> (B, proj_dim)`` (hidden ``proj_hidden``), predictor ``(B, proj_dim) -> (B, proj_dim)``
    (hidden ``pred_hidden``), both with BN on the hidden layer, as BYOL.
    """

    name = "byol"
    options = BYOLOptions

    def __init__(self, cfg: Config, num_classes: int | None = None):
        super().__init__(cfg, num_classes)
        m = cfg.method
        self.video_proj = mlp(self.feature_dim, m.proj_hidden, m.proj_dim)
        self.audio_proj = mlp(self.audio_encoder.out_dim, m.proj_hidden, m.proj_dim)
        self.video_pred = mlp(m.proj_dim, m.pred_hidden, m.proj_dim)
        self.audio_pred = mlp(m.proj_dim, m.pred_hidden, m.proj_dim)
        self.target = momentum_copy(online_branches(self))

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        video, audio = batch["video"], batch["audio"]
        p_v = self.video_pred(self.video_proj(self.video_encoder(video)))
        p_a = self.audio_pred(self.audio_proj(self.audio_encoder(audio)))
        with torch.no_grad():
            t = self.target
            z_v = t.video_proj(t.video_encoder(video))
            z_a = t.audio_proj(t.audio_encoder(audio))
        # 2 - 2 cos = 2 + 2 * negative_cosine
        loss = 0.5 * ((2 + 2 * negative_cosine(p_v, z_a)) + (2 + 2 * negative_cosine(p_a, z_v)))
        return {"loss": loss}

    @torch.no_grad()
    def on_step_end(self) -> None:
        ema_update(self.target, online_branches(self), self.cfg.method.byol_momentum)
