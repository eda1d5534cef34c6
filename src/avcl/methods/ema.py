"""Momentum (EMA) copies of a method's online branches: MoCo's key encoders and BYOL's target."""

from __future__ import annotations

import copy

import torch
from torch import nn


def momentum_copy(online: nn.ModuleDict) -> nn.ModuleDict:
    """A frozen deep copy of ``online``, made in one go so that modules shared inside it stay shared."""
    target = copy.deepcopy(online)
    target.requires_grad_(False)
    return target


def online_branches(method: nn.Module) -> nn.ModuleDict:
    """A method's encoders and projectors, named as their momentum copies (a view, not registered)."""
    return nn.ModuleDict(
        {
            "video_encoder": method.video_encoder,
            "audio_encoder": method.audio_encoder,
            "video_proj": method.video_proj,
            "audio_proj": method.audio_proj,
        }
    )


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``t <- momentum * t + (1 - momentum) * o`` for every parameter (BN statistics are the target's own)."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.lerp_(o.detach(), 1.0 - momentum)
