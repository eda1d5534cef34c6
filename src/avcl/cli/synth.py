"""``avcl synth OUT``: write the synthetic audio-visual action benchmark (see ``avcl.data.synth``)."""

from __future__ import annotations

import argparse
import csv
import time
from collections import Counter


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth",
        help="write the synthetic audio-visual action benchmark (real H.264/AAC .mp4 files)",
        description="Write a procedurally generated audio-visual action benchmark: classes are "
        "(motion pattern, sound timbre) pairs, sounds start at the frames of their visual events, "
        "the object's shape tells the timbre and the timing of a shared texture sound the motion (--cue), "
        "and every video draws its own nuisances. Layout: OUT/{train,val,test}/<class>/<id>.mp4 "
        "with OUT/manifest.csv (path,label,split,...) and OUT/classes.txt.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("out", metavar="OUT", help="output folder (new, empty, or a benchmark written before)")
    p.add_argument("--classes", type=int, default=8, help="number of classes, 2 to 16 (first K of a fixed order)")
    p.add_argument("--per-class", type=int, default=60, help="videos per class")
    p.add_argument("--seed", type=int, default=0, help="everything follows from it")
    p.add_argument("--height", type=int, default=128, help="frame height (rounded up to even for H.264)")
    p.add_argument("--width", type=int, default=171, help="frame width (rounded up to even for H.264)")
    p.add_argument("--fps", type=int, default=8, help="frames per second")
    p.add_argument("--min-duration", type=float, default=3.0, help="shortest video, seconds")
    p.add_argument("--max-duration", type=float, default=5.0, help="longest video, seconds")
    _add_knobs(p)
    p.add_argument("--sample-rate", type=int, default=24000, help="audio sample rate, Hz")
    p.add_argument(
        "--splits",
        type=float,
        nargs=3,
        default=(0.6, 0.15, 0.25),
        metavar=("TRAIN", "VAL", "TEST"),
        help="split fractions, stratified per class",
    )
    p.add_argument("--workers", type=int, default=2, help="processes rendering and encoding videos")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--verify",
        action="store_true",
        help="write nothing: check that every file of the benchmark in OUT decodes to the media "
        "hashes of its manifest (exit status 1 if not)",
    )
    p.set_defaults(func=run)


def _add_knobs(p: argparse.ArgumentParser) -> None:
    """The nuisance and coding knobs of :func:`avcl.data.synth.generate_benchmark`."""
    p.add_argument(
        "--difficulty", type=float, default=0.5, help="0 to 1: pixel noise, timing jitter, pitch and size ranges"
    )
    p.add_argument(
        "--cue",
        type=float,
        default=1.0,
        help="0 to 1: probability that the object's shape is chosen by the timbre and the sound "
        "texture follows the video's motion pattern, else drawn uniformly (0: the two modalities "
        "share no class information)",
    )
    p.add_argument(
        "--look",
        type=float,
        default=0.35,
        help="0 to 1: how far colours and background blotches vary around a fixed palette",
    )
    p.add_argument("--size", type=float, default=1.5, help="object size factor (1: the original sizes)")
    p.add_argument(
        "--distractors",
        type=int,
        default=0,
        help="up to this many silent moving objects a video, and this many / 2 sounds without a visual event a second",
    )
    p.add_argument(
        "--decoys",
        type=int,
        default=0,
        help="exactly this many silent objects a video, each doing a motion pattern drawn whatever the class",
    )
    p.add_argument(
        "--motion",
        default="kinds",
        help="what the motion patterns look like: 'kinds', four kinds of motion (bounce, slide, swing, "
        "pulse); 'profiles', a block sliding between the walls for every pattern, each pattern a speed "
        "profile of its runs (bounce decelerating, slide accelerating, swing slow-fast-slow, pulse "
        "fast-slow-fast)",
    )
    p.add_argument(
        "--ambient", type=float, default=0.05, help="background noise level (RMS) relative to the impacts' peak level"
    )
    p.add_argument(
        "--sound-code",
        default="timing",
        help="how the sound codes the motion pattern: 'timing', one shared texture sound whose "
        "loudness follows the motion; 'spectrum', a texture of its own per pattern",
    )
    p.add_argument("--event-rate", type=float, default=0.8, help="impacts a second (mean)")
    p.add_argument(
        "--contexts",
        type=int,
        default=1,
        help="visual contexts, 1, 2 or 4, drawn per video: each has a background palette of its own, and "
        "context k > 0 shows each pattern as the motion of the pattern k places further on (bounce, slide, "
        "swing, pulse, cyclically), so that only motion and context together tell the pattern",
    )
    p.add_argument(
        "--scene",
        default="room",
        help="what surrounds the object: 'room', a floor, two walls, the pendulum's post and rod, the "
        "pulsing object lighting up (a still frame shows much of the pattern); 'open', none of them drawn, "
        "the ground the object bounces, slides and pulses on at a random height, the drum's object a flat "
        "bar instead of a square",
    )


def run(args: argparse.Namespace) -> int:
    from avcl.data.synth import generate_benchmark, verify_benchmark  # imported here: `avcl --help` stays fast

    if args.verify:
        start = time.perf_counter()
        checked, problems = verify_benchmark(args.out, workers=args.workers, progress=not args.quiet)
        for problem in problems:
            print(problem)
        verdict = "all match the manifest" if not problems else f"{len(problems)} differ"
        print(f"checked {checked} videos in {args.out}: {verdict} ({time.perf_counter() - start:.1f} s)")
        return 1 if problems else 0
    start = time.perf_counter()
    manifest = generate_benchmark(
        args.out,
        classes=args.classes,
        per_class=args.per_class,
        seed=args.seed,
        height=args.height,
        width=args.width,
        fps=args.fps,
        min_duration=args.min_duration,
        max_duration=args.max_duration,
        difficulty=args.difficulty,
        sample_rate=args.sample_rate,
        splits=tuple(args.splits),
        workers=args.workers,
        progress=not args.quiet,
        cue=args.cue,
        look=args.look,
        size=args.size,
        distractors=args.distractors,
        ambient=args.ambient,
        sound_code=args.sound_code,
        event_rate=args.event_rate,
        decoys=args.decoys,
        motion=args.motion,
        contexts=args.contexts,
        scene=args.scene,
    )
    with open(manifest, newline="") as f:
        splits = Counter(row["split"] for row in csv.DictReader(f))
    counts = ", ".join(f"{splits[name]} {name}" for name in ("train", "val", "test") if splits[name])
    print(f"wrote the synthetic benchmark to {manifest.parent} (manifest {manifest})")
    print(
        f"{sum(splits.values())} videos, {args.classes} classes ({counts}), seed {args.seed}, "
        f"difficulty {args.difficulty}, cue {args.cue}, {time.perf_counter() - start:.1f} s"
    )
    return 0
