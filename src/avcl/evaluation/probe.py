"""The linear probe (METHOD.md section 6): frozen encoders, a regularised linear classifier on the
features of each modality, tested at video level."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avcl import fileio
from avcl.config import MODALITIES, Config
from avcl.engine.inference import collect
from avcl.engine.run import start_run
from avcl.engine.setup import torch_threads
from avcl.errors import UserError
from avcl.evaluation.metrics import report_predictions
from avcl.methods.base import Method

PROBE_MODALITIES = MODALITIES


class _Given(nn.Module):
    """Stands in for an encoder whose output on the current batch is already computed."""

    def __init__(self, output: Tensor):
        super().__init__()
        self.output = output

    def forward(self, _x: Tensor) -> Tensor:
        return self.output


def _embed_modalities(method: Method, modalities: tuple[str, ...]) -> Callable[[dict], Tensor]:
    """A batch -> the features of each modality in ``modalities``, concatenated along dim 1.

    Each encoder runs once per batch: the encoders' outputs are computed first, then ``method.embed``
    runs for every modality with the encoders standing in for themselves (so AVCL's "both" is its
    AMFM-fused features, exactly as ``embed`` computes them, without a second encoder pass).
    """
    swappable = all(isinstance(method._modules.get(k), nn.Module) for k in ("video_encoder", "audio_encoder"))

    def fn(b: dict) -> Tensor:
        video, audio = b.get("video"), b.get("audio")
        if not swappable:
            return torch.cat([method.embed(video, audio, m) for m in modalities], dim=1)
        encoders = method.video_encoder, method.audio_encoder
        given = (
            _Given(encoders[0](video)) if video is not None and any(m != "audio" for m in modalities) else encoders[0],
            _Given(encoders[1](audio)) if audio is not None and any(m != "video" for m in modalities) else encoders[1],
        )
        try:
            method._modules["video_encoder"], method._modules["audio_encoder"] = given
            return torch.cat(
                [method.embed(video if m != "audio" else None, audio if m != "video" else None, m) for m in modalities],
                dim=1,
            )
        finally:
            method._modules["video_encoder"], method._modules["audio_encoder"] = encoders

    return fn


@torch.no_grad()
def extract_features(
    method: Method,
    cfg: Config,
    split: str,
    modalities: tuple[str, ...] = PROBE_MODALITIES,
    device: torch.device | None = None,
    cache=None,
) -> tuple[dict[str, Tensor], Tensor]:
    """Frozen features of every video of ``split``, in one pass over the data: for each modality a
    ``(videos, data.test_clips, D)`` tensor (uniform clips, centre crop), and the labels."""
    setup = start_run(cfg, device=device, cache=cache, seed=False)
    device = setup.device
    method = method.to(device).eval()
    needs_audio = any(m in ("audio", "both") for m in modalities)
    loader, _ = setup.eval_loader(split, "test", require_audio=needs_audio)
    x, y = collect(_embed_modalities(method, modalities), loader, cfg, device, f"features ({split})")
    dims = [method.embed_dim(m) for m in modalities]
    if sum(dims) != x.shape[-1]:  # a method whose embed_dim does not describe its embed: one pass per modality
        parts = [
            collect(_embed_modalities(method, (m,)), loader, cfg, device, f"features ({split}, {m})")[0]
            for m in modalities
        ]
    else:
        parts = list(x.split(dims, dim=-1))
    return {m: p.contiguous() for m, p in zip(modalities, parts)}, y


def _weight_decays(cfg: Config) -> list[float]:
    value = cfg.eval.linear_weight_decay
    grid = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
    if not grid or any(v < 0 for v in grid):
        raise UserError(f"eval.linear_weight_decay must be one or more non-negative numbers, got {value!r}")
    return grid


def _fit_logistic(
    x: Tensor,
    y: Tensor,
    num_classes: int,
    weight_decay: float,
    max_iter: int,
    init: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Multinomial logistic regression, full batch, L-BFGS from zero (or from ``init``): deterministic
    for given features. Minimises mean cross-entropy + weight_decay / 2 * ||W||^2 (bias not decayed)."""
    w = (init[0].clone() if init else torch.zeros(x.shape[1], num_classes, dtype=x.dtype)).requires_grad_(True)
    b = (init[1].clone() if init else torch.zeros(num_classes, dtype=x.dtype)).requires_grad_(True)
    opt = torch.optim.LBFGS(
        [w, b],
        lr=1.0,
        max_iter=max_iter,
        history_size=10,
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + 0.5 * weight_decay * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def _video_logits(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Logits of (videos, clips, D) features averaged over the clips (or of (videos, D) features)."""
    logits = x @ w + b
    return logits.mean(dim=1) if x.dim() == 3 else logits


def _standardised_fits(
    x: Tensor, y: Tensor, num_classes: int, weight_decays: list[float], max_iter: int, scale: Tensor | None = None
) -> dict[float, tuple[Tensor, Tensor]]:
    """One fit per weight decay on standardised features (statistics of ``x``; each feature then
    multiplied by ``scale``), the strongest decay first and each fit starting from the previous one;
    the standardisation is folded into the returned (W, b), which apply to raw features."""
    x = x.double()
    mean, std = x.mean(0), x.std(0) + 1e-6
    if scale is not None:
        std = std / scale.double()
    z = (x - mean) / std
    fits, init = {}, None
    for wd in sorted(set(weight_decays), reverse=True):
        init = _fit_logistic(z, y, num_classes, wd, max_iter, init)
        w = init[0] / std[:, None]
        fits[wd] = (w, init[1] - mean @ w)
    return fits


BLOCK_SCALES = ((1.0, 1.0), (1.0, 0.3), (1.0, 0.1), (0.3, 1.0), (0.1, 1.0))


@torch_threads(1)  # small full-batch problems: thread start-up and barriers cost more than they give
def _fit_probe(
    x: Tensor,
    y: Tensor,
    x_val: Tensor | None,
    y_val: Tensor | None,
    num_classes: int,
    weight_decays: list[float],
    max_iter: int = 100,
    blocks: tuple[int, ...] | None = None,
) -> tuple[nn.Linear, dict]:
    """A regularised linear probe: multinomial logistic regression on standardised features.

    ``x``: (videos, clips, D) training features, each clip one sample; ``x_val`` likewise. The weight
    decay is picked from ``weight_decays`` by the video-level cross-entropy on the validation split
    (less noisy than its accuracy on a few dozen videos; ties: the stronger decay), and the probe is
    refitted on train + validation with it. Without a validation split every fifth training video is
    held out for the choice.

    ``blocks`` (e.g. the video and the audio part of concatenated features) adds a choice of relative
    scale between the parts (``BLOCK_SCALES``: one part's standardised features times 0.3 or 0.1, that
    is a 10x or 100x stronger decay on it), so that a part that carries nothing is not read as
    strongly as one that does: adding a modality then costs at most the noise of the choice.
    Returns the probe (on raw features) and the choice made.
    """
    if x.dim() == 2:
        x = x[:, None]
    if x_val is not None and x_val.dim() == 2:
        x_val = x_val[:, None]
    if x_val is None and len(weight_decays) > 1:
        held = torch.arange(len(x)) % 5 == 4
        x, y, x_val, y_val = x[~held], y[~held], x[held], y[held]
    scales: list[tuple[float, ...] | None] = [None]
    if blocks is not None and len(blocks) == 2 and sum(blocks) == x.shape[-1]:
        scales = list(BLOCK_SCALES)
    expand = lambda sc: None if sc is None else torch.cat([torch.full((n,), v) for n, v in zip(blocks, sc)])  # noqa: E731
    candidates = [(wd, sc) for sc in scales for wd in weight_decays]
    scores: dict = {}
    if len(candidates) > 1:
        for sc in scales:
            for wd, (w, b) in _standardised_fits(
                *_clips(x, y), num_classes, weight_decays, max_iter, expand(sc)
            ).items():
                logits = _video_logits(x_val.double(), w, b)
                acc = 100.0 * float((logits.argmax(1) == y_val).double().mean())
                scores[(wd, sc)] = (float(F.cross_entropy(logits, y_val)), acc)
        wd, sc = min(candidates, key=lambda c: (scores[c][0], -c[0]))
    else:
        wd, sc = candidates[0]
    if x_val is not None:  # refit on every labelled video outside the test split
        x, y = torch.cat([x, x_val]), torch.cat([y, y_val])
    w, b = _standardised_fits(*_clips(x, y), num_classes, [wd], max_iter, expand(sc))[wd]
    return _linear(w, b), _choice(wd, sc, scores)


def _clips(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """(videos, clips, D) features and (videos,) labels as (videos * clips, D) samples and their labels."""
    return x.flatten(0, 1), y.repeat_interleave(x.shape[1])


def _linear(w: Tensor, b: Tensor) -> nn.Linear:
    """The probe ``x @ w + b`` as a module."""
    probe = nn.Linear(w.shape[0], w.shape[1])
    with torch.no_grad():
        probe.weight.copy_(w.T)
        probe.bias.copy_(b)
    return probe


def _choice(wd: float, sc: tuple[float, ...] | None, scores: dict) -> dict:
    """The choice made and the validation scores of every candidate (weight decay, block scale)."""
    return {
        "weight_decay": wd,
        "block_scale": list(sc) if sc is not None else None,
        "val": [
            {
                "weight_decay": c[0],
                "block_scale": list(c[1]) if c[1] else None,
                "val_loss": round(v[0], 4),
                "val_top1": round(v[1], 2),
            }
            for c, v in scores.items()
        ],
    }


def linear_probes(
    method: Method,
    cfg: Config,
    out: str | Path | None,
    modalities: tuple[str, ...] = PROBE_MODALITIES,
    title: str = "linear probe",
) -> dict[str, dict]:
    """Frozen encoders; a regularised linear classifier on the features of each modality (AVCL's
    "both" is its fused features), tested at video level. Features are extracted once per split.

    Training features come from ``data.test_clips`` uniform clips of every training video (each clip
    one sample); the weight decay is picked on the validation split (``_fit_probe``). With ``out``,
    each modality's report goes to ``out/<modality>/`` (or to ``out`` itself for one modality).
    """
    out = Path(out) if out is not None else None
    setup = start_run(cfg, seed=False)
    classes = list(setup.cache.meta["classes"])
    x_tr, y_tr = extract_features(method, cfg, cfg.data.train_split, modalities, setup.device, setup.cache)
    x_val = y_val = None
    if setup.has_split(cfg.data.val_split):
        x_val, y_val = extract_features(method, cfg, cfg.data.val_split, modalities, setup.device, setup.cache)
    x_te, y_te = extract_features(method, cfg, cfg.data.test_split, modalities, setup.device, setup.cache)
    results = {}
    parts = (method.embed_dim("video"), method.embed_dim("audio"))  # "both" is the two side by side
    for m in modalities:
        probe, choice = _fit_probe(
            x_tr[m],
            y_tr,
            x_val[m] if x_val else None,
            y_val,
            len(classes),
            _weight_decays(cfg),
            cfg.eval.linear_epochs,
            parts if m == "both" else None,
        )
        with torch.no_grad():
            logits = probe(x_te[m]).mean(dim=1)
        where = None if out is None else (out if len(modalities) == 1 else out / m)
        metrics = report_predictions(logits, y_te, classes, where, f"{title} ({m})", cfg.eval.topk)
        metrics.update(
            {
                "protocol": "linear",
                "modality": m,
                "train_videos": int(len(y_tr)),
                "val_videos": int(len(y_val)) if y_val is not None else 0,
                "clips_per_video": int(x_tr[m].shape[1]),
                "feature_dim": int(x_tr[m].shape[-1]),
                **choice,
            }
        )
        if where is not None:
            fileio.write_json(where / "metrics.json", metrics)
        results[m] = metrics
    return results


def linear_probe(
    method: Method, cfg: Config, out: str | Path | None, modality: str | None = None, title: str = "linear probe"
) -> dict:
    """The linear probe of one modality (default ``eval.modality``); see ``linear_probes``."""
    modality = modality or cfg.eval.modality
    return linear_probes(method, cfg, out, (modality,), title)[modality]
