"""Protocols on frozen features (METHOD.md section 6): clip retrieval top-k and weighted kNN.

Both take feature matrices (one row per video) with their labels, so they serve any method, any
modality, and features written by ``avcl embed``.

Retrieval: each test video queries the training videos; a query is a hit at k when any of its k
nearest training videos shares its class. Two feature conventions:

- ``vcop`` (VCOP, TCGL): the conv5 output max-pooled by (1, 2, 2) and flattened, compared by cosine;
- ``pooled`` (CoCLR): the globally pooled features, centred by the training-set mean, L2-normalised,
  compared by dot product.

kNN (InstDisc, as solo-learn does it): cosine similarity to every training video, the k most similar
vote with weight ``exp(similarity / temperature)``, top-1 and top-5 of the summed votes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

RETRIEVAL_KS = (1, 5, 10, 20, 50)
CONVENTIONS = ("vcop", "pooled")


def vcop_features(conv5: Tensor) -> Tensor:
    """``(B, C, T, H, W)`` conv5 maps -> MaxPool3d((1, 2, 2)) (floor mode) -> ``(B, C*T*(H//2)*(W//2))``.

    For C3D and R3D at 16x112x112 the conv5 map is (512, 2, 7, 7), pooled to (512, 2, 3, 3): 9216-d.
    """
    return F.max_pool3d(conv5, kernel_size=(1, 2, 2), stride=(1, 2, 2)).flatten(1)


def prepare_features(train: Tensor, test: Tensor, convention: str) -> tuple[Tensor, Tensor]:
    """Both feature sets made ready for a dot-product comparison under ``convention``."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown retrieval convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    train, test = train.double(), test.double()
    if convention == "pooled":
        mean = train.mean(dim=0, keepdim=True)
        train, test = train - mean, test - mean
    return F.normalize(train, dim=1), F.normalize(test, dim=1)


def retrieval_topk(
    train: Tensor,
    train_labels: Tensor,
    test: Tensor,
    test_labels: Tensor,
    ks: tuple[int, ...] = RETRIEVAL_KS,
    convention: str = "vcop",
) -> dict[str, float]:
    """Percent of test videos with a same-class training video among their k nearest, for each k.

    Returns ``{"top1": ..., "top5": ...}`` (k capped at the gallery size).
    """
    gallery, queries = prepare_features(train, test, convention)
    similarity = queries @ gallery.T  # (queries, gallery)
    kmax = min(max(ks), gallery.shape[0])
    nearest = similarity.topk(kmax, dim=1).indices  # ties: the lower index first, deterministic
    same = train_labels[nearest] == test_labels[:, None]  # (queries, kmax)
    hit_by = same.int().cummax(dim=1).values.bool()  # any hit within the first k
    return {f"top{k}": 100.0 * float(hit_by[:, min(k, kmax) - 1].float().mean()) for k in ks}


def nearest_neighbours(train: Tensor, test: Tensor, k: int, convention: str = "pooled") -> Tensor:
    """``(queries, k)`` indices of the training videos nearest each test video (for figures)."""
    gallery, queries = prepare_features(train, test, convention)
    return (queries @ gallery.T).topk(min(k, gallery.shape[0]), dim=1).indices


def knn_predict(
    train: Tensor, train_labels: Tensor, test: Tensor, num_classes: int, k: int = 20, temperature: float = 0.07
) -> Tensor:
    """``(queries, num_classes)`` summed votes of the k most cosine-similar training videos."""
    gallery, queries = F.normalize(train.double(), dim=1), F.normalize(test.double(), dim=1)
    similarity, index = (queries @ gallery.T).topk(min(k, gallery.shape[0]), dim=1)
    weights = (similarity / temperature).exp()
    votes = torch.zeros(queries.shape[0], num_classes, dtype=weights.dtype)
    votes.scatter_add_(1, train_labels[index], weights)
    return votes


def knn_accuracy(
    train: Tensor,
    train_labels: Tensor,
    test: Tensor,
    test_labels: Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
) -> dict[str, float]:
    """Top-1 and top-5 accuracy (%) of the weighted kNN classifier."""
    votes = knn_predict(train, train_labels, test, num_classes, k, temperature)
    out = {}
    for top in (1, 5):
        best = votes.topk(min(top, num_classes), dim=1).indices
        out[f"top{top}"] = 100.0 * float((best == test_labels[:, None]).any(dim=1).float().mean())
    return out
