"""``avcl bench <benchmark>``: throughput measurements.

Each benchmark is one function below that adds its sub-parser (with ``func`` set to the function that
runs it), listed in ``BENCHMARKS``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avcl.bench import BACKBONES
from avcl.cli.prepare import parse_size


def _cache_or_synthetic(args: argparse.Namespace) -> str:
    """The cache to measure: ``--cache``, or a small synthetic benchmark generated and prepared under ``--out``."""
    if args.cache:
        return args.cache
    from avcl.data.prepare import prepare
    from avcl.data.synth import generate_benchmark

    out = Path(args.out)
    print(
        f"no --cache: generating a synthetic benchmark ({args.classes} classes x {args.per_class} videos) "
        f"in {out / 'synth'}"
    )
    manifest = generate_benchmark(
        out / "synth", classes=args.classes, per_class=args.per_class, seed=0, progress=not args.quiet
    )
    prepare(manifest, out / "cache", progress=not args.quiet)
    return str(out / "cache")


def add_loader(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "loader",
        help="training samples/s from the prepared cache vs decoding the source videos",
        description="Training samples per second (16x112x112 clip + 112x112 spectrogram crop, augmented, "
        "through a DataLoader) from the prepared cache with 0, 1 and 2 loader workers, side by side with "
        "decoding every sample from its source video as research code does. Writes OUT/bench_loader.json.",
    )
    p.add_argument("--cache", help="a prepared cache (default: generate and prepare a synthetic benchmark under --out)")
    p.add_argument(
        "--out", default="runs/bench", help="folder for bench_loader.json and the synthetic data (default runs/bench)"
    )
    p.add_argument(
        "--workers", type=int, nargs="+", default=[0, 1, 2], help="loader worker counts to measure (default 0 1 2)"
    )
    p.add_argument("--batch-size", type=int, default=16, help="default 16")
    p.add_argument("--seconds", type=float, default=10.0, help="measuring time per setting, seconds (default 10)")
    p.add_argument(
        "--source-seconds",
        type=float,
        default=None,
        help="the same for decoding the source (default: --seconds; 0 skips the source)",
    )
    p.add_argument(
        "--split", default="train", help="split to sample from (default train; all videos if the cache lacks it)"
    )
    p.add_argument("--classes", type=int, default=8, help="synthetic benchmark: classes (default 8)")
    p.add_argument("--per-class", type=int, default=8, help="synthetic benchmark: videos per class (default 8)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_loader)


def run_loader(args: argparse.Namespace) -> int:
    from avcl.bench.loader import format_loader_table, run_loader_bench

    cache = _cache_or_synthetic(args)
    print(f"measuring {cache} (batch {args.batch_size}, {args.seconds:g} s per setting)")
    results = run_loader_bench(
        cache,
        workers=args.workers,
        batch_size=args.batch_size,
        seconds=args.seconds,
        source_seconds=args.source_seconds,
        split=args.split,
        out=args.out,
        progress=not args.quiet,
    )
    print(format_loader_table(results))
    print(f"wrote {Path(args.out) / 'bench_loader.json'}")
    return 0


def add_formats(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "formats",
        help="size and decoding speed of candidate cache formats on given videos",
        description="Decode the videos once, store their frames as raw uint8, JPEG (several qualities, three "
        "decoders) and short-GOP H.264 in memory, and measure MB per 10 s of video, and clips and augmented "
        "samples decoded per CPU-second. Writes OUT/bench_formats.json.",
    )
    p.add_argument("videos", nargs="+", metavar="VIDEO")
    p.add_argument("--size", type=parse_size, default=(128, 171), metavar="HxW", help="frame size (default 128x171)")
    p.add_argument("--clips", type=int, default=200, help="random clips decoded per format (default 200)")
    p.add_argument("--out", default="runs/bench", help="folder for bench_formats.json (default runs/bench)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_formats)


def run_formats(args: argparse.Namespace) -> int:
    from avcl.bench.formats import format_formats_table, run_format_bench

    results = run_format_bench(args.videos, size=args.size, clips=args.clips, out=args.out, progress=not args.quiet)
    print(format_formats_table(results))
    print(f"wrote {Path(args.out) / 'bench_formats.json'}")
    return 0


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="AVCL training samples/s, data wait vs compute, and MFU per backbone",
        description="Times AVCL training steps (the loop of avcl pretrain) for each backbone on batches from a "
        "prepared cache: samples/s, the step split into data wait and compute, training FLOPs per sample "
        "(FlopCounterMode over one forward and backward) and MFU against the GPU's dense bf16 peak. Presets: "
        "configs/avcl_<backbone>.yaml (16x112x112) on CUDA, configs/demo_cpu.yaml (8x56x56) on the CPU. "
        "Writes OUT/bench_train.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--cache", help="a prepared cache (default: generate and prepare a synthetic benchmark under OUT/train)"
    )
    p.add_argument(
        "--data",
        choices=("cache", "synthetic"),
        default="cache",
        help="cache: batches through the loader from --cache (or a generated synthetic benchmark); "
        "synthetic: random uint8 batches made on the device, no loader or decoding (compute-only MFU)",
    )
    p.add_argument("--out", default="runs/bench", help="folder for bench_train.json")
    p.add_argument("--backbones", default=",".join(BACKBONES), help="comma-separated backbones")
    p.add_argument("--batch-size", type=int, default=64, help="batch per process")
    p.add_argument(
        "--steps", type=int, default=None, help="measured steps per backbone (default: 30 on CUDA, 4 on the CPU)"
    )
    p.add_argument(
        "--warmup", type=int, default=None, help="unmeasured steps first (default: 10 on CUDA, 1 on the CPU)"
    )
    p.add_argument(
        "--config",
        help="preset for every backbone (default: the backbone's paper preset on CUDA, "
        "configs/demo_cpu.yaml on the CPU)",
    )
    p.add_argument(
        "--peak-tflops", type=float, default=None, help="device peak for MFU, for a GPU missing from the table"
    )
    p.add_argument("--classes", type=int, default=12, help="synthetic benchmark: classes")
    p.add_argument("--per-class", type=int, default=16, help="synthetic benchmark: videos per class")
    p.add_argument("--quiet", action="store_true")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides, e.g. data.num_workers=16 train.compile=true",
    )
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from avcl.bench.train import format_train_table, run_train_bench

    # the synthetic benchmark of this command has its own folder: it needs more videos than bench loader's
    if getattr(args, "data", "cache") == "synthetic":
        cache = None
    else:
        cache = _cache_or_synthetic(argparse.Namespace(**{**vars(args), "out": str(Path(args.out) / "train")}))
    results = run_train_bench(
        cache,
        out=args.out,
        backbones=[b.strip() for b in args.backbones.split(",") if b.strip()],
        batch_size=args.batch_size,
        steps=args.steps,
        warmup=args.warmup,
        config=args.config,
        overrides=args.overrides,
        split="train" if args.cache else None,
        peak_tflops=args.peak_tflops,
        progress=not args.quiet,
    )
    print(format_train_table(results))
    print(f"wrote {Path(args.out) / 'bench_train.json'}")
    return 0


BENCHMARKS = (add_loader, add_formats, add_train)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="throughput benchmarks (loader, formats, train)",
        description="Throughput benchmarks; `avcl bench BENCHMARK --help` for each.",
    )
    sub = p.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for add in BENCHMARKS:
        add(sub)
