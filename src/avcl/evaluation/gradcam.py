"""Grad-CAM class activation maps for 3D CNNs (METHOD.md section 6; the AVCL paper's Fig. 2).

The gradient of a class score with respect to a feature map ``A`` of shape ``(B, C, T', H', W')`` is
averaged over H' and W' separately for each time step, giving channel weights ``w (B, C, T')``; the map
is ``ReLU(sum_c w * A)`` per time step, upsampled trilinearly to the input's ``(T, H, W)`` and scaled
to [0, 1] by its minimum and maximum over the whole clip (so each frame has its own map and the maps
of one clip are comparable).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def grad_cam(
    model: Callable[[Tensor], Tensor], layer: nn.Module, inputs: Tensor, target: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Maps ``(B, T, H, W)`` in [0, 1] for ``inputs (B, C, T, H, W)`` (``(B, 1, F, Ta)`` for a spectrogram
    batch ``(B, 1, F, Ta)``, its time steps averaged), and the classes they explain.

    ``model(inputs)`` returns ``(B, classes)`` scores and runs ``layer`` on the way; ``target`` holds
    one class per input (default: the predicted class).
    """
    captured: dict[str, Tensor] = {}

    def keep(_module, _args, output):
        output.retain_grad()
        captured["maps"] = output

    handle = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            inputs = inputs.detach().requires_grad_(True)  # so the maps of a frozen network get gradients
            scores = model(inputs)
            if target is None:
                target = scores.argmax(dim=1)
            scores.gather(1, target.view(-1, 1)).sum().backward()
    finally:
        handle.remove()
    if "maps" not in captured:
        raise ValueError("the model's forward did not run the given layer")
    maps, grads = captured["maps"].detach(), captured["maps"].grad
    weights = grads.mean(dim=(3, 4), keepdim=True)  # (B, C, T', 1, 1): one weight per channel and time step
    cam = F.relu((weights * maps).sum(dim=1, keepdim=True))  # (B, 1, T', H', W')
    if inputs.dim() == 4:  # a spectrogram (B, 1, F, Ta) seen as a clip: one map over (F, Ta)
        cam = F.interpolate(cam.mean(dim=2), size=inputs.shape[2:], mode="bilinear", align_corners=False)
    else:
        cam = F.interpolate(cam, size=inputs.shape[2:], mode="trilinear", align_corners=False)[:, 0]
    low = cam.flatten(1).min(dim=1).values.view(-1, 1, 1, 1)
    high = cam.flatten(1).max(dim=1).values.view(-1, 1, 1, 1)
    return (cam - low) / (high - low).clamp_min(1e-12), target.detach()


def overlay(frames: Tensor, cam: Tensor, alpha: float = 0.5) -> Tensor:
    """``frames (T, H, W, 3)`` uint8 and ``cam (T, H, W)`` in [0, 1] -> ``(T, H, W, 3)`` uint8 heat-map overlay."""
    from matplotlib import colormaps

    heat = torch.from_numpy(colormaps["jet"](cam.clamp(0, 1).numpy())[..., :3]).float() * 255.0
    return ((1 - alpha) * frames.float() + alpha * heat).round().clamp(0, 255).to(torch.uint8)
