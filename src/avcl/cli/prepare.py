"""``avcl prepare SRC OUT``: decode every video once into the prepared cache (see ``avcl.data.prepare``)."""
from __future__ import annotations

import argparse

from avcl.errors import UserError


def parse_size(text: str) -> tuple[int, int]:
    """``"128x171"`` -> (128, 171), height x width."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 128x171, got {text!r}") from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return height, width


def register(subparsers: argparse._SubParsersAction) -> None:
    from avcl.data.cache import DEFAULT_QUALITY  # a light import: `avcl --help` stays fast

    p = subparsers.add_parser(
        "prepare",
        help="decode videos once into a prepared cache for fast training",
        description="Decode every video of SRC once (in parallel) into OUT: resized JPEG frames and the "
        "log-mel spectrogram of the whole audio, with an index, a report of every skipped, missing or "
        "ignored file and its reason (OUT/skipped.jsonl), and the audio statistics. Interrupted, the same "
        "command resumes where it stopped.",
    )
    p.add_argument("src", metavar="SRC", help="a folder of class folders ([split/]class/video) or a CSV "
                   "(path,label[,split], or a Kinetics annotation CSV with --videos-root)")
    p.add_argument("out", metavar="OUT", help="cache folder: new or empty (outside SRC), or a cache to resume or extend")
    p.add_argument("--size", type=parse_size, default=(128, 171), metavar="HxW", help="stored frame size (default 128x171)")
    p.add_argument("--fps", type=float, default=None, help="resample to this frame rate (default: keep the source frames)")
    p.add_argument("--quality", type=int, default=DEFAULT_QUALITY, help=f"JPEG quality of the stored frames, 1-100 (default {DEFAULT_QUALITY})")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: one per core)")
    p.add_argument("--min-frames", type=int, default=16, help="skip videos with fewer frames, one clip (default 16)")
    p.add_argument("--videos-root", default=None, help="folder of the downloaded videos of a Kinetics CSV")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from avcl.data.prepare import prepare

    if args.workers is not None and args.workers < 0:
        raise UserError(f"--workers must be 0 or more, got {args.workers}")
    prepare(args.src, args.out, size=args.size, fps=args.fps, quality=args.quality, workers=args.workers,
            min_frames=args.min_frames, videos_root=args.videos_root, progress=not args.quiet)
    return 0
