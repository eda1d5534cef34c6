"""MoCo v2 (Chen et al., 2020) with the two modalities of a video as its two views (paper Table 4)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from avcl.config import Config
from avcl.distributed import gather_no_grad
from avcl.errors import UserError
from avcl.losses import info_nce_queue
from avcl.methods.base import Method
from avcl.methods.ema import ema_update, momentum_copy, online_branches
from avcl.models.heads import mlp


@dataclass
class MoCoOptions:
    moco_queue: int = 4096  # negatives per modality (a buffer: checkpoints hold it)
    moco_momentum: float = 0.99  # of the key encoders' EMA


class MoCo(Method):
    """Query encoders and projectors trained by InfoNCE against momentum keys and a queue per modality.

    Cross-modal keys: the video query ``q_v`` has as positive the audio key ``k_a`` of the same video
    and as negatives the audio queue ``queue_a``; symmetrically for ``q_a``. The loss is the mean over
    the 2N anchors, ``0.5 * (InfoNCE(q_v, k_a, queue_a) + InfoNCE(q_a, k_v, queue_v))``.

    The key branches (``key.video_encoder``, ``key.audio_encoder``, ``key.video_proj``,
    ``key.audio_proj``) are EMA copies (``method.moco_momentum``) updated in :meth:`on_step_end`.
    The projectors are MoCo v2's MLP (``proj_hidden``, ReLU, ``proj_dim``; no BN). The queues
    ``queue_v``/``queue_a`` ``(moco_queue, proj_dim)`` and ``queue_ptr`` are buffers, so checkpoints
    hold them. In training mode each forward enqueues the keys of the *global* batch (gathered in rank
    order), so every rank holds the same queue and 2 processes x N fill it exactly as 1 process x 2N.

    No shuffle-BN: the key encoders' BatchNorm uses the statistics of the local batch, as on one
    process. MoCo shuffles the batch across GPUs because a query and its own key, computed by the same
    kind of network from one batch, can recognise each other through those statistics; here query and
    key come from different modalities and different encoders, which weakens that shortcut.
    """

    name = "moco"
    options = MoCoOptions

    def __init__(self, cfg: Config, num_classes: int | None = None):
        super().__init__(cfg, num_classes)
        m = cfg.method
        if m.moco_queue < 1:
            raise UserError(f"method.moco_queue must be positive, got {m.moco_queue}")
        self.video_proj = mlp(self.feature_dim, m.proj_hidden, m.proj_dim, bn=False)
        self.audio_proj = mlp(self.audio_encoder.out_dim, m.proj_hidden, m.proj_dim, bn=False)
        self.key = momentum_copy(online_branches(self))
        self.register_buffer("queue_v", F.normalize(torch.randn(m.moco_queue, m.proj_dim), dim=1))
        self.register_buffer("queue_a", F.normalize(torch.randn(m.moco_queue, m.proj_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        video, audio = batch["video"], batch["audio"]
        q_v = self.video_proj(self.video_encoder(video))
        q_a = self.audio_proj(self.audio_encoder(audio))
        with torch.no_grad():
            k = self.key
            k_v = F.normalize(k.video_proj(k.video_encoder(video)).float(), dim=1)
            k_a = F.normalize(k.audio_proj(k.audio_encoder(audio)).float(), dim=1)
        t = self.cfg.method.temperature
        # info_nce_queue keeps its own copy of the queue, so the in-place enqueue below is safe
        loss = 0.5 * (info_nce_queue(q_v, k_a, self.queue_a, t) + info_nce_queue(q_a, k_v, self.queue_v, t))
        if self.training:
            self.enqueue(gather_no_grad(k_v), gather_no_grad(k_a))
        return {"loss": loss}

    @torch.no_grad()
    def enqueue(self, k_v: Tensor, k_a: Tensor) -> None:
        """Replace the oldest queue rows by the ``(N, proj_dim)`` keys of the global batch."""
        n, size = k_v.shape[0], self.queue_v.shape[0]
        if n > size:
            raise UserError(f"method.moco_queue={size} is smaller than the global batch of {n} samples; raise it")
        rows = (self.queue_ptr + torch.arange(n, device=self.queue_ptr.device)) % size
        self.queue_v[rows] = k_v.to(self.queue_v.dtype)
        self.queue_a[rows] = k_a.to(self.queue_a.dtype)
        self.queue_ptr.copy_((self.queue_ptr + n) % size)

    @torch.no_grad()
    def on_step_end(self) -> None:
        ema_update(self.key, online_branches(self), self.cfg.method.moco_momentum)
