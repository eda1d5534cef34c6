"""``avcl bench <benchmark>``: throughput measurements.

Each benchmark is one function below that adds its sub-parser (with ``func`` set to the function that
runs it), listed in ``BENCHMARKS``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from avcl.cli.prepare import parse_size


def _cache_or_synthetic(args: argparse.Namespace) -> str:
    """The cache to measure: ``--cache``, or a small synthetic benchmark generated and prepared under ``--out``."""
    if args.cache:
        return args.cache
    from avcl.data.prepare import prepare
    from avcl.data.synth import generate_benchmark

    out = Path(args.out)
    print(f"no --cache: generating a synthetic benchmark ({args.classes} classes x {args.per_class} videos) in {out / 'synth'}")
    manifest = generate_benchmark(out / "synth", classes=args.classes, per_class=args.per_class, seed=0,
                                  progress=not args.quiet)
    prepare(manifest, out / "cache", progress=not args.quiet)
    return str(out / "cache")


def add_loader(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "loader",
        help="training samples/s from the prepared cache vs decoding the source videos",
        description="Training samples per second (16x112x112 clip + 112x112 spectrogram crop, augmented, "
        "through a DataLoader) from the prepared cache with 0, 1 and 2 loader workers, side by side with "
        "decoding every sample from its source video as research code does. Writes OUT/bench_loader.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--cache", help="a prepared cache (default: generate and prepare a synthetic benchmark under --out)")
    p.add_argument("--out", default="runs/bench", help="folder for bench_loader.json (and the synthetic data)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="loader worker counts to measure")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seconds", type=float, default=10.0, help="measuring time per setting (cache)")
    p.add_argument("--source-seconds", type=float, default=None, help="measuring time per setting (source; default --seconds)")
    p.add_argument("--split", default="train", help="split to sample from (all videos if the cache lacks it)")
    p.add_argument("--classes", type=int, default=8, help="synthetic benchmark: classes")
    p.add_argument("--per-class", type=int, default=8, help="synthetic benchmark: videos per class")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_loader)


def run_loader(args: argparse.Namespace) -> int:
    from avcl.bench.loader import format_loader_table, run_loader_bench

    cache = _cache_or_synthetic(args)
    print(f"measuring {cache} (batch {args.batch_size}, {args.seconds:g} s per setting)")
    results = run_loader_bench(cache, workers=args.workers, batch_size=args.batch_size, seconds=args.seconds,
                               source_seconds=args.source_seconds, split=args.split, out=args.out,
                               progress=not args.quiet)
    print(format_loader_table(results))
    print(f"wrote {Path(args.out) / 'bench_loader.json'}")
    return 0


def add_formats(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "formats",
        help="size and decoding speed of candidate cache formats on given videos",
        description="Decode the videos once, store their frames as raw uint8, JPEG (several qualities, three "
        "decoders) and short-GOP H.264 in memory, and measure MB per 10 s of video, clips/s and augmented "
        "samples/s on one core. Writes OUT/bench_formats.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("videos", nargs="+", metavar="VIDEO")
    p.add_argument("--size", type=parse_size, default=(128, 171), metavar="HxW", help="frame size")
    p.add_argument("--clips", type=int, default=200, help="random clips decoded per format")
    p.add_argument("--out", default="runs/bench", help="folder for bench_formats.json")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_formats)


def run_formats(args: argparse.Namespace) -> int:
    from avcl.bench.loader import format_formats_table, run_format_bench

    results = run_format_bench(args.videos, size=args.size, clips=args.clips, out=args.out,
                               progress=not args.quiet)
    print(format_formats_table(results))
    print(f"wrote {Path(args.out) / 'bench_formats.json'}")
    return 0


BENCHMARKS = (add_loader, add_formats)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="throughput benchmarks (loader, formats)",
                              description="Throughput benchmarks; `avcl bench BENCHMARK --help` for each.")
    sub = p.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for add in BENCHMARKS:
        add(sub)
