"""``avcl bench formats``: every candidate format of the cache is measured on real videos, and the
host description says what the numbers were measured on."""

from __future__ import annotations

import json

from avcl.bench.formats import format_formats_table, run_format_bench
from avcl.bench.host import machine


def test_the_formats_bench_measures_every_format_and_writes_its_json(tiny_videos, tmp_path):
    videos = sorted(tiny_videos.rglob("*.mp4"))[:2]
    results = run_format_bench(
        videos, size=(36, 48), qualities=(80, 90), clip_len=4, clips=3, out=tmp_path, progress=False
    )
    names = [r["format"] for r in results["rows"]]
    assert names == [
        "raw uint8",
        "JPEG q80, simplejpeg",
        "JPEG q80, torchvision decode_jpeg",
        "JPEG q80, PIL",
        "JPEG q90, simplejpeg",
        "H.264 crf 23, keyframe every 8",
        "H.264 crf 23, keyframe every 16",
        "H.264 crf 18, keyframe every 16",
    ]
    sizes = {r["format"]: r["mb_per_10s"] for r in results["rows"]}
    assert sizes["raw uint8"] > sizes["JPEG q90, simplejpeg"] >= sizes["JPEG q80, simplejpeg"] > 0
    assert all(r["clips_per_cpu_s"] > 0 and r["samples_per_cpu_s"] > 0 for r in results["rows"])
    assert results["seconds_of_video"] > 2 and results["frame_size"] == [36, 48]
    assert json.loads((tmp_path / "bench_formats.json").read_text()) == results
    assert format_formats_table(results).count("\n| ") == len(names)


def test_the_host_description_names_the_machine_and_the_versions():
    import torch

    host = machine()
    assert host["cores"] >= 1 and host["torch"] == torch.__version__ and host["cpu"]
