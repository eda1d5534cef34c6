"""IIC, the inter-intra contrastive framework (Tao et al., ACM MM 2020), with audio as the second view.

Not the clustering method of the same acronym. Positives are the two views of one video (its clip
and its audio); negatives are the other videos of the batch (inter) and the same video with its
temporal order broken (intra).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from avcl.config import Config, choice
from avcl.errors import UserError
from avcl.losses import info_nce_cross_modal_extra
from avcl.methods.base import Method
from avcl.models.heads import mlp

INTRA_KINDS = {"repeat": ("repeat",), "shuffle": ("shuffle",), "both": ("repeat", "shuffle")}


@dataclass
class IICOptions:
    iic_intra: str = choice("both", INTRA_KINDS)  # how IIC breaks the temporal order of a clip


def _sample_seed(seed: int, step: int, index: int) -> int:
    return ((seed * 1_000_003 + step) * 1_000_033 + index) % (1 << 63)


def intra_negative_frames(
    index: Tensor, num_frames: int, kinds: tuple[str, ...], seed: int = 0, step: int = 0
) -> Tensor:
    """``(B, K, T)`` frame indices that break the temporal order of each clip, K = ``len(kinds)``.

    ``repeat``: one frame, drawn at random, repeated T times (no motion at all). ``shuffle``: a random
    permutation of the T frames, never the identity. The draws depend only on ``(seed, step, index[b])``,
    so a sample gets the same negative whichever rank or batch position it lands in.
    """
    if num_frames < 2:
        raise UserError(f"IIC breaks the temporal order of clips, which needs data.clip_len >= 2 (got {num_frames})")
    rows = []
    for idx in index.tolist():
        g = torch.Generator().manual_seed(_sample_seed(seed, step, int(idx)))
        per_kind = []
        for kind in kinds:
            if kind == "repeat":
                per_kind.append(torch.randint(num_frames, (1,), generator=g).expand(num_frames))
            elif kind == "shuffle":
                perm = torch.randperm(num_frames, generator=g)
                if torch.equal(perm, torch.arange(num_frames)):
                    perm = perm.roll(1)  # the identity would be a positive, not a negative
                per_kind.append(perm)
            else:
                raise ValueError(f"unknown intra-negative kind {kind!r}; choose repeat or shuffle")
        rows.append(torch.stack(per_kind))
    return torch.stack(rows)


def break_temporal_order(video: Tensor, frames: Tensor) -> Tensor:
    """``video`` ``(B, C, T, H, W)`` reordered by ``frames`` ``(B, K, T)`` -> ``(B, K, C, T, H, W)``."""
    b = torch.arange(video.shape[0], device=video.device)[:, None, None]
    return video[b, :, frames.to(video.device)].permute(0, 1, 3, 2, 4, 5)  # indexing gives (B, K, T, C, H, W)


class IIC(Method):
    """Cross-modal NT-Xent whose denominators also hold each video's own intra-negative clips.

    The intra negatives (``method.iic_intra``: ``repeat``, ``shuffle`` or ``both``, giving K = 1 or 2
    per video) are built from the batch's own clips, encoded by the video encoder and projector (in a
    forward of their own, so they do not enter the batch statistics of the real clips), and join the
    denominators of both anchors of their video, ``v_i`` and ``a_i``. The projector is SimCLR's
    (``proj_hidden``, ``proj_dim``), so IIC differs from SimCLR here by the intra negatives alone; the
    loss has the same scale: ``0.5 * info_nce_cross_modal_extra(z_v, z_a, z_intra)``, the mean over
    the 2N anchors. The draws of the intra negatives depend on ``train.seed``, the sample's
    ``batch["index"]`` and the training step (the buffer ``intra_step``), never on the rank.
    """

    name = "iic"
    options = IICOptions

    def __init__(self, cfg: Config, num_classes: int | None = None):
        super().__init__(cfg, num_classes)
        m = cfg.method
        if m.iic_intra not in INTRA_KINDS:
            raise UserError(f"method.iic_intra is {m.iic_intra!r}; choose one of {', '.join(INTRA_KINDS)}")
        self.intra_kinds = INTRA_KINDS[m.iic_intra]
        self.video_proj = mlp(self.feature_dim, m.proj_hidden, m.proj_dim)
        self.audio_proj = mlp(self.audio_encoder.out_dim, m.proj_hidden, m.proj_dim)
        self.register_buffer("intra_step", torch.zeros((), dtype=torch.long))

    def intra_negatives(self, batch: dict[str, Tensor]) -> Tensor:
        """The time-broken copies of the batch's clips, ``(B, K, 3, T, H, W)``."""
        video = batch["video"]
        frames = intra_negative_frames(
            batch["index"], video.shape[2], self.intra_kinds, seed=self.cfg.train.seed, step=int(self.intra_step)
        )
        return break_temporal_order(video, frames)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        intra = self.intra_negatives(batch)
        b, k = intra.shape[:2]
        z_v = self.video_proj(self.video_encoder(batch["video"]))
        z_a = self.audio_proj(self.audio_encoder(batch["audio"]))
        z_intra = self.video_proj(self.video_encoder(intra.flatten(0, 1))).view(b, k, -1)
        if self.training:
            self.intra_step += 1
        loss = info_nce_cross_modal_extra(
            z_v.float(), z_a.float(), z_intra.float(), temperature=self.cfg.method.temperature
        )
        return {"loss": 0.5 * loss}
