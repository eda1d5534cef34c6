"""Encoders (``backbones``), the AMFM fusion module (``fusion``) and small heads (``heads``)."""

from avcl.models.backbones import AudioEncoder, Backbone, build_backbone, build_encoders
from avcl.models.fusion import AMFM
from avcl.models.heads import Classifier, mlp

__all__ = ["AMFM", "AudioEncoder", "Backbone", "Classifier", "build_backbone", "build_encoders", "mlp"]
