"""``generate_benchmark``: the settings checked once, the folder made ready, the videos rendered in
parallel, then the manifest."""

from __future__ import annotations

import json
import math
import multiprocessing
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterable, Iterator

from avcl import fileio
from avcl.data.synth.clip import _VideoJob
from avcl.data.synth.tables import AAC_SAMPLE_RATES, MOTIONS, SCENES, SOUND_CODES, SPLITS, class_names
from avcl.data.synth.writing import _make_video, _write_manifest
from avcl.errors import UserError
from avcl.progress import progress as progress_bar

_MARKER = "synth.json"


def split_counts(n: int, splits: tuple[float, float, float]) -> tuple[int, int, int]:
    """How many of ``n`` videos of a class go to train, val and test.

    Largest remainder of ``n * fraction``; then every split with a positive fraction gets at least one
    video while another split can spare one, so small benchmarks still have a val and a test set.
    """
    exact = [n * f for f in splits]
    counts = [math.floor(x) for x in exact]
    for i in sorted(range(3), key=lambda i: counts[i] - exact[i])[: n - sum(counts)]:
        counts[i] += 1
    for i in range(3):
        if splits[i] > 0 and counts[i] == 0:
            donor = max(range(3), key=lambda j: counts[j])
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[i] += 1
    return counts[0], counts[1], counts[2]


def _check_arguments(
    classes: int, per_class: int, splits: tuple[float, float, float], workers: int, options: dict[str, Any]
) -> None:
    """Refuse a setting out of range; ``options`` are the settings every video shares (see
    :func:`generate_benchmark`)."""
    o = SimpleNamespace(**options)
    class_names(classes)  # checks the range
    if per_class < 1:
        raise UserError(f"--per-class must be at least 1, not {per_class}")
    if o.height < 24 or o.width < 24:
        raise UserError(f"frames must be at least 24x24 pixels, not {o.height}x{o.width} (height x width)")
    if not 1 <= o.fps <= 120:
        raise UserError(f"fps must be between 1 and 120, not {o.fps}")
    if not 0 < o.min_duration <= o.max_duration:
        raise UserError(f"durations must satisfy 0 < min ({o.min_duration}) <= max ({o.max_duration})")
    if not 0.0 <= o.difficulty <= 1.0:
        raise UserError(f"difficulty must be in [0, 1], not {o.difficulty}")
    if not 0.0 <= o.cue <= 1.0:
        raise UserError(f"cue must be in [0, 1], not {o.cue}")
    if not 0.0 <= o.look <= 1.0:
        raise UserError(f"look must be in [0, 1], not {o.look}")
    if not 0.25 <= o.size <= 3.0:
        raise UserError(f"size must be in [0.25, 3], not {o.size}")
    if o.distractors < 0:
        raise UserError(f"distractors must be 0 or more, not {o.distractors}")
    if o.decoys < 0 or int(o.decoys) != o.decoys:
        raise UserError(f"decoys must be a whole number, 0 or more, not {o.decoys}")
    if o.motion not in MOTIONS:
        raise UserError(f"motion must be one of {', '.join(MOTIONS)}, not {o.motion!r}")
    if o.scene not in SCENES:
        raise UserError(f"scene must be one of {', '.join(SCENES)}, not {o.scene!r}")
    if isinstance(o.contexts, bool) or not isinstance(o.contexts, int) or o.contexts not in (1, 2, 4):
        raise UserError(f"contexts must be 1, 2 or 4, not {o.contexts}")
    if not 0.0 <= o.ambient <= 1.0:
        raise UserError(f"ambient must be in [0, 1], not {o.ambient}")
    if o.sound_code not in SOUND_CODES:
        raise UserError(f"sound_code must be one of {', '.join(SOUND_CODES)}, not {o.sound_code!r}")
    if not 0.1 <= o.event_rate <= o.fps / 4:
        raise UserError(f"event_rate must be between 0.1 and fps / 4 ({o.fps / 4}) events a second, not {o.event_rate}")
    if o.sample_rate not in AAC_SAMPLE_RATES:
        raise UserError(
            f"AAC in MP4 cannot carry {o.sample_rate} Hz; use one of {', '.join(map(str, AAC_SAMPLE_RATES))}"
        )
    if len(splits) != 3 or min(splits) < 0 or splits[0] <= 0 or abs(sum(splits) - 1) > 1e-6:
        raise UserError(f"split fractions (train, val, test) must be non-negative, train > 0, sum to 1: {splits}")
    if workers < 0:
        raise UserError(f"workers must be 0 or more, not {workers}")


def _is_benchmark(out: Path) -> bool:
    """True when ``out`` holds a benchmark written by :func:`generate_benchmark` (complete or not)."""
    try:
        return json.loads((out / _MARKER).read_text()).get("generator") == "avcl synth"
    except (OSError, ValueError, AttributeError):
        return False


def _prepare_folder(out: Path) -> None:
    """Make ``out`` ready: create it, or clear a benchmark written there before; refuse any other content."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not _is_benchmark(out):
            raise UserError(
                f"{out} is not empty and holds no synthetic benchmark ({_MARKER} missing); "
                "choose an empty or new folder"
            )
        # A benchmark written before: replace it whole, so no video of other settings is left behind.
        for name in SPLITS:
            shutil.rmtree(out / name, ignore_errors=True)
        for name in ("manifest.csv", "manifest.csv.part", "classes.txt", _MARKER, _MARKER + ".part"):
            (out / name).unlink(missing_ok=True)
            for leftover in out.glob(f".{name}.*.tmp"):  # of an atomic write that a killed run left
                leftover.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _run_jobs(jobs: list[_VideoJob], workers: int, progress: bool) -> Iterator[dict[str, str]]:
    bar = progress_bar(total=len(jobs), desc="avcl synth", unit="video", disable=not progress, dynamic_ncols=True)
    with bar:
        if workers <= 1:
            for job in jobs:
                yield _make_video(job)
                bar.update()
            return
        # spawn: workers start clean, whatever threads the parent process (e.g. torch) already runs.
        with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
            for row in pool.imap_unordered(_make_video, jobs):
                yield row
                bar.update()


def generate_benchmark(
    out: str | Path,
    classes: int = 8,
    per_class: int = 60,
    seed: int = 0,
    height: int = 128,
    width: int = 171,
    fps: int = 8,
    min_duration: float = 3.0,
    max_duration: float = 5.0,
    difficulty: float = 0.5,
    sample_rate: int = 24000,
    splits: tuple[float, float, float] = (0.6, 0.15, 0.25),
    workers: int = 2,
    progress: bool = True,
    cue: float = 1.0,
    look: float = 0.35,
    size: float = 1.5,
    distractors: int = 0,
    ambient: float = 0.05,
    sound_code: str = "timing",
    event_rate: float = 0.8,
    decoys: int = 0,
    motion: str = "kinds",
    contexts: int = 1,
    scene: str = "room",
) -> Path:
    """Write the benchmark into ``out`` and return the path of its ``manifest.csv``.

    ``classes`` pattern-sound classes (the first of the fixed order, see :func:`class_names`) with
    ``per_class`` videos each, split per class into train/val/test by ``splits``. Frames are
    ``height x width``, each rounded up to an even number because H.264 in yuv420p needs even sizes
    (the default 128x171 is written as 128x172). Durations are drawn uniformly in
    ``[min_duration, max_duration]`` seconds and rounded to whole frames; the audio has exactly the
    same length. ``difficulty`` in [0, 1] scales noise, distractors and nuisance ranges. ``cue`` in
    [0, 1] is the strength of the cross-modal class cues (the object's shape follows the timbre and a
    quiet sound texture the motion pattern, each with probability ``cue``, see :func:`_draw_cues`);
    0 makes the two modalities independent at class level. The nuisance and coding knobs: ``look``
    (colour and blotch variation around a fixed palette, 0 to 1), ``size`` (object size factor),
    ``distractors`` (up to that many silent moving objects; sounds without an event at half that rate
    a second), ``decoys`` (exactly that many silent objects, each doing a motion pattern drawn
    whatever the class, on impacts of its own), ``ambient`` (background noise level), ``sound_code``
    (how the sound codes the motion pattern, :data:`SOUND_CODES`), ``event_rate`` (impacts a second)
    and ``motion`` (what the patterns look like, :data:`MOTIONS`: ``"kinds"``, four kinds of motion;
    ``"profiles"``, a block sliding between the walls for all, each pattern a speed profile of its runs,
    :data:`PROFILE_OF_PATTERN`), ``contexts`` (1, 2 or 4 visual contexts drawn per video: each a
    background palette of its own, context k > 0 showing every pattern as the motion of the pattern k
    places further on, so that only motion and context together tell the pattern; the manifest's
    ``context`` column) and ``scene`` (what surrounds the object, :data:`SCENES`: ``"room"``, a floor,
    walls, the pendulum's post and rod, the pulsing object lighting up; ``"open"``, none of them drawn,
    the ground at a random height, the drum's object a bar). ``workers`` processes render and encode
    (0 or 1: in this process); the result does not depend on it.

    ``out`` must be new, empty, or a benchmark written before (which is replaced).
    """
    splits = tuple(float(s) for s in splits)  # type: ignore[assignment]
    # What every video of the benchmark shares, in the order synth.json records it.
    options = dict(
        height=height,
        width=width,
        fps=fps,
        min_duration=min_duration,
        max_duration=max_duration,
        difficulty=difficulty,
        cue=cue,
        look=look,
        size=size,
        distractors=distractors,
        decoys=decoys,
        motion=motion,
        contexts=contexts,
        scene=scene,
        ambient=ambient,
        sound_code=sound_code,
        event_rate=event_rate,
        sample_rate=sample_rate,
    )
    _check_arguments(classes, per_class, splits, workers, options)
    options.update(height=height + height % 2, width=width + width % 2)
    return _write_benchmark(Path(out), class_names(classes), per_class, seed, splits, workers, progress, options)


def _write_benchmark(
    out: Path,
    names: list[str],
    per_class: int,
    seed: int,
    splits: tuple[float, float, float],
    workers: int,
    progress: bool,
    options: dict[str, Any],
) -> Path:
    """The steps of :func:`generate_benchmark` once its settings are checked; returns the manifest's path."""
    _prepare_folder(out)
    counts = split_counts(per_class, splits)
    split_of = [name for name, count in zip(SPLITS, counts) for _ in range(count)]
    jobs = [
        _VideoJob(str(out / split_of[i] / name / f"{name}_{i:04d}.mp4"), c, i, seed, **options)
        for c, name in enumerate(names)
        for i in range(per_class)
    ]
    settings = {
        "generator": "avcl synth",
        "complete": False,
        "classes": names,
        "per_class": per_class,
        "seed": seed,
        **options,
        "splits": dict(zip(SPLITS, splits)),
        "split_counts": dict(zip(SPLITS, counts)),
        "videos": len(jobs),
    }
    # Written first, so that a rerun recognises (and replaces) even an interrupted benchmark.
    fileio.write_json(out / _MARKER, settings)
    rows = _in_manifest_order(out, jobs, _run_jobs(jobs, workers, progress))
    manifest = _write_manifest(out, rows, names)
    fileio.write_json(out / _MARKER, {**settings, "complete": True})
    return manifest


def _in_manifest_order(out: Path, jobs: list[_VideoJob], rows: Iterable[dict[str, str]]) -> list[dict[str, str]]:
    """The rows of the written videos with their split and their path relative to ``out``, in manifest order:
    split, then class, then index (the order of ``jobs`` within a split)."""
    position = {Path(job.path).relative_to(out).as_posix(): k for k, job in enumerate(jobs)}
    rows = list(rows)
    for row in rows:
        relative = Path(row["path"]).relative_to(out)
        row["split"] = relative.parts[0]
        row["path"] = relative.as_posix()
    return sorted(rows, key=lambda row: (SPLITS.index(row["split"]), position[row["path"]]))
