"""SimSiam (Chen and He, 2021) with the two modalities of a video as its two views (paper Table 4)."""

from __future__ import annotations

from torch import Tensor

from avcl.config import Config
from avcl.losses import negative_cosine
from avcl.methods.base import Method
from avcl.models.heads import mlp


class SimSiam(Method):
    """Predictor plus stop-gradient, no momentum encoder and no negatives.

    Per modality: a 3-layer projector ``(B, D) -> (B, proj_dim)`` ending in BN (SimSiam's layout,
    hidden ``proj_hidden``) and a 2-layer predictor ``(B, proj_dim) -> (B, proj_dim)`` (hidden
    ``pred_hidden``). Each modality's prediction chases the other's projection:
    ``L = D(p_v, z_a) / 2 + D(p_a, z_v) / 2`` with ``D`` the negative cosine, whose second argument
    is detached. The loss lies in [-1, 1] and is the mean over the 2N predictions.
    """

    name = "simsiam"

    def __init__(self, cfg: Config, num_classes: int | None = None):
        super().__init__(cfg, num_classes)
        m = cfg.method
        self.video_proj = mlp(self.feature_dim, m.proj_hidden, m.proj_dim, layers=3, last_bn=True)
        self.audio_proj = mlp(self.audio_encoder.out_dim, m.proj_hidden, m.proj_dim, layers=3, last_bn=True)
        self.video_pred = mlp(m.proj_dim, m.pred_hidden, m.proj_dim)
        self.audio_pred = mlp(m.proj_dim, m.pred_hidden, m.proj_dim)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        z_v = self.video_proj(self.video_encoder(batch["video"]))
        z_a = self.audio_proj(self.audio_encoder(batch["audio"]))
        p_v, p_a = self.video_pred(z_v), self.audio_pred(z_a)
        return {"loss": 0.5 * negative_cosine(p_v, z_a) + 0.5 * negative_cosine(p_a, z_v)}
