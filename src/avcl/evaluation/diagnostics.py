"""Shortcut diagnostics of a checkpoint: gradient balance of weighted loss terms, the AMFM gate-only check
(both measured by :mod:`avcl.methods.diagnostics`), and the pre-gate beside the gated linear probe.

- :func:`diagnose`: both for a pretraining checkpoint, with the gated and the pre-gate linear probes,
  written to ``report.md`` and ``diagnostics.json``. ``python -m avcl.evaluation.diagnostics --help``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor, nn

from avcl import fileio
from avcl.methods.diagnostics import (  # noqa: F401  (the measurements, re-exported with the report)
    batch_gate_only,
    effective_rank,
    encoder_parameters,
    gate_only_check,
    gradient_norms,
    per_dim_correlation,
    retrieval_top1,
    verdict,
)


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
    from avcl.engine.inference import collect
    from avcl.engine.run import start_run

    setup = start_run(cfg, seed=False)
    device = setup.device
    method = method.to(device).eval()
    loader, _ = setup.eval_loader(split, "test", require_audio=True)
    d = method.feature_dim

    def fn(b):
        v, a = method.video_encoder(b["video"]), method.audio_encoder(b["audio"])
        return torch.cat([v, a, method.amfm.gate_values(v, a)], dim=1)

    x, _ = collect(fn, loader, cfg, device, f"features ({split})")
    x = x[:, 0] if x.dim() == 3 else x
    return x[:, :d], x[:, d : 2 * d], x[:, 2 * d :]


def diagnose(method: nn.Module, cfg, out: str | Path | None, probes: bool = True) -> dict:
    """The gate-only check on the training split, and the gated and pre-gate linear probes (``both``)."""
    from avcl.evaluation.probe import linear_probe

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
        pregate = linear_probe(
            PregateView(method), cfg, out / "probe_pregate" if out else None, modality="both", title="pre-gate probe"
        )
        result["probe_top1"] = {"gated": gated["top1"], "pregate": pregate["top1"]}
    if out is not None:
        fileio.write_json(out / "diagnostics.json", result)
        (out / "report.md").write_text(report_markdown(result))
    return result


def report_markdown(result: dict) -> str:
    c = result["gate_only"]
    pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
    lines = [
        "# AVCL diagnostics",
        "",
        result["verdict"],
        "",
        f"Losses computed on: `{result['loss_on']}` features. Training split, first clip of {c['videos']} videos.",
        "",
        "| features | v->a retrieval top-1 (%) | per-dim cross-modal corr. | SelfCL loss | effective rank |",
        "|---|---|---|---|---|",
        f"| encoders (pre-gate) | {pct(c['encoder_top1'])} | {c['encoder_corr']:.2f} | "
        f"| {c['encoder_effective_rank']:.1f} |",
        f"| fused (gated) | {pct(c['fused_top1'])} | {c['fused_corr']:.2f} | {c['fused_selfcl']:.3f} "
        f"| {c['fused_effective_rank']:.1f} |",
        f"| gate only (encoders -> mean) | {pct(c['gate_only_top1'])} | {c['gate_only_corr']:.2f} "
        f"| {c['gate_only_selfcl']:.3f} | |",
        f"| chance | {pct(c['chance_top1'])} | 0 | {c['chance_selfcl']:.3f} | |",
        "",
        f"Gate values: mean {c['gate_mean']:.3g}, {pct(c['gate_low_fraction'])} % below 0.05, "
        f"{pct(c['gate_high_fraction'])} % above 0.95. The gate-only per-dimension correlation is 1 for any "
        "gate that varies (CGRA's diagonal can always be met through the gate) and its retrieval is high for "
        "any sample-specific gate, an untrained one included; the gate explains the loss when the fused "
        "features match far better than the encoders' own (verdict: fused >= 5x chance and >= 2x the "
        "encoders, gate only >= half the fused).",
    ]
    if "probe_top1" in result:
        p = result["probe_top1"]
        lines += [
            "",
            "| linear probe, both modalities | top-1 (%) |",
            "|---|---|",
            f"| gated (AMFM outputs) | {p['gated']:.1f} |",
            f"| pre-gate (encoder features) | {p['pregate']:.1f} |",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from avcl.api import method_from_checkpoint
    from avcl.cli._common import add_config_options, config_from_args
    from avcl.engine.checkpoint import load_checkpoint

    p = argparse.ArgumentParser(
        prog="python -m avcl.evaluation.diagnostics",
        description="Gate-only check and gated vs pre-gate linear probes of an AVCL checkpoint.",
    )
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
        print(
            f"linear probe (both): gated {result['probe_top1']['gated']:.1f}%, "
            f"pre-gate {result['probe_top1']['pregate']:.1f}%"
        )
    print(f"-> {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
