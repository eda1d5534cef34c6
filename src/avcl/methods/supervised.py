"""Supervised classification over one or both encoders: Baseline-R, Baseline-A, Baseline-R+A (Table 4),
and the model every pretrained method is fine-tuned as."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from avcl.config import MODALITIES, Config, choice
from avcl.methods.base import Method
from avcl.models.heads import Classifier


@dataclass
class SupervisedOptions:
    supervised_modality: str = choice("both", MODALITIES)  # the features of the supervised baselines


class Supervised(Method):
    """Cross-entropy on a classifier over the concatenated features of the chosen modalities.

    ``backbone_method`` (optional) is a pretrained method whose encoders (and, for AVCL, AMFM) this
    model starts from: fine-tuning is this class with pretrained weights, a baseline is it from scratch.
    """

    name = "supervised"
    supervised = True
    options = SupervisedOptions

    def __init__(
        self, cfg: Config, num_classes: int, modality: str | None = None, backbone_method: Method | None = None
    ):
        super().__init__(cfg, num_classes)
        if num_classes is None or num_classes < 2:
            raise ValueError("supervised training needs at least two classes")
        self.modality = modality or cfg.method.supervised_modality
        self.uses_video = self.modality in ("video", "both")
        self.uses_audio = self.modality in ("audio", "both")
        self.backbone_method = backbone_method  # owns the encoders when fine-tuning
        if backbone_method is not None:
            # Share, not copy, the pretrained encoders; register them once (under backbone_method)
            # so the state dict holds each weight a single time.
            del self._modules["video_encoder"], self._modules["audio_encoder"]
            object.__setattr__(self, "video_encoder", backbone_method.video_encoder)
            object.__setattr__(self, "audio_encoder", backbone_method.audio_encoder)
            self._freeze_unused(backbone_method)
        self.classifier = Classifier(self._base().embed_dim(self.modality), num_classes, dropout=cfg.model.dropout)

    def _freeze_unused(self, backbone_method: Method) -> None:
        """Pretraining-only parts (projectors, predictors, momentum copies, AMFM for one modality) get
        no gradient when fine-tuning; freeze them so the optimiser and DDP see only what is trained.
        What is trained is what the backbone's evaluation reads (:meth:`Method.eval_modules`)."""
        used = {id(p) for module in backbone_method.eval_modules(self.modality) for p in module.parameters()}
        for p in backbone_method.parameters():
            if id(p) not in used:
                p.requires_grad_(False)

    def _base(self) -> Method:
        return self.backbone_method if self.backbone_method is not None else super(Supervised, self)

    def embed(self, video: Tensor | None, audio: Tensor | None, modality: str | None = None) -> Tensor:
        modality = modality or self.modality
        if self.backbone_method is not None:
            return self.backbone_method.embed(video, audio, modality)
        return super().embed(video, audio, modality)

    def logits(self, batch: dict[str, Tensor]) -> Tensor:
        return self.classifier(self.embed(batch.get("video"), batch.get("audio"), self.modality))

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        logits = self.logits(batch)
        loss = F.cross_entropy(logits, batch["label"])
        acc = 100.0 * (logits.argmax(dim=1) == batch["label"]).float().mean()
        return {"loss": loss, "acc": acc.detach()}
