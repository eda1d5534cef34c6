"""Shortcut diagnostics: gradient balance of weighted loss terms, the AMFM gate-only check, and the
pre-gate beside the gated linear probe.

- :func:`gradient_norms` (any method with ``loss_terms(batch) -> {name: (weight, loss)}``): the norm of
  ``weight * grad loss`` over the encoder parameters for every term, and their ratios
  (``grad_ratio_cor_self = ||lambda_cor grad L_cor|| / ||lambda_self grad L_self||`` for AVCL). A ratio
  of hundreds means the smaller term does not train.
- :func:`gate_only_check`: AMFM multiplies both modalities by one gate ``g_i`` computed from the pair,
  so ``g_i * v_i`` and ``g_i * a_i`` can match through ``g_i`` alone. The check replaces the encoder
  features by their mean over the data and keeps each pair's gate: if those gate-only features retrieve
  the right audio for a video about as well as the real fused features, the gate, not the encoders,
  explains the cross-modal agreement the loss rewards.
- :func:`diagnose`: both for a pretraining checkpoint, with the gated and the pre-gate linear probes,
  written to ``report.md`` and ``diagnostics.json``. ``python -m avcl.evaluation.diagnostics --help``.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

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
                norms[name] = abs(weight) * math.sqrt(sq)
    finally:
        with torch.no_grad():
            for k, v in method.named_buffers():
                v.copy_(buffers[k])
    out = {f"grad_norm_{n}": v for n, v in norms.items()}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
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
    r["explained"] = bool(r["fused_top1"] >= 5 * chance and r["fused_top1"] >= 2 * r["encoder_top1"]
                          and r["gate_only_top1"] >= 0.5 * r["fused_top1"])
    return r


def verdict(check: dict, loss_on: str) -> str:
    """One line for reports."""
    numbers = (f"video->audio retrieval top-1: gate only {100 * check['gate_only_top1']:.1f} %, fused "
               f"{100 * check['fused_top1']:.1f} %, encoders {100 * check['encoder_top1']:.1f} %, chance "
               f"{100 * check['chance_top1']:.1f} %")
    if not check["explained"]:
        return f"GATE-ONLY CHECK: the gate alone does not explain the cross-modal agreement ({numbers})."
    if loss_on == "fused":
        return (f"SHORTCUT: the AMFM gate alone explains the loss: with the encoder features replaced by their "
                f"mean, the gated pairs still match ({numbers}).")
    return (f"GATE-ONLY CHECK: the gate alone would explain a loss on the fused features ({numbers}); this "
            f"run's loss is on the {loss_on} features, which do not go through the gate.")


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
    return {f"batch_{k}": float(r[k]) for k in ("encoder_top1", "fused_top1", "gate_only_top1", "fused_selfcl",
                                                "gate_only_selfcl", "encoder_effective_rank")}


# -- a checkpoint's report -----------------------------------------------------------------------
class PregateView(nn.Module):
    """An AVCL method whose ``embed`` gives the encoders' features (before AMFM), for the linear probe."""

    def __init__(self, method: nn.Module):
        super().__init__()
        self.method = method

    def embed(self, video, audio, modality: str = "both") -> Tensor:
        return self.method.embed(video, audio, modality, features="pregate")


def dataset_features(method: nn.Module, cfg, split: str) -> tuple[Tensor, Tensor, Tensor]:
    """Encoder features and gate of the first evaluation clip of every video of ``split``."""
    from avcl.evaluation.classify import _eval_loader, collect
    from avcl.engine.setup import open_cache, setup_device

    device = setup_device(cfg)
    method = method.to(device).eval()
    loader, _ = _eval_loader(cfg, open_cache(cfg), split, "test", True, device)
    d = method.feature_dim

    def fn(b):
        v, a = method.video_encoder(b["video"]), method.audio_encoder(b["audio"])
        return torch.cat([v, a, method.amfm.gate_values(v, a)], dim=1)

    x, _ = collect(fn, loader, cfg, device, f"features ({split})")
    x = x[:, 0] if x.dim() == 3 else x
    return x[:, :d], x[:, d:2 * d], x[:, 2 * d:]


def diagnose(method: nn.Module, cfg, out: str | Path | None, probes: bool = True) -> dict:
    """The gate-only check on the training split, and the gated and pre-gate linear probes (``both``)."""
    from avcl.evaluation.classify import linear_probe

    if getattr(method, "amfm", None) is None:
        raise ValueError("the gate-only check needs an AVCL method with AMFM (method.amfm=true)")
    out = Path(out) if out is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    v, a, gate = dataset_features(method, cfg, cfg.data.train_split)
    check = gate_only_check(v, a, gate, cfg.method.temperature)
    result = {"loss_on": cfg.method.loss_on, "gate_only": check, "verdict": verdict(check, cfg.method.loss_on)}
    if probes:
        gated = linear_probe(method, cfg, out / "probe_gated" if out else None, modality="both", title="gated probe")
        pregate = linear_probe(PregateView(method), cfg, out / "probe_pregate" if out else None, modality="both",
                               title="pre-gate probe")
        result["probe_top1"] = {"gated": gated["top1"], "pregate": pregate["top1"]}
    if out is not None:
        (out / "diagnostics.json").write_text(json.dumps(result, indent=2))
        (out / "report.md").write_text(report_markdown(result))
    return result


def report_markdown(result: dict) -> str:
    c = result["gate_only"]
    pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
    lines = [
        "# AVCL diagnostics", "", result["verdict"], "",
        f"Losses computed on: `{result['loss_on']}` features. Training split, first clip of {c['videos']} videos.", "",
        "| features | v->a retrieval top-1 (%) | per-dim cross-modal corr. | SelfCL loss | effective rank |",
        "|---|---|---|---|---|",
        f"| encoders (pre-gate) | {pct(c['encoder_top1'])} | {c['encoder_corr']:.2f} | | {c['encoder_effective_rank']:.1f} |",
        f"| fused (gated) | {pct(c['fused_top1'])} | {c['fused_corr']:.2f} | {c['fused_selfcl']:.3f} | {c['fused_effective_rank']:.1f} |",
        f"| gate only (encoders -> mean) | {pct(c['gate_only_top1'])} | {c['gate_only_corr']:.2f} | {c['gate_only_selfcl']:.3f} | |",
        f"| chance | {pct(c['chance_top1'])} | 0 | {c['chance_selfcl']:.3f} | |", "",
        f"Gate values: mean {c['gate_mean']:.3g}, {pct(c['gate_low_fraction'])} % below 0.05, "
        f"{pct(c['gate_high_fraction'])} % above 0.95. The gate-only per-dimension correlation is 1 for any "
        "gate that varies (CGRA's diagonal can always be met through the gate) and its retrieval is high for "
        "any sample-specific gate, an untrained one included; the gate explains the loss when the fused "
        "features match far better than the encoders' own (verdict: fused >= 5x chance and >= 2x the "
        "encoders, gate only >= half the fused).",
    ]
    if "probe_top1" in result:
        p = result["probe_top1"]
        lines += ["", "| linear probe, both modalities | top-1 (%) |", "|---|---|",
                  f"| gated (AMFM outputs) | {p['gated']:.1f} |", f"| pre-gate (encoder features) | {p['pregate']:.1f} |"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from avcl.api import method_from_checkpoint
    from avcl.cli._common import add_config_options, config_from_args
    from avcl.engine.checkpoint import load_checkpoint

    p = argparse.ArgumentParser(prog="python -m avcl.evaluation.diagnostics",
                                description="Gate-only check and gated vs pre-gate linear probes of an AVCL checkpoint.")
    p.add_argument("--checkpoint", required=True, help="AVCL pretraining checkpoint (file or run folder)")
    p.add_argument("--no-probes", action="store_true", help="only the gate-only check")
    add_config_options(p, out_help="report folder (default CHECKPOINT_DIR/diagnostics)")
    args = p.parse_args(argv)
    ckpt = load_checkpoint(args.checkpoint)
    cfg = config_from_args(args, base=ckpt["config"])
    method = method_from_checkpoint(ckpt)
    src = Path(args.checkpoint)
    out = Path(args.out) if args.out else (src if src.is_dir() else src.parent) / "diagnostics"
    result = diagnose(method, cfg, out, probes=not args.no_probes)
    print(result["verdict"])
    if "probe_top1" in result:
        print(f"linear probe (both): gated {result['probe_top1']['gated']:.1f}%, pre-gate {result['probe_top1']['pregate']:.1f}%")
    print(f"-> {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
