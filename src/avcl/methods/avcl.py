"""AVCL (paper section 2): AMFM fusion, CGRA alignment and SelfCL contrast over two encoders."""
from __future__ import annotations

import torch
from torch import Tensor

from avcl.config import Config
from avcl.losses import cross_correlation_loss, info_nce_cross_modal
from avcl.methods.base import Method
from avcl.models.fusion import AMFM

# Which encoder outputs each CGRA setting aligns (paper Table 2). Conv feature maps are globally
# average-pooled to vectors before the cross-correlation (METHOD.md section 3).
CGRA_LAYERS = {
    "conv3": ("conv3",),
    "conv4": ("conv4",),
    "conv5": ("conv5",),
    "pool": ("pool",),
    "conv5+pool": ("conv5", "pool"),
}


def _global_pool(x: Tensor) -> Tensor:
    return x.flatten(2).mean(dim=2) if x.dim() > 2 else x


class AVCL(Method):
    """``L = lambda_cor * L_cor + lambda_self * L_self`` (Eq. 11).

    The pool-final features of both encoders are recalibrated by AMFM (Eq. 1-4); CGRA (Eq. 5-6)
    aligns the chosen layer across modalities; SelfCL (Eq. 7-10) contrasts each video with its own
    audio against the other videos and audios of the (global) batch.
    """

    name = "avcl"

    def __init__(self, cfg: Config, num_classes: int | None = None):
        super().__init__(cfg, num_classes)
        m = cfg.method
        self.amfm = AMFM(self.feature_dim, self.audio_encoder.out_dim, gate=m.gate) if m.amfm else None
        self.cgra_layers = CGRA_LAYERS[m.cgra_layer] if m.cgra else ()

    def fuse(self, v: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
        return self.amfm(v, a) if self.amfm is not None else (v, a)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        m = self.cfg.method
        layers = tuple(dict.fromkeys(("pool",) + self.cgra_layers))
        feats_v = self.video_encoder.forward_features(batch["video"], layers)
        feats_a = self.audio_encoder.forward_features(batch["audio"], layers)
        f_v, f_a = self.fuse(feats_v["pool"], feats_a["pool"])

        out: dict[str, Tensor] = {}
        loss = f_v.new_zeros(())
        if self.cgra_layers:
            l_cor = f_v.new_zeros(())
            for layer in self.cgra_layers:
                z_v, z_a = (f_v, f_a) if layer == "pool" else (_global_pool(feats_v[layer]), _global_pool(feats_a[layer]))
                l_cor = l_cor + cross_correlation_loss(z_v.float(), z_a.float(), lambd=m.cgra_lambda, standardize=m.standardize)
            out["loss_cor"] = l_cor.detach()
            loss = loss + m.lambda_cor * l_cor
        if m.selfcl:
            l_self = info_nce_cross_modal(f_v.float(), f_a.float(), temperature=m.temperature)
            out["loss_self"] = l_self.detach()
            loss = loss + m.lambda_self * l_self
        out["loss"] = loss
        return out

    def embed(self, video: Tensor | None, audio: Tensor | None, modality: str = "both") -> Tensor:
        """Table 4 evaluates AVCL on the AMFM-fused features, concatenated."""
        if modality != "both" or self.amfm is None:
            return super().embed(video, audio, modality)
        f_v, f_a = self.fuse(self.video_encoder(video), self.audio_encoder(audio))
        return torch.cat([f_v, f_a], dim=1)
