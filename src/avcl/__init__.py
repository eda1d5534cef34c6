"""avcl: self-supervised audio-visual representation learning from video."""

from __future__ import annotations

__version__ = "0.1.0"


def load_encoders(checkpoint, map_location="cpu"):
    """Return ``(video_encoder, audio_encoder)`` from a pretraining or fine-tuning checkpoint."""
    from avcl.api import load_encoders as _load

    return _load(checkpoint, map_location=map_location)


__all__ = ["__version__", "load_encoders"]
