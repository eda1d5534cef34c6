"""avcl embed / retrieve / knn / tsne / cam through the command line on the tiny benchmark."""

from __future__ import annotations

import csv
import json

import numpy as np
from conftest import TINY, run_cli


def _rows(folder):
    with open(folder / "videos.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_embed_a_cache_and_the_same_videos_from_their_folder(tiny_cache, tiny_videos, tmp_path):
    common = ["--config", "configs/demo_cpu.yaml", *TINY, "--modality", "both"]
    run_cli("embed", "--data", str(tiny_cache), "--out", str(tmp_path / "cache"), *common)
    run_cli("embed", "--data", str(tiny_videos), "--size", "36x48", "--out", str(tmp_path / "raw"), *common)
    from_cache, from_raw = np.load(tmp_path / "cache" / "features.npy"), np.load(tmp_path / "raw" / "features.npy")
    rows_cache, rows_raw = _rows(tmp_path / "cache"), _rows(tmp_path / "raw")
    assert from_cache.shape == (len(rows_cache), 128) and {r["split"] for r in rows_cache} == {"train", "val", "test"}
    assert sorted(r["path"] for r in rows_cache) == sorted(r["path"] for r in rows_raw)
    order = {r["path"]: i for i, r in enumerate(rows_raw)}
    matched = from_raw[[order[r["path"]] for r in rows_cache]]
    assert [r["label"] for r in rows_cache] == [rows_raw[order[r["path"]]]["label"] for r in rows_cache]
    # The cache stores JPEG frames (quality 80) and float16 spectrograms, which random encoders amplify:
    # each video's features from its file are close to those from the cache, and closer to them than to
    # any other video's.
    error = np.linalg.norm(matched - from_cache, axis=1) / np.linalg.norm(from_cache, axis=1)
    assert float(error.mean()) < 0.1 and float(error.max()) < 0.25, error
    distances = np.linalg.norm(matched[:, None] - from_cache[None], axis=2)
    assert (distances.argmin(axis=1) == np.arange(len(from_cache))).all()


def test_retrieve_knn_and_tsne_write_numbers_and_pictures(tiny_cache, tmp_path):
    feats = tmp_path / "feats"
    run_cli(
        "embed",
        "--config",
        "configs/demo_cpu.yaml",
        *TINY,
        "--data",
        str(tiny_cache),
        "--layer",
        "conv5",
        "--modality",
        "video",
        "--out",
        str(feats),
    )
    info = json.loads((feats / "features.json").read_text())
    assert info["layer"] == "conv5" and info["dim"] == np.load(feats / "features.npy").shape[1]

    run_cli("retrieve", "--features", str(feats), "--out", str(tmp_path / "r"), "--examples", "2")
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    tops = [metrics[f"top{k}"] for k in (1, 5, 10, 20, 50)]
    assert tops == sorted(tops) and tops[-1] == 100.0 and metrics["convention"] == "vcop"
    assert (tmp_path / "r" / "retrieval.png").stat().st_size > 0

    run_cli("knn", "--features", str(feats), "--k", "5", "--out", str(tmp_path / "k"))
    knn = json.loads((tmp_path / "k" / "metrics.json").read_text())
    assert 0 <= knn["top1"] <= knn["top5"] <= 100 and knn["k"] == 5

    run_cli("tsne", "--features", str(feats), "--split", "all", "--out", str(tmp_path / "t"))
    assert (tmp_path / "t" / "tsne.png").stat().st_size > 0 and np.load(tmp_path / "t" / "tsne.npy").shape[1] == 2


def test_cross_modal_retrieval_and_class_activation_maps(tiny_cache, tmp_path):
    run_cli(
        "pretrain",
        "--config",
        "configs/demo_cpu.yaml",
        "--data",
        str(tiny_cache),
        "--out",
        str(tmp_path / "pre"),
        *TINY,
        "train.epochs=1",
    )
    run_cli(
        "retrieve",
        "--checkpoint",
        str(tmp_path / "pre"),
        "--cross-modal",
        "--examples",
        "0",
        "--out",
        str(tmp_path / "x"),
    )
    assert json.loads((tmp_path / "x" / "metrics.json").read_text())["cross_modal"] is True
    run_cli("finetune", "--checkpoint", str(tmp_path / "pre"), "--out", str(tmp_path / "ft"), "eval.epochs=1")
    out = run_cli(
        "cam", "--checkpoint", str(tmp_path / "ft"), "--videos", "1", "--layer", "conv4", "--out", str(tmp_path / "cam")
    )
    files = json.loads((tmp_path / "cam" / "cams.json").read_text())["files"]
    assert len(files) == 4 and all((tmp_path / "cam" / f.split("/")[-1]).stat().st_size > 0 for f in files)
    assert "activation-map strips" in out.stdout
