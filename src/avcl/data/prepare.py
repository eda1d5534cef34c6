"""``avcl prepare SRC OUT``: decode every video once, in parallel, into the prepared cache.

Worker processes decode one video each: frames are streamed from the decoder, resized, JPEG-encoded and
appended to the worker's own shard file one at a time, then the log-mel of the whole audio track follows;
the worker flushes and fsyncs its shard and sends back a small index entry. The parent appends that
entry to ``index.jsonl`` (flushed and fsynced), so a video is prepared exactly when its line exists.

Interrupted (Ctrl-C, SIGKILL, a crashed worker), a second run with the same SRC and OUT resumes: it
reads the index and ``skipped.jsonl``, cuts a torn last line, cuts the bytes past each shard's last
indexed video (a killed worker's half-written video), and decodes only the videos not yet in either.
Memory stays flat: the parent keeps a few futures in flight and no frames.

Nothing in SRC is passed over without a word: files of other extensions (and files beside the split
folders) and CSV rows whose file is missing are counted in the summary and listed in ``skipped.jsonl``
and ``report.json``; only hidden files and OS junk (``.DS_Store``, ``Thumbs.db``) are merely counted.
OUT must be new, empty or a cache: never SRC itself, a folder inside it, or a folder of other files.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import fcntl
import multiprocessing
import os
import secrets
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import torch

from avcl import fileio
from avcl.data import cache as C
from avcl.data.audio import MelSettings, log_mel
from avcl.data.classlists import load_class_list
from avcl.data.decode import DecodeError, iter_frames, probe, read_audio
from avcl.data.sources import (
    NOT_A_VIDEO,
    OUTSIDE_SPLITS,
    VIDEO_EXTENSIONS,
    OfficialSplits,
    SourceListing,
    VideoItem,
    class_names,
    is_hidden,
    list_source,
)
from avcl.errors import UserError
from avcl.progress import progress as progress_bar

DEFAULT_QUALITY = C.DEFAULT_QUALITY
NO_AUDIO_NOTE = "usable by video-only methods only"
# The options a resumed run must share with the first one (the frames and spectrograms must agree).
_BINDING = ("format", "version", "frame_size", "fps", "jpeg_quality", "mel")
# skipped.jsonl reasons of files that were never decoded, rewritten from the source listing by every run.
_LISTING_REASONS = {"missing": "missing", NOT_A_VIDEO: "not_a_video_extension", OUTSIDE_SPLITS: "outside_split_folders"}
_NOT_A_FILE = "not_a_regular_file"
_LISTING_REASON_CODES = {*_LISTING_REASONS.values(), _NOT_A_FILE}
_CACHE_NAMES = {C.INDEX, C.SKIPPED, C.META, C.SETTINGS, C.REPORT, C.SHARDS}

# State of a worker process (or of the parent with workers=0), set by _init_worker.
_writer: C.ShardWriter | None = None
_options: dict = {}


def _init_worker(shard_dir: str, run_id: str, options: dict, ignore_sigint: bool) -> None:
    global _writer, _options
    if ignore_sigint:  # Ctrl-C is the parent's to handle; it stops the workers itself
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        torch.set_num_threads(1)  # one process per core already; threads would only compete
    _writer = C.ShardWriter(Path(shard_dir), f"{run_id}-{os.getpid()}")
    _options = options


def _skip(path: str, reason: str, message: str, video_only: bool = False) -> dict:
    record = {"path": path, "reason": reason, "message": message}
    if video_only:  # kept in the index without audio, listed here so the report names it
        record["video_only"] = True
    return record


def _prepare_one(item: VideoItem) -> dict:
    """Decode one video into this process's shard. Returns ``{"entry": dict | None, "skip": dict | None}``."""
    opts = _options
    mel_settings = MelSettings(**opts["mel"])
    size = tuple(opts["frame_size"])
    try:
        info = probe(item.path)
        mel, audio_skip = None, None
        if not info.has_audio:
            audio_skip = _skip(item.path, "no_audio_stream", f"no audio stream: {NO_AUDIO_NOTE}", True)
        else:
            try:
                mel = log_mel(read_audio(item.path, mel_settings.sample_rate), mel_settings)
            except DecodeError as error:
                audio_skip = _skip(item.path, error.reason, f"audio: {error.detail}: {NO_AUDIO_NOTE}", True)
        frames = (C.encode_frame(f, opts["quality"]) for f in iter_frames(item.path, size=size, fps=opts["fps"]))
        location = _writer.write_video(frames, mel)
    except DecodeError as error:
        return {"entry": None, "skip": _skip(item.path, error.reason, error.detail)}
    except Exception as error:  # an unexpected failure on one file must not stop a long prepare
        return {"entry": None, "skip": _skip(item.path, "error", f"{type(error).__name__}: {error}")}
    if location["num_frames"] < opts["min_frames"]:
        _writer.discard(location)
        return {
            "entry": None,
            "skip": _skip(
                item.path, "too_short", f"{location['num_frames']} frames, fewer than --min-frames {opts['min_frames']}"
            ),
        }
    # The stored frames' rate: --fps, else the stream's, else (no rate in the container) frames / duration.
    fps = float(opts["fps"] or info.fps or (location["num_frames"] / info.duration if info.duration > 0 else 0.0))
    entry = {
        "path": item.path,
        "label": item.label,
        "split": item.split,
        "num_frames": location["num_frames"],
        "fps": fps,
        "duration": location["num_frames"] / fps if fps > 0 else info.duration,
        "has_audio": mel is not None,
        **{
            k: location[k]
            for k in ("mel_frames", "shard", "offset", "table_offset", "mel_offset", "stats_offset", "size")
        },
    }
    return {"entry": entry, "skip": audio_skip}


def _settings(size: tuple[int, int], fps: float | None, quality: int) -> dict:
    return {
        "format": C.FORMAT,
        "version": C.VERSION,
        "frame_size": [int(size[0]), int(size[1])],
        "fps": fps,
        "jpeg_quality": int(quality),
        "mel": dataclasses.asdict(MelSettings()),
    }


def _check_settings(out: Path, settings: dict) -> None:
    """First run: record the settings. Later runs: they must match (frames of one size, one quality...)."""
    path = out / C.SETTINGS
    if not path.exists():
        fileio.write_json(path, settings, indent=1)
        return
    import json

    old = json.loads(path.read_text())
    changed = [k for k in _BINDING if old.get(k) != settings.get(k)]
    if changed:
        what = ", ".join(f"{k} {old.get(k)!r} (now {settings.get(k)!r})" for k in changed)
        raise UserError(f"{out} was prepared with {what}; run with the same options to resume, or use a new OUT folder")


def _is_cache(out: Path) -> bool:
    import json

    try:
        return json.loads((out / C.SETTINGS).read_text()).get("format") == C.FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _check_out(src: Path, out: Path) -> None:
    """OUT must be new, empty, or a cache (to resume or extend): never the videos' folder or one of theirs."""
    src_abs, out_abs = src.resolve(), out.resolve()
    if src.is_dir() and (out_abs == src_abs or src_abs in out_abs.parents):
        where = "SRC itself" if out_abs == src_abs else f"inside the video folder {src}"
        raise UserError(f"OUT {out} is {where}; write the cache to a new folder outside the videos")
    if out_abs in src_abs.parents:
        raise UserError(f"OUT {out} holds SRC {src}; write the cache to a new folder outside the videos")
    if out.exists() and not out.is_dir():
        raise UserError(f"OUT {out} is a file; give a new or empty folder for the cache")
    if not out.is_dir() or _is_cache(out):
        return
    # A run killed before it wrote settings.json leaves at most some of the cache's own names.
    others = sorted(
        e.name
        for e in out.iterdir()
        if not is_hidden(e.name) and e.name not in _CACHE_NAMES and e.name.removesuffix(".tmp") not in _CACHE_NAMES
    )
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise UserError(
            f"OUT {out} is neither empty nor a prepared cache (it holds {shown}); "
            f"give a new or empty folder for the cache, outside the videos"
        )


def _listing_records(missing: list[tuple[str, str]], ignored: list[tuple[str, str]]) -> list[dict]:
    records = [_skip(path, "missing", message) for path, message in missing]
    for path, why in ignored:
        records.append(_skip(path, _LISTING_REASONS.get(why, _NOT_A_FILE), why))
    return records


def _rewrite_listing(path: Path, records: list[dict]) -> None:
    """Keep the decoding results of ``skipped.jsonl``; replace its listing lines by this run's ``records``."""
    kept = [r for r in C.read_jsonl(path) if r.get("reason") not in _LISTING_REASON_CODES]

    def write(f) -> None:
        for record in [*kept, *records]:
            fileio.append_jsonl(f, record, durable=False)  # the whole file is fsynced once, then renamed

    fileio.atomic_write(path, write, binary=False)


def _lock(out: Path):
    handle = open(out / ".lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise UserError(f"{out}: another `avcl prepare` is writing this folder; wait for it or use another OUT")
    return handle


def _stop_workers(executor: cf.ProcessPoolExecutor) -> None:
    executor.shutdown(wait=False, cancel_futures=True)
    # No public way to stop busy workers before Python 3.14 (terminate_workers): they would finish their
    # current video first, whose bytes are unreferenced anyway.
    if hasattr(executor, "terminate_workers"):
        executor.terminate_workers()
        return
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        process.terminate()


def _results(pending: list[VideoItem], workers: int, shard_dir: Path, run_id: str, options: dict):
    """Yield ``(item, result)`` as videos finish, with at most ``2 * workers`` in flight."""
    if workers == 0:
        _init_worker(str(shard_dir), run_id, options, ignore_sigint=False)
        try:
            for item in pending:
                yield item, _prepare_one(item)
        finally:
            _writer.close()
        return
    # spawn: workers start clean, whatever threads (torch, tqdm) the calling process already runs.
    executor = cf.ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(str(shard_dir), run_id, options, True),
    )
    queue = iter(pending)
    in_flight: dict[cf.Future, VideoItem] = {}
    finished = 0
    try:
        while True:
            while len(in_flight) < 2 * workers:
                item = next(queue, None)
                if item is None:
                    break
                in_flight[executor.submit(_prepare_one, item)] = item
            if not in_flight:
                break
            done, _ = cf.wait(in_flight, return_when=cf.FIRST_COMPLETED)
            for future in done:
                item = in_flight.pop(future)
                try:
                    result = future.result()
                except cf.process.BrokenProcessPool as error:
                    if finished == 0:  # e.g. a script read from stdin, which spawned processes cannot import
                        raise UserError(
                            "the worker processes stopped before finishing any video (see the error above); "
                            "workers=0 (--workers 0) prepares in this process"
                        ) from error
                    busy = ", ".join(sorted(i.path for i in [item, *in_flight.values()])[:4])
                    raise UserError(
                        f"a worker process died while preparing one of: {busy}; what was finished is kept, "
                        f"run the same command again to resume (--workers 1 shows which file kills it)"
                    ) from error
                finished += 1
                yield item, result
    except BaseException:
        _stop_workers(executor)
        raise
    executor.shutdown(wait=True)


def prepare(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    size: tuple[int, int] = (128, 171),
    fps: float | None = None,
    quality: int = DEFAULT_QUALITY,
    workers: int | None = None,
    min_frames: int = 16,
    videos_root: str | os.PathLike | None = None,
    progress: bool = True,
    classes: str | os.PathLike | None = None,
    official: OfficialSplits | None = None,
) -> dict:
    """Decode the videos of ``src`` (class folders or a CSV, see ``avcl.data.sources``) into the cache ``out``.

    ``size``: (height, width) of the stored frames; ``fps``: resample to this rate (None keeps the source
    frames); ``quality``: JPEG quality 1-100; ``workers``: processes (None: one per core, 0: this
    process); ``min_frames``: shorter videos are skipped; ``classes``: a packaged class list
    (``kinetics_sounds_32``, ``kinetics_sounds_100``) or a list file, keeping only those classes;
    ``official``: read ``src`` (a folder of videos) from UCF101/HMDB51 split files. Resumes an
    interrupted run on the same ``out``.
    Returns the summary that is also written to ``out/report.json``.
    """
    started = time.perf_counter()
    if not 1 <= quality <= 100:
        raise UserError(f"--quality must be within 1..100, got {quality}")
    if min(size) < 1 or fps is not None and fps <= 0:
        raise UserError(f"--size must be positive and --fps positive, got size {size}, fps {fps}")
    workers = (os.cpu_count() or 1) if workers is None else max(int(workers), 0)
    listing = _list_videos(src, videos_root, classes, official)
    out = Path(out)
    _check_out(Path(src), out)
    shard_dir = out / C.SHARDS
    shard_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock(out)
    try:
        settings = _settings(size, fps, quality)
        _check_settings(out, settings)
        (out / C.META).unlink(missing_ok=True)  # unfinished until this run completes
        pending, orphans = _resume(out, listing)
        options = {**settings, "quality": quality, "min_frames": min_frames}
        new = _prepare_pending(out, listing, pending, workers, options, progress)
        # The workers have exited: drop a shard that holds no video (every video its worker tried failed).
        C.trim_shards(shard_dir, C.read_jsonl(out / C.INDEX))
        summary = _finish(out, src, listing, settings, new, orphans, classes, started)
        fileio.write_json(out / C.REPORT, summary, indent=1)
    finally:
        lock.close()
    if progress:
        print(format_summary(summary))
    return summary


def _list_videos(src, videos_root, classes, official) -> SourceListing:
    """The source listing (videos, missing and ignored files); refuses a source without any video."""
    wanted = load_class_list(classes) if classes is not None else None
    listing = list_source(src, videos_root, classes=wanted, official=official)
    if not listing.items:
        missing, ignored = listing.missing, listing.ignored
        detail = f"; {len(missing)} listed files are missing, e.g. {missing[0][0]}" if missing else ""
        if ignored:
            detail += f"; {_files(len(ignored))} ignored ({_examples(ignored)}); the video extensions are " + " ".join(
                sorted(VIDEO_EXTENSIONS)
            )
        raise UserError(f"{src}: no video files found{detail}")
    return listing


def _resume(out: Path, listing: SourceListing) -> tuple[list[VideoItem], tuple[int, int]]:
    """Make the cache ``out`` ready to append to and return the videos still to prepare, with the
    ``(bytes, shard files)`` of the orphaned shard tails that a killed run left and that were cut."""
    index_path, skipped_path = out / C.INDEX, out / C.SKIPPED
    fileio.cut_torn_line(index_path)
    fileio.cut_torn_line(skipped_path)
    _rewrite_listing(skipped_path, _listing_records(listing.missing, listing.ignored))
    indexed = C.read_jsonl(index_path)
    # Bytes a killed run wrote after the last indexed video of a shard; no process writes them now.
    orphans = C.trim_shards(out / C.SHARDS, indexed)
    # Done: in the index, or skipped as unusable. A video-only line without its index line (killed
    # between the two appends) is prepared again; the report keeps one line per path.
    done = {r["path"] for r in indexed}
    done |= {r["path"] for r in C.read_jsonl(skipped_path) if not r.get("video_only")}
    return [item for item in listing.items if item.path not in done], orphans


def _prepare_pending(
    out: Path, listing: SourceListing, pending: list[VideoItem], workers: int, options: dict, progress: bool
) -> int:
    """Decode ``pending`` into the cache, appending each result to the index or the skip list as it
    comes; returns how many videos were prepared."""
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
    new = 0
    bar = progress_bar(
        total=len(listing.items),
        initial=len(listing.items) - len(pending),
        unit="video",
        desc="prepare",
        disable=not progress,
        dynamic_ncols=True,
        smoothing=0.05,
    )
    try:
        with open(out / C.INDEX, "a") as index, open(out / C.SKIPPED, "a") as skipped:
            for item, result in _results(pending, workers, out / C.SHARDS, run_id, options):
                if result["skip"] is not None:
                    fileio.append_jsonl(skipped, result["skip"])
                if result["entry"] is not None:
                    fileio.append_jsonl(index, result["entry"])
                    new += 1
                bar.update()
    except KeyboardInterrupt:
        bar.close()
        print(
            f"interrupted: {new} videos prepared in this run are kept; run the same command to resume",
            file=sys.stderr,
        )
        raise
    bar.close()
    return new


def _finish(
    out: Path, src, listing: SourceListing, settings: dict, new: int, orphans: tuple[int, int], classes, started: float
) -> dict:
    """Write ``meta.json`` (the cache is complete) and return the run's summary (``report.json``)."""
    missing, ignored = listing.missing, listing.ignored
    decoded = [r for r in C.read_jsonl(out / C.SKIPPED) if r["reason"] not in _LISTING_REASON_CODES]
    skip_records = list({r["path"]: r for r in decoded}.values())
    unusable = [r for r in skip_records if not r.get("video_only")]
    meta = C.write_meta(out, settings, class_names(listing.items), skipped=len(unusable))
    counts = meta["counts"]
    return {
        "src": str(src),
        "out": str(out),
        "prepared": counts["videos"],
        "prepared_this_run": new,
        "with_audio": counts["with_audio"],
        "skipped": len(unusable),
        "skipped_by_reason": dict(Counter(r["reason"] for r in unusable)),
        "video_only": counts["videos"] - counts["with_audio"],
        "shorter_than_tcgl_tuple": sum(int(r["num_frames"]) < 64 for r in C.read_jsonl(out / C.INDEX)),  # 3x16 + 2x8
        "missing": len(missing),
        "ignored": len(ignored),
        "ignored_by_reason": dict(Counter(why for _, why in ignored)),
        "hidden_ignored": listing.hidden,
        "orphan_bytes_dropped": orphans[0],
        "orphan_shards_trimmed": orphans[1],
        "classes_selected": str(classes) if classes is not None else None,
        "per_class": listing.per_class(),
        "seconds_of_video": counts["seconds"],
        "bytes": counts["bytes"],
        "bytes_per_10s": meta["bytes_per_10s"],
        "elapsed_seconds": round(time.perf_counter() - started, 2),
        "skipped_files": skip_records,
        "missing_files": [{"path": p, "reason": "missing", "message": m} for p, m in missing],
        "ignored_files": _listing_records([], ignored),  # as in skipped.jsonl: reason code and message
    }


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


def _examples(pairs: list[tuple[str, str]], n: int = 3) -> str:
    """'.m4a 10, .txt 2; e.g. a.m4a, b.m4a, c.txt' for (path, reason) pairs."""
    by_ext = Counter(os.path.splitext(p)[1].lower() or "no extension" for p, _ in pairs)
    kinds = ", ".join(f"{ext} {count}" for ext, count in by_ext.most_common(4))
    if len(by_ext) > 4:
        kinds += ", ..."
    names = ", ".join(os.path.basename(p) for p, _ in pairs[:n]) + (", ..." if len(pairs) > n else "")
    return f"{kinds}; e.g. {names}"


def format_summary(summary: dict) -> str:
    mb = summary["bytes_per_10s"] / 1e6 if summary["bytes_per_10s"] else float("nan")
    lines = [
        f"prepared {summary['prepared']} videos ({summary['prepared_this_run']} in this run, "
        f"{summary['with_audio']} with audio) into {summary['out']} in {summary['elapsed_seconds']:.1f} s; "
        f"{mb:.2f} MB per 10 s of video",
    ]
    for reason, count in sorted(summary["skipped_by_reason"].items()):
        lines.append(f"  skipped {count}: {reason}")
    if summary["video_only"]:
        lines.append(f"  kept without audio ({NO_AUDIO_NOTE}): {summary['video_only']}")
    if summary.get("shorter_than_tcgl_tuple"):
        lines.append(
            "  shorter than a TCGL tuple (64 frames; tcgl.short_videos=skip|loop): "
            f"{summary['shorter_than_tcgl_tuple']}"
        )
    if summary["missing"]:
        names = [os.path.basename(r["path"]) for r in summary.get("missing_files", [])[:3]]
        more = ", ..." if summary["missing"] > len(names) else ""
        lines.append(
            f"  listed but missing: {summary['missing']}" + (f" (e.g. {', '.join(names)}{more})" if names else "")
        )
    ignored = summary.get("ignored_files", [])
    for reason, count in sorted(summary.get("ignored_by_reason", {}).items()):
        pairs = [(r["path"], r["message"]) for r in ignored if r["message"] == reason]
        lines.append(f"  {_files(count)} ignored: {reason} ({_examples(pairs)})")
    if summary.get("orphan_bytes_dropped"):
        shards = summary["orphan_shards_trimmed"]
        lines.append(
            f"  dropped {summary['orphan_bytes_dropped']} bytes that an interrupted run left at the end of "
            f"{shards} shard file{'' if shards == 1 else 's'}"
        )
    if summary.get("classes_selected"):
        lines.append(f"  classes of {summary['classes_selected']}: videos found / listed per split")
        lines += [
            f"    {label}: " + ", ".join(f"{split} {n['found']}/{n['listed']}" for split, n in splits.items())
            for label, splits in summary["per_class"].items()
        ]
    if summary["skipped"] or summary["video_only"] or summary["missing"] or ignored:
        out = Path(summary["out"])
        lines.append(f"  every file and its reason: {out / C.SKIPPED} (and {out / C.REPORT})")
    return "\n".join(lines)
