"""``avcl prepare SRC OUT``: decode every video once into the prepared cache (see ``avcl.data.prepare``)."""

from __future__ import annotations

import argparse
from pathlib import Path

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
    p.add_argument(
        "src",
        metavar="SRC",
        help="a folder of class folders ([split/]class/video) or a CSV "
        "(path,label[,split], or a Kinetics annotation CSV with --videos-root)",
    )
    p.add_argument(
        "out", metavar="OUT", help="cache folder: new or empty (outside SRC), or a cache to resume or extend"
    )
    p.add_argument(
        "--size", type=parse_size, default=(128, 171), metavar="HxW", help="stored frame size (default 128x171)"
    )
    p.add_argument(
        "--fps", type=float, default=None, help="resample to this frame rate (default: keep the source frames)"
    )
    p.add_argument(
        "--quality",
        type=int,
        default=DEFAULT_QUALITY,
        help=f"JPEG quality of the stored frames, 1-100 (default {DEFAULT_QUALITY})",
    )
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: one per core)")
    p.add_argument("--min-frames", type=int, default=16, help="skip videos with fewer frames, one clip (default 16)")
    p.add_argument("--videos-root", default=None, help="folder of the downloaded videos of a Kinetics CSV")
    p.add_argument(
        "--classes",
        default=None,
        metavar="LIST",
        help="keep only these classes: kinetics_sounds_32, "
        "kinetics_sounds_100 or a file with one class name per line (spaces or underscores match)",
    )
    _add_official_splits(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=run)


def _add_official_splits(p: argparse.ArgumentParser) -> None:
    """UCF101's or HMDB51's official split files, and the validation videos held out of their training list."""
    official = p.add_mutually_exclusive_group()
    official.add_argument(
        "--ucf101-splits",
        default=None,
        metavar="DIR",
        help="UCF101 split files "
        "(ucfTrainTestlist: classInd.txt, trainlist0N.txt, testlist0N.txt); SRC is the UCF-101 folder",
    )
    official.add_argument(
        "--hmdb51-splits",
        default=None,
        metavar="DIR",
        help="HMDB51 split files (testTrainMulti_7030_splits); SRC is the hmdb51 folder of class folders",
    )
    p.add_argument("--split", type=int, default=1, choices=(1, 2, 3), help="official split number (default 1)")
    p.add_argument(
        "--val-videos",
        type=int,
        default=None,
        metavar="N",
        help="validation videos held out of the official training list (default 800 for UCF101, 400 for HMDB51)",
    )
    p.add_argument("--seed", type=int, default=0, help="draws the held-out validation videos (default 0)")


def run(args: argparse.Namespace) -> int:
    from avcl.data.prepare import prepare

    if args.workers is not None and args.workers < 0:
        raise UserError(f"--workers must be 0 or more, got {args.workers}")
    from avcl.data.sources import OfficialSplits

    official = None
    if args.ucf101_splits or args.hmdb51_splits:
        dataset, lists = ("ucf101", args.ucf101_splits) if args.ucf101_splits else ("hmdb51", args.hmdb51_splits)
        official = OfficialSplits(dataset, Path(lists), args.split, args.val_videos, args.seed)
    prepare(
        args.src,
        args.out,
        size=args.size,
        fps=args.fps,
        quality=args.quality,
        workers=args.workers,
        min_frames=args.min_frames,
        videos_root=args.videos_root,
        progress=not args.quiet,
        classes=args.classes,
        official=official,
    )
    return 0
