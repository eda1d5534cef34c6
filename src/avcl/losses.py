"""Loss functions shared by the methods: pure functions of embeddings.

Under DDP each function computes over the *global* batch (all ranks' samples) through the
autograd-aware collectives of :mod:`avcl.distributed`. The convention, chosen so that a DDP step on
2 processes x N samples equals one step on 1 process x 2N:

- ``info_nce_cross_modal`` returns on each rank the mean over that rank's own anchors (negatives
  from the whole global batch); the average over ranks is the global mean.
- ``info_nce_cross_modal_extra`` and ``info_nce_queue`` do the same (their extra negatives and
  queue are the same on every rank or belong to the rank's own samples, so nothing more is gathered).
- ``cross_correlation_loss`` returns on every rank the same global value.

In every case the gradient reaching a rank's inputs is ``world_size`` times the gradient of the global
loss, which DDP's gradient averaging divides out.

The losses run in float32 with autocast disabled: similarities divided by a temperature and
cross-correlations summed over the batch lose too much in bf16/fp16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from avcl.distributed import all_reduce_with_grad, gather_with_grad, rank, world_size


def _fp32(*xs: Tensor) -> list[Tensor]:
    return [x.float() for x in xs]


def info_nce_cross_modal(v: Tensor, a: Tensor, temperature: float = 0.5, gather: bool = True) -> Tensor:
    """SelfCL (paper Eq. 7-10), i.e. SimCLR's NT-Xent with the two modalities as the two views.

    ``v``, ``a``: ``(B, D)`` embeddings of the same B videos (row i of each is a positive pair).
    For the anchor ``v_i`` the positive is ``a_i`` and the denominator sums ``exp(cos/temperature)``
    over every ``a_j`` and every other ``v_j`` (``j != i``); symmetrically for ``a_i``.
    Returns the scalar ``L_v + L_a``, each the mean over the local anchors (the paper sums; the mean
    keeps the loss independent of the batch size). With ``gather`` the ``j`` run over the global
    batch: the other ranks' embeddings are gathered with gradient and the labels offset by rank.
    """
    return info_nce_cross_modal_extra(v, a, None, temperature=temperature, gather=gather)


def info_nce_cross_modal_extra(
    v: Tensor, a: Tensor, extra_negatives: Tensor | None, temperature: float = 0.5, gather: bool = True
) -> Tensor:
    """:func:`info_nce_cross_modal` with negatives of each anchor's own (IIC's intra-video negatives).

    ``extra_negatives``: ``(B, K, D)`` (or ``(B, D)`` for K = 1); row i holds K embeddings that join
    the denominators of the two anchors ``v_i`` and ``a_i`` only. They belong to the local samples, so
    they are not gathered. ``None`` gives :func:`info_nce_cross_modal` exactly. Extra negatives only add
    terms to the denominators, so the loss with them is larger than without.
    """
    with torch.autocast(v.device.type, enabled=False):
        v, a = _fp32(F.normalize(v, dim=1), F.normalize(a, dim=1))
        extra = None
        if extra_negatives is not None:
            extra = extra_negatives if extra_negatives.dim() == 3 else extra_negatives.unsqueeze(1)
            if extra.shape[0] != v.shape[0] or extra.shape[2] != v.shape[1]:
                raise ValueError(
                    f"extra negatives of shape {tuple(extra_negatives.shape)} do not fit "
                    f"embeddings of shape {tuple(v.shape)}; expected (B, K, D) or (B, D)"
                )
            extra = F.normalize(extra.float(), dim=2)
        if gather:
            v_all, a_all, offset = gather_with_grad(v), gather_with_grad(a), rank() * v.shape[0]
        else:
            v_all, a_all, offset = v, a, 0
        labels = offset + torch.arange(v.shape[0], device=v.device)
        is_self = labels[:, None] == torch.arange(v_all.shape[0], device=v.device)[None, :]

        def one_direction(anchor: Tensor, other: Tensor, same: Tensor) -> Tensor:
            cross = anchor @ other.T / temperature  # (B, world*B): the positive plus cross-modal negatives
            within = (anchor @ same.T / temperature).masked_fill(is_self, float("-inf"))  # same modality, j != i
            logits = [cross, within]
            if extra is not None:
                logits.append(torch.einsum("bd,bkd->bk", anchor, extra) / temperature)  # (B, K)
            return F.cross_entropy(torch.cat(logits, dim=1), labels)

        return one_direction(v, a_all, v_all) + one_direction(a, v_all, a_all)


REDUCTIONS = ("sum", "mean")  # of cross_correlation_loss over the feature dimensions


def cross_correlation_loss(
    z1: Tensor, z2: Tensor, lambd: float = 0.005, standardize: bool = True, eps: float = 1e-5, reduction: str = "sum"
) -> Tensor:
    """CGRA (paper Eq. 5-6), the Barlow Twins loss: ``sum_i (1 - C_ii)^2 + lambd * sum_{i!=j} C_ij^2``.

    ``z1``, ``z2``: ``(B, D)``. ``C`` (``D x D``) is the cross-correlation along the global batch of N
    samples. With ``standardize`` each dimension is first centred and scaled to unit variance over the
    batch (Barlow Twins' batch norm: biased variance, ``eps`` added to it), giving
    ``C = z1n^T z2n / N``; without it ``C`` is Eq. 6 as printed, the cosine of the columns
    (``eps * N`` added to each column's sum of squares). Under DDP the column sums, sums of squares and
    ``z1n^T z2n`` are summed over ranks with gradient, so every rank holds the global ``C``.

    ``reduction="sum"`` is Eq. 5 as printed (it grows with D); ``"mean"`` divides it by D, so that the
    loss and its gradient keep one scale whatever the feature width.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    with torch.autocast(z1.device.type, enabled=False):
        z1, z2 = _fp32(z1, z2)
        n = z1.shape[0] * world_size()

        def unit_columns(z: Tensor) -> Tensor:
            if standardize:
                z = z - all_reduce_with_grad(z.sum(dim=0)) / n
            # dividing by sqrt(N (var + eps)) makes z1n^T z2n already the mean over the batch
            return z / torch.sqrt(all_reduce_with_grad((z * z).sum(dim=0)) + n * eps)

        c = all_reduce_with_grad(unit_columns(z1).T @ unit_columns(z2))
        on_diag = torch.diagonal(c)
        off_diag = c.masked_fill(torch.eye(c.shape[0], dtype=torch.bool, device=c.device), 0.0)
        loss = (1 - on_diag).pow(2).sum() + lambd * off_diag.pow(2).sum()
        return loss / c.shape[0] if reduction == "mean" else loss


def negative_cosine(p: Tensor, z: Tensor) -> Tensor:
    """SimSiam's ``D(p, z) = -mean_i cos(p_i, stopgrad(z_i))`` for ``(B, D)`` inputs, in [-1, 1].

    BYOL's ``2 - 2 cos`` is ``2 + 2 * negative_cosine(p, z)``: same gradient direction, twice the scale.
    """
    return -F.cosine_similarity(p.float(), z.detach().float(), dim=-1).mean()


def info_nce_queue(q: Tensor, k: Tensor, queue: Tensor, temperature: float = 0.2) -> Tensor:
    """MoCo's InfoNCE: for the query ``q_i`` the positive is the key ``k_i``, the negatives the queue.

    ``q``: ``(B, D)`` queries; ``k``: ``(B, D)`` keys of the same B samples; ``queue``: ``(K, D)`` keys of
    earlier batches. Keys and queue are constants (no gradient). All rows are L2-normalised here.
    Returns the mean over the B local anchors of ``-log(exp(q.k/t) / (exp(q.k/t) + sum_n exp(q.n/t)))``
    (t = ``temperature``, 0.2 in MoCo v2). Nothing is gathered: the negatives are the queue, the same on
    every rank, so under DDP the ranks' means average to the global mean.
    """
    with torch.autocast(q.device.type, enabled=False):
        q = F.normalize(q.float(), dim=1)
        k = F.normalize(k.detach().float(), dim=1)
        # a normalised copy: the caller may update its queue in place before the backward
        queue = F.normalize(queue.detach().float(), dim=1)
        logits = torch.cat([(q * k).sum(dim=1, keepdim=True), q @ queue.T], dim=1) / temperature  # (B, 1 + K)
        return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))
