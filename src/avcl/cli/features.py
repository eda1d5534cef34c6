"""``avcl embed | retrieve | knn | tsne | cam``: see what a representation learned (METHOD.md section 6)."""

from __future__ import annotations

import argparse
from pathlib import Path

from avcl import fileio
from avcl.cli._common import add_config_options
from avcl.cli.prepare import parse_size
from avcl.config import MODALITIES
from avcl.errors import UserError


def _source_options(p: argparse.ArgumentParser, features: bool = True) -> None:
    if features:
        p.add_argument("--features", help="a folder written by `avcl embed` (instead of --checkpoint/--config)")
    p.add_argument("--checkpoint", help="any checkpoint (file or run folder); omit with --config for random encoders")
    p.add_argument("--modality", choices=MODALITIES, default="both", help="features (default both)")
    p.add_argument("--clips", type=int, default=None, help="uniform clips per video (default data.test_clips)")
    p.add_argument(
        "--size",
        type=parse_size,
        default=(128, 171),
        metavar="HxW",
        help="frame size when --data is a folder of videos (default 128x171, as avcl prepare)",
    )
    add_config_options(p, out_help="output folder")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="features of every video of a prepared cache or a folder of videos (.npy + CSV)")
    _source_options(p, features=False)
    p.add_argument(
        "--layer",
        choices=("pool", "conv5"),
        default="pool",
        help="pool: the method's evaluation features; conv5: max-pooled (1,2,2) conv5 maps (vcop)",
    )
    p.set_defaults(func=run_embed)

    p = sub.add_parser("retrieve", help="clip retrieval: test videos query training videos, top-k (k=1,5,10,20,50)")
    _source_options(p)
    p.add_argument(
        "--convention",
        choices=("vcop", "pooled"),
        default="vcop",
        help="vcop: conv5 max-pooled, cosine (default); pooled: centred, L2-normalised pooled features",
    )
    p.add_argument("--cross-modal", action="store_true", help="audio queries, video gallery (pooled features)")
    p.add_argument("--query-split", default="test")
    p.add_argument("--gallery-split", default="train")
    p.add_argument("--examples", type=int, default=6, help="queries drawn with their nearest neighbours (PNG)")
    p.set_defaults(func=run_retrieve)

    p = sub.add_parser("knn", help="weighted kNN on frozen features (cosine, k=20, temperature-weighted votes)")
    _source_options(p)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--temperature", type=float, default=0.07)
    p.add_argument("--query-split", default="test")
    p.add_argument("--gallery-split", default="train")
    p.set_defaults(func=run_knn)

    p = sub.add_parser("tsne", help="a 2-D t-SNE of the features coloured by class (PNG)")
    _source_options(p)
    p.add_argument("--split", default="test", help="videos to plot (default test; 'all' for every split)")
    p.add_argument("--perplexity", type=float, default=30.0)
    p.set_defaults(func=run_tsne)

    p = sub.add_parser(
        "cam", help="Grad-CAM class activation maps of a fine-tuned checkpoint over frames and spectrograms"
    )
    p.add_argument("--checkpoint", required=True, help="fine-tuning checkpoint (file or run folder)")
    p.add_argument("--layer", choices=("conv5", "conv4"), default="conv5")
    p.add_argument("--split", default="test")
    p.add_argument("--videos", default="2", help="N videos per class (default 2), or comma-separated row numbers")
    p.add_argument("--target", choices=("predicted", "true"), default="predicted")
    add_config_options(p, out_help="output folder")
    p.set_defaults(func=run_cam)


# -- features ------------------------------------------------------------------------------------
def _features(args, modality: str | None = None, layer: str = "pool"):
    """The FeatureSet of --features, or computed from --checkpoint/--config and --data."""
    from avcl.evaluation.features import FeatureSet, embed_videos

    if getattr(args, "features", None):
        return FeatureSet.load(args.features)
    if not args.checkpoint and not args.config:
        raise UserError("give --features, or --checkpoint (or --config for random encoders) with --data")
    from avcl.cli.evaluate import _config_and_method

    cfg, method = _config_and_method(args)
    data = args.data or cfg.data.root  # a checkpoint remembers the cache it was trained on
    if not data:
        raise UserError("give --data: a prepared cache or a folder of videos")
    return embed_videos(
        method,
        cfg,
        data,
        modality=modality or args.modality,
        layer=layer,
        clips=args.clips,
        size=args.size,
        progress=cfg.train.progress,
    )


def _out(args, default: str) -> Path:
    out = Path(args.out or default)
    out.mkdir(parents=True, exist_ok=True)
    return out


def run_embed(args) -> int:
    feats = _features(args, layer=args.layer)
    out = feats.save(_out(args, "runs/embed"))
    print(
        f"{len(feats.paths)} videos x {feats.features.shape[1]} features ({args.modality}, {args.layer}) -> "
        f"{out}/features.npy, {out}/videos.csv"
    )
    return 0


def run_retrieve(args) -> int:
    from avcl.evaluation.neighbours import RETRIEVAL_KS, nearest_neighbours, retrieval_topk

    out = _out(args, "runs/retrieve")
    if args.cross_modal:
        if args.features:
            raise UserError("--cross-modal computes audio and video features itself: give --checkpoint and --data")
        queries_set, gallery_set = _features(args, "audio"), _features(args, "video")
        convention = "pooled"
    else:
        layer = "conv5" if args.convention == "vcop" else "pool"
        queries_set = gallery_set = _features(args, layer=layer)
        convention = args.convention
    gallery, gallery_y = gallery_set.split(args.gallery_split)
    queries, queries_y = queries_set.split(args.query_split)
    metrics = retrieval_topk(gallery, gallery_y, queries, queries_y, RETRIEVAL_KS, convention)
    metrics.update(
        {
            "convention": convention,
            "cross_modal": bool(args.cross_modal),
            "queries": len(queries_y),
            "gallery": len(gallery_y),
            **{f"features_{k}": v for k, v in queries_set.info.items()},
        }
    )
    fileio.write_json(out / "metrics.json", metrics)
    if args.examples > 0:
        nearest = nearest_neighbours(gallery, queries[: args.examples], k=5, convention=convention)
        _draw_neighbours(queries_set, gallery_set, args, nearest, out / "retrieval.png")
    print("retrieval top-k (%): " + ", ".join(f"{k} {metrics[f'top{k}']:.1f}" for k in RETRIEVAL_KS) + f" -> {out}")
    return 0


def _draw_neighbours(queries_set, gallery_set, args, nearest, path: Path) -> None:
    from avcl.evaluation.plots import plot_image_rows

    q_rows, g_rows = queries_set.rows(args.query_split), gallery_set.rows(args.gallery_split)
    frames = _FirstFrames(queries_set.info.get("data"))
    images, captions = [], []
    for qi, neighbours in enumerate(nearest.tolist()):
        q = q_rows[qi]
        row_images = [frames(queries_set.paths[q])]
        row_captions = [f"query: {queries_set.labels[q]}"]
        for rank, gi in enumerate(neighbours, start=1):
            g = g_rows[gi]
            hit = "=" if gallery_set.labels[g] == queries_set.labels[q] else "x"
            row_images.append(frames(gallery_set.paths[g]))
            row_captions.append(f"{rank} {hit} {gallery_set.labels[g]}")
        images.append(row_images)
        captions.append(row_captions)
    plot_image_rows(images, captions, path, title="queries (left) and their 5 nearest training videos (= same class)")


class _FirstFrames:
    """The first frame of a video: from the prepared cache when the features came from one, else decoded."""

    def __init__(self, data: str | None):
        from avcl.evaluation.features import _is_cache

        self.cache = None
        if data and _is_cache(Path(data)):
            from avcl.data.cache import PreparedCache

            self.cache = PreparedCache(data)
            self.row_of = {str(p): i for i, p in enumerate(self.cache.entries.path)}

    def __call__(self, path: str):
        import numpy as np

        if self.cache is not None and path in self.row_of:
            return self.cache.read_frames(self.row_of[path], [0])[0]
        from avcl.data.decode import DecodeError, read_frames

        try:
            return read_frames(path, 0, 1, size=(112, 150))[0]
        except (DecodeError, OSError):
            return np.full((112, 150, 3), 128, np.uint8)


def run_knn(args) -> int:
    from avcl.evaluation.neighbours import knn_accuracy

    out = _out(args, "runs/knn")
    feats = _features(args)
    train, train_y = feats.split(args.gallery_split)
    test, test_y = feats.split(args.query_split)
    metrics = knn_accuracy(train, train_y, test, test_y, len(feats.classes), args.k, args.temperature)
    metrics.update(
        {
            "k": args.k,
            "temperature": args.temperature,
            "queries": len(test_y),
            "gallery": len(train_y),
            **{f"features_{k}": v for k, v in feats.info.items()},
        }
    )
    fileio.write_json(out / "metrics.json", metrics)
    print(f"kNN (k={args.k}): top-1 {metrics['top1']:.1f}% top-5 {metrics['top5']:.1f}% -> {out}")
    return 0


def run_tsne(args) -> int:
    import numpy as np

    from avcl.evaluation.features import tsne_plot

    out = _out(args, "runs/tsne")
    points = tsne_plot(_features(args), args.split, out / "tsne.png", args.perplexity)
    np.save(out / "tsne.npy", points)
    print(f"t-SNE of {len(points)} videos -> {out / 'tsne.png'}")
    return 0


# -- class activation maps -----------------------------------------------------------------------
def run_cam(args) -> int:
    from avcl.cli.evaluate import finetuned
    from avcl.data.transforms import to_model_input
    from avcl.engine.setup import open_cache, setup_device, split_dataset
    from avcl.evaluation.plots import plot_image_rows

    cfg, model, run = finetuned(args, "cam", "explains a fine-tuned classifier (run `avcl finetune` first)")
    device = setup_device(cfg)
    model = model.to(device).eval()
    cache = open_cache(cfg)
    dataset = split_dataset(cfg, cache, args.split, "eval", require_audio=model.uses_audio)
    labels = [int(cache.entries.label[r]) for r in dataset.rows]
    positions = _cam_positions(args.videos, labels, len(cache.classes))
    out = _out(args, str(run / "cam"))
    written = []
    for pos in positions:
        if not 0 <= pos < len(dataset):
            raise UserError(f"--videos: row {pos} is outside the {len(dataset)} videos of split '{args.split}'")
        batch = to_model_input({k: v[None] for k, v in dataset[pos].items()}, cfg.data, device)
        rows, captions = _cam_strips(model, batch, cfg, cache.classes, args.layer, args.target)
        true_name = cache.classes[labels[pos]]
        path = plot_image_rows(
            rows,
            captions,
            out / f"cam_{pos:04d}_{true_name}.png",
            title=f"{Path(str(cache.entries.path[dataset.rows[pos]])).name}: true {true_name}, {args.layer}",
        )
        written.append(str(path))
    fileio.write_json(out / "cams.json", {"layer": args.layer, "target": args.target, "files": written})
    print(f"{len(written)} activation-map strips -> {out}")
    return 0


def _cam_positions(videos: str, labels: list[int], classes: int) -> list[int]:
    """The rows of the split that ``--videos`` names: the first N videos of every class, or a list."""
    if not videos.replace(",", "").isdigit():
        raise UserError(f"--videos takes a number of videos per class or comma-separated rows, not {videos!r}")
    if "," in videos:
        return [int(v) for v in videos.split(",") if v]
    per_class = int(videos)
    return [pos for c in range(classes) for pos in [i for i, label in enumerate(labels) if label == c][:per_class]]


def _cam_strips(model, batch: dict, cfg, classes: list[str], layer: str, target: str) -> tuple[list, list]:
    """Grad-CAM of ``layer`` for each modality the model uses: ``(rows of images, rows of captions)`` for
    :func:`~avcl.evaluation.plots.plot_image_rows` (the video's frames overlaid; the spectrogram and its map)."""
    from avcl.evaluation.gradcam import grad_cam, overlay

    label = batch["label"] if target == "true" else None
    rows, captions = [], []
    for name in ("video", "audio"):
        if name not in batch or not getattr(model, f"uses_{name}"):
            continue
        encoder = model.video_encoder if name == "video" else model.audio_encoder
        fixed = dict(batch)

        def scores(x, name=name, fixed=fixed):
            return model.logits({**fixed, name: x})

        cam, cls = grad_cam(scores, encoder.stage(layer), batch[name], label)
        cls_name = classes[int(cls[0])]
        if name == "video":
            heat = overlay(_unnormalise(batch, cfg), cam[0].cpu())
            rows.append([f.numpy() for f in heat])
            captions.append([f"frame {t}" + (f" ({cls_name})" if t == 0 else "") for t in range(len(heat))])
        else:
            spec, heat_map = batch["audio"][0, 0].float().cpu().numpy(), cam[0, 0].cpu().numpy()
            rows.append([spec, heat_map])
            captions.append(["spectrogram", f"Grad-CAM ({cls_name})"])
    return rows, captions


def _unnormalise(batch: dict, cfg):
    """(T, H, W, 3) uint8 frames of the (normalised) clip in ``batch``."""
    import torch

    video = batch["video"][0].float().cpu()  # (3, T, H, W)
    if cfg.data.normalize_video:
        mean = torch.tensor(cfg.data.video_mean).view(3, 1, 1, 1)
        std = torch.tensor(cfg.data.video_std).view(3, 1, 1, 1)
        video = video * std + mean
    return (video.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 3, 0)
