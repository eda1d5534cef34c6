"""Action recognition protocols (METHOD.md section 6): fine-tuning, linear probe, video-level test.

Video-level testing averages the logits of ``data.test_clips`` clips spread uniformly over each video
(centre crop) and reports top-1 and top-5 accuracy, with a confusion-matrix PNG beside the numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avcl import fileio
from avcl.config import Config
from avcl.data.transforms import to_model_input
from avcl.engine.checkpoint import load_checkpoint
from avcl.engine.setup import open_cache, place_method, setup_device, split_dataset, split_loader
from avcl.engine.trainer import Trainer, autocast, make_optimizer, make_schedule, seed_everything
from avcl.errors import UserError
from avcl.evaluation.plots import plot_confusion_matrix, plot_run
from avcl.methods.base import Method
from avcl.methods.supervised import Supervised
from avcl.progress import progress as progress_bar


# -- metrics -------------------------------------------------------------------------------------
def topk_accuracy(logits: Tensor, labels: Tensor, ks=(1, 5)) -> dict[str, float]:
    """Percent of rows whose label is among the k largest logits, for each k (capped at #classes)."""
    out = {}
    for k in ks:
        k_eff = min(k, logits.shape[1])
        hit = (logits.topk(k_eff, dim=1).indices == labels[:, None]).any(dim=1).float().mean()
        out[f"top{k}"] = 100.0 * float(hit)
    return out


def confusion_matrix(pred: np.ndarray, true: np.ndarray, num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (true, pred), 1)
    return matrix


def report_predictions(
    logits: Tensor, labels: Tensor, classes: list[str], out: Path | None, title: str, ks=(1, 5)
) -> dict:
    """Top-k, per-class accuracy and the confusion matrix; files ``metrics.json`` and ``confusion.png``."""
    metrics = topk_accuracy(logits, labels, ks)
    pred = logits.argmax(dim=1).numpy()
    true = labels.numpy()
    matrix = confusion_matrix(pred, true, len(classes))
    per_class = {
        c: (100.0 * matrix[i, i] / matrix[i].sum()) if matrix[i].sum() else None for i, c in enumerate(classes)
    }
    metrics.update(
        {"videos": int(len(true)), "per_class_top1": per_class, "confusion": matrix.tolist(), "classes": list(classes)}
    )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        plot_confusion_matrix(matrix, classes, out / "confusion.png", title=f"{title}: top-1 {metrics['top1']:.1f}%")
        fileio.write_json(out / "metrics.json", metrics)
    return metrics


# -- features and logits over a loader -----------------------------------------------------------
@torch.no_grad()
def collect(
    fn: Callable[[dict], Tensor], loader, cfg: Config, device: torch.device, desc: str
) -> tuple[Tensor, Tensor]:
    """Apply ``fn`` to every batch; test-mode batches (B, N, ...) are flattened to B*N clips and
    returned as (B, N, D). Returns (outputs on the CPU, labels)."""
    outs, labels = [], []
    for batch in progress_bar(loader, desc=desc, unit="batch", leave=False, disable=not cfg.train.progress):
        batch = to_model_input(batch, cfg.data, device)
        clips = batch["video"].dim() == 6 if "video" in batch else batch["audio"].dim() == 5
        if clips:
            b, n = (batch["video"] if "video" in batch else batch["audio"]).shape[:2]
            flat = {k: v.flatten(0, 1) if k in ("video", "audio") else v for k, v in batch.items()}
        with autocast(device, cfg.train.amp):
            y = fn(flat if clips else batch).float()
        outs.append(y.view(b, n, -1).cpu() if clips else y.cpu())
        labels.append(batch["label"].cpu())
    return torch.cat(outs), torch.cat(labels)


def _eval_loader(cfg: Config, cache, split: str, mode: str, require_audio: bool, device: torch.device):
    dataset = split_dataset(cfg, cache, split, mode, require_audio=require_audio)
    return split_loader(cfg, dataset, batch_size=cfg.eval.batch_size, shuffle=False, device=device), dataset


def _has_split(cache, split: str) -> bool:
    return split and len(cache.indices(split)) > 0


def _embed_fn(method: Method, modality: str) -> Callable[[dict], Tensor]:
    return lambda b: method.embed(b.get("video"), b.get("audio"), modality)


# -- video-level test ----------------------------------------------------------------------------
def video_level_test(
    model: Supervised,
    cfg: Config,
    out: Path | None,
    split: str | None = None,
    device: torch.device | None = None,
    title: str = "test",
) -> dict:
    """Logits averaged over ``data.test_clips`` uniform clips per video (centre crop)."""
    device = device or setup_device(cfg)
    cache = open_cache(cfg)
    split = split or cfg.data.test_split
    model = model.to(device).eval()
    loader, dataset = _eval_loader(cfg, cache, split, "test", model.uses_audio, device)
    logits, labels = collect(
        lambda b: model.classifier(model.embed(b.get("video"), b.get("audio"))), loader, cfg, device, f"test ({split})"
    )
    metrics = report_predictions(logits.mean(dim=1), labels, dataset.classes, out, title, cfg.eval.topk)
    metrics.update({"split": split, "clips_per_video": cfg.data.test_clips, "modality": model.modality})
    if out is not None:
        fileio.write_json(out / "metrics.json", metrics)
    return metrics


# -- fine-tuning ---------------------------------------------------------------------------------
@torch.no_grad()
def clip_accuracy(model: Supervised, loader, cfg: Config, device: torch.device) -> float:
    """Top-1 (%) on single centre clips: the per-epoch validation of fine-tuning."""
    was_training = model.training
    model.eval()
    logits, labels = collect(lambda b: model.logits(b), loader, cfg, device, "validate")
    model.train(was_training)
    return 100.0 * float((logits.argmax(1) == labels).float().mean())


def finetune(
    cfg: Config, out: str | Path, pretrained: Method | None = None, resume: bool = False, test: bool = True
) -> dict:
    """Train the encoders and a classifier end to end with labels (``eval.*`` settings; paper: SGD,
    weight decay 5e-3, 150 epochs) and keep the best validation epoch; then test it at video level.

    ``pretrained=None`` trains from scratch: that is the supervised Baseline-R / -A / -R+A of Table 4.
    """
    out = Path(out)
    if not resume and (out / "last.pt").exists():
        raise UserError(f"{out} already holds a run (last.pt); pass --resume to continue it or choose another --out")
    device = setup_device(cfg)
    seed_everything(cfg.train.seed)
    cache = open_cache(cfg)
    classes = list(cache.meta["classes"])
    model = place_method(
        cfg, Supervised(cfg, len(classes), modality=cfg.eval.modality, backbone_method=pretrained), device
    )
    train_set = split_dataset(cfg, cache, cfg.data.train_split, "train", require_audio=model.uses_audio)
    loader = split_loader(
        cfg,
        train_set,
        batch_size=cfg.eval.batch_size,
        shuffle=True,
        device=device,
        distributed=True,
        drop_last=len(train_set) > cfg.eval.batch_size,
    )
    val_split = cfg.data.val_split if _has_split(cache, cfg.data.val_split) else cfg.data.train_split
    val_loader, _ = _eval_loader(cfg, cache, val_split, "eval", model.uses_audio, device)
    optimizer = make_optimizer(model.parameters(), "sgd", cfg.eval.lr, cfg.eval.momentum, cfg.eval.weight_decay)

    def schedule(opt, steps):
        return make_schedule(opt, cfg.eval.schedule, cfg.eval.epochs, steps)

    trainer = Trainer(
        cfg,
        model,
        loader,
        out=out,
        epochs=cfg.eval.epochs,
        optimizer=optimizer,
        scheduler_factory=schedule,
        device=device,
        kind="finetune",
        metric="val_acc",
        evaluate=lambda m: {"val_acc": clip_accuracy(m, val_loader, cfg, device)},
        meta={
            "classes": classes,
            "num_classes": len(classes),
            "modality": model.modality,
            "backbone_method": pretrained.name if pretrained is not None else None,
            "val_split": val_split,
        },
    )
    if resume:
        trainer.resume()
    state = trainer.fit()
    if trainer.is_main:
        plot_run(out)
    result = {"best_val_acc": state.best_metric, "epochs": state.epoch}
    if test:
        best = load_checkpoint(out / "best.pt", map_location=device)
        model.load_state_dict(best["model"])
        result["test"] = video_level_test(model, cfg, out / "test", device=device, title="fine-tuned")
        fileio.write_json(out / "result.json", result)
    return result


# -- linear probe --------------------------------------------------------------------------------
PROBE_MODALITIES = ("video", "audio", "both")


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
    device = device or setup_device(cfg)
    cache = cache if cache is not None else open_cache(cfg)
    method = method.to(device).eval()
    needs_audio = any(m in ("audio", "both") for m in modalities)
    loader, _ = _eval_loader(cfg, cache, split, "test", needs_audio, device)
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
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small full-batch problems: thread start-up and barriers cost more than they give
    try:
        return _fit_probe_1(x, y, x_val, y_val, num_classes, weight_decays, max_iter, blocks)
    finally:
        torch.set_num_threads(threads)


def _fit_probe_1(
    x: Tensor,
    y: Tensor,
    x_val: Tensor | None,
    y_val: Tensor | None,
    num_classes: int,
    weight_decays: list[float],
    max_iter: int,
    blocks: tuple[int, ...] | None,
) -> tuple[nn.Linear, dict]:
    if x.dim() == 2:
        x = x[:, None]
    if x_val is not None and x_val.dim() == 2:
        x_val = x_val[:, None]
    if x_val is None and len(weight_decays) > 1:
        held = torch.arange(len(x)) % 5 == 4
        x, y, x_val, y_val = x[~held], y[~held], x[held], y[held]
    flat = lambda x_, y_: (x_.flatten(0, 1), y_.repeat_interleave(x_.shape[1]))  # noqa: E731
    scales: list[tuple[float, ...] | None] = [None]
    if blocks is not None and len(blocks) == 2 and sum(blocks) == x.shape[-1]:
        scales = list(BLOCK_SCALES)
    expand = lambda sc: None if sc is None else torch.cat([torch.full((n,), v) for n, v in zip(blocks, sc)])  # noqa: E731
    candidates = [(wd, sc) for sc in scales for wd in weight_decays]
    scores: dict = {}
    if len(candidates) > 1:
        for sc in scales:
            for wd, (w, b) in _standardised_fits(*flat(x, y), num_classes, weight_decays, max_iter, expand(sc)).items():
                logits = _video_logits(x_val.double(), w, b)
                acc = 100.0 * float((logits.argmax(1) == y_val).double().mean())
                scores[(wd, sc)] = (float(F.cross_entropy(logits, y_val)), acc)
        wd, sc = min(candidates, key=lambda c: (scores[c][0], -c[0]))
    else:
        wd, sc = candidates[0]
    if x_val is not None:  # refit on every labelled video outside the test split
        x, y = torch.cat([x, x_val]), torch.cat([y, y_val])
    w, b = _standardised_fits(*flat(x, y), num_classes, [wd], max_iter, expand(sc))[wd]
    probe = nn.Linear(x.shape[-1], num_classes)
    with torch.no_grad():
        probe.weight.copy_(w.T)
        probe.bias.copy_(b)
    choice = {
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
    return probe, choice


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
    device = setup_device(cfg)
    cache = open_cache(cfg)
    classes = list(cache.meta["classes"])
    x_tr, y_tr = extract_features(method, cfg, cfg.data.train_split, modalities, device, cache)
    x_val = y_val = None
    if _has_split(cache, cfg.data.val_split):
        x_val, y_val = extract_features(method, cfg, cfg.data.val_split, modalities, device, cache)
    x_te, y_te = extract_features(method, cfg, cfg.data.test_split, modalities, device, cache)
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
