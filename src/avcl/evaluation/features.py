"""Video-level features of any checkpoint (or random encoders) for any folder of videos: ``avcl embed``.

A video's feature is the mean over ``clips`` uniformly spaced clips (centre crop) of one of:

- ``layer="pool"``: the method's evaluation features (``Method.embed``: the pooled encoder output, the
  AMFM-fused concatenation for AVCL with both modalities);
- ``layer="conv5"``: the conv5 map max-pooled by (1, 2, 2) and flattened (the ``vcop`` retrieval
  convention), per modality, concatenated for both.

The videos come from a prepared cache (every split it holds) or straight from a folder of video files,
decoded as ``avcl prepare`` would decode them (same resize, same log-mel); the spectrograms of a folder
are normalised with that folder's own per-band statistics, as a cache's are with its training split's
(all videos when the folder has no train split). ``FeatureSet`` is what the other commands read.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from avcl import fileio
from avcl.config import Config
from avcl.errors import UserError
from avcl.methods.base import Method

LAYERS = ("pool", "conv5")
_FEATURES, _VIDEOS, _INFO = "features.npy", "videos.csv", "features.json"


@dataclass
class FeatureSet:
    """One row per video: ``features (N, D)`` with each video's path, label and split."""

    features: np.ndarray
    paths: list[str]
    labels: list[str | None]
    splits: list[str | None]
    classes: list[str]
    info: dict

    def save(self, out: str | Path) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / _FEATURES, self.features.astype(np.float32))
        with fileio.atomic_open(out / _VIDEOS, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "label", "split"])
            writer.writerows(zip(self.paths, [label or "" for label in self.labels], [s or "" for s in self.splits]))
        fileio.write_json(
            out / _INFO,
            {**self.info, "classes": self.classes, "videos": len(self.paths), "dim": int(self.features.shape[1])},
            indent=1,
        )
        return out

    @classmethod
    def load(cls, folder: str | Path) -> FeatureSet:
        folder = Path(folder)
        if not (folder / _FEATURES).is_file() or not (folder / _VIDEOS).is_file():
            raise UserError(f"{folder}: not a features folder written by `avcl embed` (no {_FEATURES} / {_VIDEOS})")
        features = np.load(folder / _FEATURES)
        with open(folder / _VIDEOS, newline="") as f:
            rows = list(csv.DictReader(f))
        if len(rows) != len(features):
            raise UserError(f"{folder}: {_VIDEOS} has {len(rows)} rows for {len(features)} feature rows")
        info = json.loads((folder / _INFO).read_text()) if (folder / _INFO).is_file() else {}
        labels = [r["label"] or None for r in rows]
        classes = info.get("classes") or sorted({label for label in labels if label is not None})
        return cls(features, [r["path"] for r in rows], labels, [r["split"] or None for r in rows], classes, info)

    def split(self, name: str) -> tuple[Tensor, Tensor]:
        """``(features, class ids)`` of the labelled videos of one split."""
        class_id = {c: i for i, c in enumerate(self.classes)}
        rows = [i for i, (s, label) in enumerate(zip(self.splits, self.labels)) if s == name and label in class_id]
        if not rows:
            present = sorted({s for s in self.splits if s})
            raise UserError(
                f"no labelled video of split '{name}' in these features (splits: {', '.join(present) or 'none'})"
            )
        labels = torch.tensor([class_id[self.labels[i]] for i in rows])
        return torch.from_numpy(self.features[rows]).float(), labels

    def rows(self, name: str) -> list[int]:
        """Row numbers of the labelled videos of one split, in the order ``split`` returns them."""
        return [i for i, (s, label) in enumerate(zip(self.splits, self.labels)) if s == name and label in self.classes]


def clip_features(method: Method, batch: dict, modality: str, layer: str) -> Tensor:
    """``(B, D)`` features of a batch of clips (see the module docstring)."""
    if layer == "pool":
        return method.embed(batch.get("video"), batch.get("audio"), modality)
    if layer != "conv5":
        raise UserError(f"unknown feature layer '{layer}'; choose one of {', '.join(LAYERS)}")
    from avcl.evaluation.neighbours import vcop_features

    parts = []
    for name, encoder in (("video", method.video_encoder), ("audio", method.audio_encoder)):
        if modality in (name, "both"):
            parts.append(vcop_features(encoder.forward_features(batch[name], ("conv5",))["conv5"]))
    return torch.cat(parts, dim=1)


def _is_cache(folder: Path) -> bool:
    from avcl.data import cache as C

    return (folder / C.INDEX).is_file() or (folder / C.SETTINGS).is_file()


def _folder_datasets(cfg: Config, folder: Path, size: tuple[int, int], needs_audio: bool):
    """``(split, dataset)`` pairs decoding ``folder``'s videos directly, with its own audio statistics."""
    from avcl.data.audio import MelSettings, log_mel
    from avcl.data.datasets import SourceDataset
    from avcl.data.decode import DecodeError, read_audio
    from avcl.data.sources import class_names, list_source

    items = list_source(folder).items
    if not items:
        raise UserError(f"{folder}: no video files found")
    mel = MelSettings()
    stats = None
    if needs_audio:
        from avcl.data.cache import band_statistics

        use = [it for it in items if it.split == "train"] or items
        total, count = np.zeros((2, mel.n_mels)), 0
        for item in use:
            try:
                values = log_mel(read_audio(item.path, mel.sample_rate), mel).astype(np.float64)
            except DecodeError:
                continue
            total += np.stack([values.sum(axis=1), np.square(values).sum(axis=1)])
            count += values.shape[1]
        stats = band_statistics(total, count, mel.n_mels)
    classes = class_names(items)
    by_split: dict[str | None, list] = {}
    for item in items:
        by_split.setdefault(item.split, []).append(item)
    return [
        (
            split,
            SourceDataset(
                group, classes, cfg.data, mode="test", size=size, seed=cfg.train.seed, mel=mel, audio_stats=stats
            ),
        )
        for split, group in by_split.items()
    ], classes


def embed_videos(
    method: Method,
    cfg: Config,
    data: str | Path,
    *,
    modality: str = "both",
    layer: str = "pool",
    clips: int | None = None,
    size: tuple[int, int] = (128, 171),
    progress: bool = True,
) -> FeatureSet:
    """Features of every video of ``data`` (a prepared cache or a folder of videos); see the module docstring."""
    from avcl.data.datasets import build_loader
    from avcl.engine.inference import collect
    from avcl.engine.setup import setup_device

    data = Path(data)
    if not data.is_dir():
        raise UserError(f"{data}: no such folder (a prepared cache or a folder of videos)")
    if clips is not None:
        cfg.data.test_clips = int(clips)
    needs_audio = modality in ("audio", "both")
    device = setup_device(cfg)
    method = method.to(device).eval()
    if _is_cache(data):
        from avcl.data.datasets import PreparedDataset
        from avcl.engine.setup import open_cache

        cfg.data.root = str(data)
        cache = open_cache(cfg)
        classes = list(cache.meta["classes"])
        splits = cache.splits() or [None]
        datasets = [
            (s, PreparedDataset(cache, s, cfg.data, mode="test", require_audio=needs_audio, seed=cfg.train.seed))
            for s in splits
        ]
        source = "prepared cache"
    else:
        datasets, classes = _folder_datasets(cfg, data, size, needs_audio)
        source = "video folder"
    cfg.train.progress = progress
    features, paths, labels, splits = [], [], [], []
    for split, dataset in datasets:
        if len(dataset) == 0:
            continue
        loader = build_loader(dataset, cfg.data, cfg.eval.batch_size, shuffle=False, seed=cfg.train.seed)
        x, y = collect(
            lambda b: clip_features(method, b, modality, layer), loader, cfg, device, f"embed ({split or 'all'})"
        )
        features.append(x.mean(dim=1).numpy())
        for i, label in enumerate(y.tolist()):
            paths.append(_video_path(dataset, i))
            labels.append(classes[label] if label >= 0 else None)
            splits.append(split)
    if not features:
        raise UserError(f"{data}: no usable video" + (" with audio" if needs_audio else ""))
    info = {"modality": modality, "layer": layer, "clips": cfg.data.test_clips, "source": source, "data": str(data)}
    return FeatureSet(np.concatenate(features), paths, labels, splits, classes, info)


def _video_path(dataset, pos: int) -> str:
    if hasattr(dataset, "items"):  # SourceDataset
        return dataset.items[pos].path
    return str(dataset.cache.entries.path[int(dataset.rows[pos])])


def tsne_plot(feats: FeatureSet, split: str, path: str | Path, perplexity: float = 30.0, title: str | None = None):
    """A 2-D t-SNE (scikit-learn, standardised features, PCA start, seed 0) of the labelled videos of
    ``split`` (``all``: every split), coloured by class, drawn to ``path``. Returns the (N, 2) points."""
    from sklearn.manifold import TSNE

    from avcl.evaluation.plots import plot_embedding

    if split == "all":
        rows = [i for i, label in enumerate(feats.labels) if label in feats.classes]
    else:
        rows = feats.rows(split)
    if len(rows) < 5:
        raise UserError(f"t-SNE needs at least 5 labelled videos; split '{split}' has {len(rows)}")
    x = feats.features[rows].astype(np.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    points = TSNE(2, perplexity=min(perplexity, (len(rows) - 1) / 3), init="pca", random_state=0).fit_transform(x)
    labels = [feats.classes.index(feats.labels[i]) for i in rows]
    title = title or f"t-SNE of {feats.info.get('modality', '')} features ({split}, {len(rows)} videos)"
    plot_embedding(points, labels, feats.classes, path, title=title)
    return points
