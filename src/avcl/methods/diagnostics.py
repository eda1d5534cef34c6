"""Measurements of a method's training signals, cheap enough to run during training (one batch):
the gradient balance of weighted loss terms and the AMFM gate-only check. The report that adds the
linear probes over a whole dataset is :mod:`avcl.evaluation.diagnostics`.

- :func:`gradient_norms` (any method with ``loss_terms(batch) -> {name: (weight, loss)}``): the norm of
  ``weight * grad loss`` over the encoder parameters for every term, and their ratios
  (``grad_ratio_cor_self = ||lambda_cor grad L_cor|| / ||lambda_self grad L_self||`` for AVCL). A ratio
  of hundreds means the smaller term does not train.
- :func:`gate_only_check`: AMFM multiplies both modalities by one gate ``g_i`` computed from the pair,
  so ``g_i * v_i`` and ``g_i * a_i`` can match through ``g_i`` alone. The check replaces the encoder
  features by their mean over the data and keeps each pair's gate: if those gate-only features retrieve
  the right audio for a video about as well as the real fused features, the gate, not the encoders,
  explains the cross-modal agreement the loss rewards.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avcl.losses import info_nce_cross_modal


# -- gradient balance ----------------------------------------------------------------------------
def encoder_parameters(method: nn.Module) -> list[nn.Parameter]:
    """The trainable parameters of both encoders, each once (a shared model counts once)."""
    seen, params = set(), []
    for name in ("video_encoder", "audio_encoder"):
        for p in getattr(method, name).parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    return params


def gradient_norms(method: nn.Module, batch: dict[str, Tensor]) -> dict[str, float]:
    """``grad_norm_<term>`` (of the weighted term) at the encoders and ``grad_ratio_<a>_<b>`` for each pair.

    One forward and one backward per term on ``batch``, in training mode, with ``torch.autograd.grad``
    (parameters' ``.grad`` untouched). Normalisation buffers (BatchNorm running statistics) are restored
    afterwards, so the diagnostic leaves the training run exactly as it found it.
    """
    buffers = {k: v.clone() for k, v in method.named_buffers()}
    try:
        with torch.enable_grad():
            terms = method.loss_terms(batch)
            params = encoder_parameters(method)
            norms: dict[str, float] = {}
            names = list(terms)
            for i, name in enumerate(names):
                weight, loss = terms[name]
                grads = torch.autograd.grad(loss, params, retain_graph=i < len(names) - 1, allow_unused=True)
                sq = sum(float(g.float().pow(2).sum()) for g in grads if g is not None)
                norms[name] = abs(float(weight)) * math.sqrt(sq)
    finally:
        with torch.no_grad():
            for k, v in method.named_buffers():
                v.copy_(buffers[k])
    out = {f"grad_norm_{n}": v for n, v in norms.items()}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            out[f"grad_ratio_{a}_{b}"] = norms[a] / norms[b] if norms[b] > 0 else math.inf
    return out


# -- the gate-only check -------------------------------------------------------------------------
def retrieval_top1(x: Tensor, y: Tensor) -> float:
    """Fraction of rows i whose most cosine-similar row of ``y`` is ``y_i`` (video -> audio)."""
    sim = F.normalize(x.float(), dim=1) @ F.normalize(y.float(), dim=1).T
    return float((sim.argmax(dim=1) == torch.arange(len(x))).float().mean())


def per_dim_correlation(x: Tensor, y: Tensor, eps: float = 1e-8) -> float:
    """Mean over dimensions of the Pearson correlation of ``x[:, d]`` and ``y[:, d]`` across rows
    (CGRA's diagonal, standardised); dimensions constant in either input are left out."""
    x, y = x.float() - x.float().mean(0), y.float() - y.float().mean(0)
    sx, sy = x.norm(dim=0), y.norm(dim=0)
    keep = (sx > eps) & (sy > eps)
    if not keep.any():
        return 0.0
    return float(((x * y).sum(0)[keep] / (sx[keep] * sy[keep])).mean())


def effective_rank(x: Tensor) -> float:
    """``exp`` of the entropy of the normalised singular values of the centred ``(N, D)`` features."""
    s = torch.linalg.svdvals((x.float() - x.float().mean(0)).double())
    p = s / s.sum().clamp_min(1e-12)
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def gate_only_check(v: Tensor, a: Tensor, gate: Tensor, temperature: float = 0.5) -> dict:
    """Video->audio retrieval and losses of the encoder features ``v``, ``a`` ``(N, D)``, the fused
    features ``gate * v``, ``gate * a``, and the gate-only features ``gate * mean(v)``, ``gate * mean(a)``.

    Any gate that varies from sample to sample gives the gate-only features some retrieval (row i of
    both is the same gate times a fixed vector), an untrained AMFM included; what decides is whether
    the fused features agree *beyond* the encoders. ``explained`` is True when the fused features
    retrieve well above chance (5x) and at least twice as well as the encoders' own features, and the
    gate-only features reach at least half of the fused retrieval: then the gate, not what the encoders
    extract, carries the cross-modal agreement.
    """
    n = len(v)
    fv, fa = gate * v, gate * a
    gv, ga = gate * v.mean(0, keepdim=True), gate * a.mean(0, keepdim=True)
    chance = 1.0 / n
    with torch.no_grad():
        r = {
            "videos": n,
            "chance_top1": chance,
            "encoder_top1": retrieval_top1(v, a),
            "fused_top1": retrieval_top1(fv, fa),
            "gate_only_top1": retrieval_top1(gv, ga),
            "encoder_corr": per_dim_correlation(v, a),
            "fused_corr": per_dim_correlation(fv, fa),
            "gate_only_corr": per_dim_correlation(gv, ga),
            "fused_selfcl": float(info_nce_cross_modal(fv, fa, temperature, gather=False)),
            "gate_only_selfcl": float(info_nce_cross_modal(gv, ga, temperature, gather=False)),
            "chance_selfcl": 2 * math.log(2 * n - 1),
            "encoder_effective_rank": (effective_rank(v) + effective_rank(a)) / 2,
            "fused_effective_rank": (effective_rank(fv) + effective_rank(fa)) / 2,
            "gate_low_fraction": float((gate < 0.05).float().mean()),
            "gate_high_fraction": float((gate > 0.95).float().mean()),
            "gate_mean": float(gate.float().mean()),
        }
    r["explained"] = bool(
        r["fused_top1"] >= 5 * chance
        and r["fused_top1"] >= 2 * r["encoder_top1"]
        and r["gate_only_top1"] >= 0.5 * r["fused_top1"]
    )
    return r


def verdict(check: dict, loss_on: str) -> str:
    """One line for reports."""
    numbers = (
        f"video->audio retrieval top-1: gate only {100 * check['gate_only_top1']:.1f} %, fused "
        f"{100 * check['fused_top1']:.1f} %, encoders {100 * check['encoder_top1']:.1f} %, chance "
        f"{100 * check['chance_top1']:.1f} %"
    )
    if not check["explained"]:
        return f"GATE-ONLY CHECK: the gate alone does not explain the cross-modal agreement ({numbers})."
    if loss_on == "fused":
        return (
            f"SHORTCUT: the AMFM gate alone explains the loss: with the encoder features replaced by their "
            f"mean, the gated pairs still match ({numbers})."
        )
    return (
        f"GATE-ONLY CHECK: the gate alone would explain a loss on the fused features ({numbers}); this "
        f"run's loss is on the {loss_on} features, which do not go through the gate."
    )


@torch.no_grad()
def batch_gate_only(method: nn.Module, batch: dict[str, Tensor]) -> dict[str, float]:
    """The gate-only check on one batch (evaluation mode), for the per-epoch log."""
    was_training = method.training
    method.eval()
    try:
        v, a = method.video_encoder(batch["video"]).float(), method.audio_encoder(batch["audio"]).float()
        gate = method.amfm.gate_values(v, a).float()
    finally:
        method.train(was_training)
    r = gate_only_check(v, a, gate, method.cfg.method.temperature)
    return {
        f"batch_{k}": float(r[k])
        for k in (
            "encoder_top1",
            "fused_top1",
            "gate_only_top1",
            "fused_selfcl",
            "gate_only_selfcl",
            "encoder_effective_rank",
        )
    }
