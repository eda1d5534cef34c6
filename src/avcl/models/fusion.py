"""AMFM, the attention based multi-modal fusion module (paper Eq. 1-4, METHOD.md section 3)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

GATES = ("sigmoid", "relu")


class AMFM(nn.Module):
    """Recalibrates both modalities with one gate computed from their concatenation.

    ``z = W_s [v; a] + b_s`` with ``dim z = (dim_v + dim_a) // 2`` (Eq. 1), ``E = W_e z + b_e`` with
    ``dim E = dim_v`` (Eq. 2), ``f_v = g(E) * v`` and ``f_a = g(E) * a`` (Eq. 3-4). The paper names
    ReLU as ``g``; a gate is usually a sigmoid (squeeze-and-excitation, the authors' fusion code), so
    ``gate`` defaults to ``"sigmoid"`` and ``"relu"`` follows the text literally.
    """

    def __init__(self, dim_v: int = 512, dim_a: int = 512, gate: str = "sigmoid"):
        super().__init__()
        if dim_v != dim_a:
            raise ValueError(
                f"AMFM gates both modalities with one signal, so dim_v ({dim_v}) must equal dim_a ({dim_a})"
            )
        if gate not in GATES:
            raise ValueError(f"unknown AMFM gate {gate!r}; choose one of {', '.join(GATES)}")
        self.squeeze = nn.Linear(dim_v + dim_a, (dim_v + dim_a) // 2)  # W_s, b_s
        self.excite = nn.Linear((dim_v + dim_a) // 2, dim_v)  # W_e, b_e
        self.gate = gate

    def gate_values(self, v: Tensor, a: Tensor) -> Tensor:
        """``g(E)``, ``(B, dim_v)``, from ``v`` ``(B, dim_v)`` and ``a`` ``(B, dim_a)``."""
        e = self.excite(self.squeeze(torch.cat([v, a], dim=1)))
        return torch.sigmoid(e) if self.gate == "sigmoid" else torch.relu(e)

    def forward(self, v: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, D), (B, D)`` -> ``(f_v, f_a)``, both ``(B, D)``."""
        g = self.gate_values(v, a)
        return g * v, g * a
