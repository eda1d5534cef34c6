"""Small heads on top of the encoders: MLP projectors/predictors and the classifier."""

from __future__ import annotations

from torch import Tensor, nn


def mlp(
    in_dim: int, hidden: int, out_dim: int, layers: int = 2, bn: bool = True, last_bn: bool = False
) -> nn.Sequential:
    """``layers`` linear layers ``(B, in_dim) -> (B, out_dim)``, with BN (optional) and ReLU between them.

    SimCLR's projector is ``mlp(d, h, o, 2)``, Barlow Twins' ``mlp(d, h, h, 3)``, the BYOL/SimSiam
    predictor ``mlp(d, h, d, 2)``; SimSiam's projector ends in BN (``last_bn=True``).
    """
    if layers < 1:
        raise ValueError(f"an MLP needs at least one layer, got {layers}")
    dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
    modules: list[nn.Module] = []
    for i in range(layers):
        is_last = i == layers - 1
        norm = bn and (not is_last or last_bn)
        modules.append(nn.Linear(dims[i], dims[i + 1], bias=not norm))  # BN's shift makes a bias redundant
        if norm:
            modules.append(nn.BatchNorm1d(dims[i + 1]))
        if not is_last:
            modules.append(nn.ReLU(inplace=True))
    return nn.Sequential(*modules)


class Classifier(nn.Module):
    """Dropout (paper: p=0.7) then a linear layer: ``(B, in_dim) -> (B, num_classes)`` logits."""

    def __init__(self, in_dim: int, num_classes: int, dropout: float = 0.7):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(x))
