"""SimCLR (Chen et al., 2020) with the two modalities of a video as its two views (paper Table 4)."""

from __future__ import annotations

from torch import Tensor

from avcl.config import Config
from avcl.losses import info_nce_cross_modal
from avcl.methods.base import Method
from avcl.models.heads import mlp


class SimCLR(Method):
    """Cross-modal NT-Xent on projected features.

    Each modality has its own 2-layer projector ``(B, D) -> (B, proj_dim)`` (hidden ``proj_hidden``).
    The loss is ``0.5 * info_nce_cross_modal(z_v, z_a)``: NT-Xent's mean over the 2N anchors of the
    global batch (N video and N audio anchors), each contrasted with every other embedding of the batch.
    """

    name = "simclr"

    def __init__(self, cfg: Config, num_classes: int | None = None):
        super().__init__(cfg, num_classes)
        m = cfg.method
        self.video_proj = mlp(self.feature_dim, m.proj_hidden, m.proj_dim)
        self.audio_proj = mlp(self.audio_encoder.out_dim, m.proj_hidden, m.proj_dim)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        z_v = self.video_proj(self.video_encoder(batch["video"]))
        z_a = self.audio_proj(self.audio_encoder(batch["audio"]))
        return {"loss": 0.5 * info_nce_cross_modal(z_v.float(), z_a.float(), temperature=self.cfg.method.temperature)}
