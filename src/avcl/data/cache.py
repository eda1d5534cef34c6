"""The prepared cache: every video decoded once, stored so that a training sample costs ~2 ms.

A cache is one folder (``docs/cache-format.md`` has the measurements behind the choices)::

    OUT/
      settings.json    the prepare options that every run on this folder must share (written first)
      index.jsonl      one JSON object per prepared video (below)
      skipped.jsonl    one JSON object per unusable file: {"path", "reason", "message"}
      shards/*.bin     append-only binary files holding the frames and spectrograms
      meta.json        written when prepare finishes: sizes, mel settings, classes, audio statistics
      report.json      the summary of the last prepare run

**Index.** The parent process appends a video's line (and flushes and fsyncs it) only after the worker
that wrote the video's bytes has flushed and fsynced its shard. A video counts as prepared exactly when
its index line exists, so an interrupted prepare never leaves an entry pointing at missing bytes; a torn
last line (the process died while writing it) is ignored on read and cut off before the next append.
Fields: ``path, label, split, num_frames, fps, duration, has_audio, mel_frames, shard, offset,
table_offset, mel_offset, stats_offset, size``.

**Shards.** Each worker process of each run writes its own files, named
``<run id>-<pid>-<part>.bin``, so a resumed run never appends after a torn tail. One video is one blob
at ``offset`` in its shard (little-endian)::

    offset        JPEG frame 0, JPEG frame 1, ...            (baseline JPEG, 4:2:0, RGB)
    table_offset  uint64[num_frames + 1]                     frame k is bytes table[k]:table[k+1] after offset
    mel_offset    float16[n_mels, mel_frames]                the log-mel of the whole audio (absent without audio)
    stats_offset  float64[2, n_mels]                         per-band sum and sum of squares over its frames

The table is 8-byte aligned. The bytes of a video that fails half-way (or is too short) are cut off
the shard again; bytes that a killed run left past a shard's last indexed blob are cut by the next run
(``trim_shards``), so every shard ends with the last byte of an indexed video.
"""

from __future__ import annotations

import json
import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from avcl import fileio
from avcl.errors import UserError

FORMAT = "avcl-prepared-cache"
VERSION = 1
INDEX, SKIPPED, META, SETTINGS, REPORT, SHARDS = (
    "index.jsonl",
    "skipped.jsonl",
    "meta.json",
    "settings.json",
    "report.json",
    "shards",
)
DEFAULT_QUALITY = 80  # JPEG quality; docs/cache-format.md has the size and speed measurements
SHARD_BYTES = 2 << 30  # a worker starts a new shard file past 2 GiB, kind to file systems and copy tools
STD_FLOOR = 1e-3  # dB; some mel bands hold a constant floor value (see avcl.data.audio)
_ALIGN = 8


class CacheError(UserError):
    """A folder that is not a (finished, intact) prepared cache."""


# ----------------------------------------------------------------------------------------- JPEG frames


_SIMPLEJPEG = None  # the module once imported, False when it is not installed


def _simplejpeg():
    """simplejpeg (libjpeg-turbo), imported on first use; None where it is not installed (then torchvision
    decodes, e.g. on GPU machines with their own image)."""
    global _SIMPLEJPEG
    if _SIMPLEJPEG is None:
        try:
            import simplejpeg
        except ImportError:
            simplejpeg = False
        _SIMPLEJPEG = simplejpeg
    return _SIMPLEJPEG or None


def encode_frame(frame: np.ndarray, quality: int) -> bytes:
    """(H, W, 3) uint8 RGB -> baseline JPEG bytes with 4:2:0 chroma subsampling (libjpeg-turbo).

    With simplejpeg; without it (a GPU machine's own image) torchvision's ``encode_jpeg``, which also
    writes baseline 4:2:0 JPEG with libjpeg-turbo (not byte-identical: the caches differ slightly)."""
    jpeg = _simplejpeg()
    if jpeg is not None:
        return jpeg.encode_jpeg(np.ascontiguousarray(frame), quality=quality, colorspace="RGB", colorsubsampling="420")
    import torch
    from torchvision.io import encode_jpeg

    return (
        encode_jpeg(torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1), quality=quality).numpy().tobytes()
    )


def decode_frame(data: bytes | memoryview, out: np.ndarray | None = None) -> np.ndarray:
    """JPEG bytes -> (H, W, 3) uint8 RGB, written into ``out`` (C-contiguous) when given.

    simplejpeg, or torchvision's ``decode_jpeg`` where simplejpeg is not installed (both libjpeg-turbo)."""
    jpeg = _simplejpeg()
    if jpeg is not None:
        return jpeg.decode_jpeg(data, colorspace="RGB", buffer=out)
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        image = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except RuntimeError as error:
        raise ValueError(str(error)) from error
    image = image.permute(1, 2, 0).numpy()
    if out is None:
        return np.ascontiguousarray(image)
    if out.shape != image.shape:
        raise ValueError(f"a {image.shape} frame does not fit the buffer {out.shape}")
    out[...] = image
    return out


# ------------------------------------------------------------------------------------------ JSON lines


def read_jsonl(path: Path) -> list[dict]:
    """The records of the cache's JSON-lines file ``path`` (:func:`avcl.fileio.read_jsonl`): a torn last
    line is ignored, a damaged line before it means a damaged cache (:class:`CacheError`)."""
    try:
        return fileio.read_jsonl(path)
    except fileio.JsonLinesError as error:
        raise CacheError(f"{error}; the cache is damaged, prepare it into a new folder") from None


# -------------------------------------------------------------------------------------------- writing


class ShardWriter:
    """Appends videos to the shard files of one process (``<prefix>-<part>.bin`` under ``folder``)."""

    def __init__(self, folder: Path, prefix: str, max_bytes: int = SHARD_BYTES) -> None:
        self.folder = Path(folder)
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.part = 0
        self.file = None

    def _open(self):
        if self.file is None or self.file.tell() >= self.max_bytes:
            if self.file is not None:
                self.file.close()
                self.part += 1
            self.file = open(self.folder / f"{self.prefix}-{self.part}.bin", "ab")
        return self.file

    def _pad(self, f) -> None:
        f.write(b"\0" * (-f.tell() % _ALIGN))

    def write_video(self, jpeg_frames: Iterable[bytes], mel: np.ndarray | None) -> dict:
        """Stream the JPEG frames, then the (n_mels, frames) log-mel, to the shard; flush and fsync.

        Returns the blob's location and counts for the index: ``shard, offset, table_offset, mel_offset,
        stats_offset, size, num_frames, mel_frames``. An exception raised by ``jpeg_frames``
        propagates after the bytes written so far are cut off the shard again.
        """
        f = self._open()
        offset = f.tell()
        try:
            return self._write(f, offset, jpeg_frames, mel)
        except BaseException:
            self._rewind(f, offset)
            raise

    def discard(self, location: dict) -> None:
        """Remove the blob just written at ``location`` (e.g. a video found too short) from the shard end."""
        f = self.file
        if (
            f is not None
            and location["shard"] == f"{self.prefix}-{self.part}.bin"
            and f.tell() == location["offset"] + location["size"]
        ):
            self._rewind(f, location["offset"])

    @staticmethod
    def _rewind(f, offset: int) -> None:
        try:
            f.truncate(offset)  # flushes what is buffered first
            f.seek(offset)  # append mode: the next write lands at the (new) end anyway; tell() must agree
        except OSError:
            pass  # e.g. a full disk: the bytes stay unreferenced, the next run's trim_shards cuts them

    def _write(self, f, offset: int, jpeg_frames: Iterable[bytes], mel: np.ndarray | None) -> dict:
        ends = [0]
        for data in jpeg_frames:
            f.write(data)
            ends.append(ends[-1] + len(data))
        self._pad(f)
        table_offset = f.tell()
        f.write(np.asarray(ends, dtype="<u8").tobytes())
        location = {
            "shard": f"{self.prefix}-{self.part}.bin",
            "offset": offset,
            "table_offset": table_offset,
            "mel_offset": None,
            "stats_offset": None,
            "num_frames": len(ends) - 1,
            "mel_frames": 0,
        }
        if mel is not None:
            mel16 = np.ascontiguousarray(mel, dtype="<f2")
            location["mel_offset"] = f.tell()
            f.write(mel16.tobytes())
            self._pad(f)
            values = mel16.astype(np.float64)
            stats = np.stack([values.sum(axis=1), np.square(values).sum(axis=1)])
            location["stats_offset"] = f.tell()
            f.write(stats.astype("<f8").tobytes())
            location["mel_frames"] = int(mel16.shape[1])
        f.flush()
        os.fsync(f.fileno())
        location["size"] = f.tell() - offset
        return location

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def trim_shards(folder: Path, records: list[dict]) -> tuple[int, int]:
    """Cut the bytes past the last indexed blob of each shard under ``folder``; remove unindexed shards.

    Such bytes belong to videos whose index line was never written: a run killed while a worker wrote,
    or a video that failed half-way at a shard's end. Call it only while no process writes ``folder``.
    Returns ``(bytes dropped, shard files changed)``.
    """
    ends: dict[str, int] = {}
    for r in records:
        ends[r["shard"]] = max(ends.get(r["shard"], 0), int(r["offset"]) + int(r["size"]))
    dropped = changed = 0
    for path in sorted(Path(folder).glob("*.bin")):
        size = path.stat().st_size
        end = ends.get(path.name)
        if end is None:
            path.unlink()
        elif size > end:
            with open(path, "r+b") as f:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
        else:
            continue
        dropped += size - (end or 0)
        changed += 1
    return dropped, changed


# -------------------------------------------------------------------------------------------- reading


@dataclass
class CacheEntries:
    """The index as columns, one row per prepared video (rows sorted by path, so stable across runs)."""

    path: np.ndarray  # object (str)
    label: np.ndarray  # int64 class id, -1 when unlabelled
    label_name: np.ndarray  # object (str or None)
    split: np.ndarray  # object (str or None)
    num_frames: np.ndarray  # int64
    fps: np.ndarray  # float64
    duration: np.ndarray  # float64 seconds
    has_audio: np.ndarray  # bool
    mel_frames: np.ndarray  # int64
    shard: np.ndarray  # int32, position in PreparedCache.shard_names
    offset: np.ndarray  # int64
    table_offset: np.ndarray  # int64
    mel_offset: np.ndarray  # int64, -1 without audio
    stats_offset: np.ndarray  # int64, -1 without audio
    size: np.ndarray  # int64 bytes of the blob

    def __len__(self) -> int:
        return len(self.path)


def entries_from_records(records: list[dict], classes: list[str]) -> tuple[CacheEntries, list[str]]:
    """Columns from index records (sorted by path) and the list of shard names they refer to."""
    records = sorted(records, key=lambda r: r["path"])
    class_id = {name: i for i, name in enumerate(classes)}
    shard_names = sorted({r["shard"] for r in records})
    shard_id = {name: i for i, name in enumerate(shard_names)}

    def column(key: str, dtype, default=None) -> np.ndarray:
        values = [default if r.get(key) is None else r[key] for r in records]
        return np.array(values, dtype=dtype) if values else np.zeros(0, dtype=dtype)

    def objects(values: list) -> np.ndarray:
        array = np.empty(len(values), dtype=object)
        array[:] = values
        return array

    entries = CacheEntries(
        path=objects([r["path"] for r in records]),
        label=np.array([class_id.get(r.get("label"), -1) for r in records], dtype=np.int64),
        label_name=objects([r.get("label") for r in records]),
        split=objects([r.get("split") for r in records]),
        num_frames=column("num_frames", np.int64),
        fps=column("fps", np.float64),
        duration=column("duration", np.float64),
        has_audio=column("has_audio", bool),
        mel_frames=column("mel_frames", np.int64, 0),
        shard=np.array([shard_id[r["shard"]] for r in records], dtype=np.int32),
        offset=column("offset", np.int64),
        table_offset=column("table_offset", np.int64),
        mel_offset=column("mel_offset", np.int64, -1),
        stats_offset=column("stats_offset", np.int64, -1),
        size=column("size", np.int64),
    )
    return entries, shard_names


class _Shards:
    """Read-only memory maps of shard files, opened lazily and again after a fork (pickles cheaply)."""

    def __init__(self, folder: Path, names: list[str]) -> None:
        self.folder = folder
        self.names = names
        self._maps: dict[int, memoryview] = {}
        self._pid = os.getpid()

    def __getstate__(self) -> dict:
        return {"folder": self.folder, "names": self.names}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["folder"], state["names"])

    def view(self, shard: int, start: int, stop: int) -> memoryview:
        """Bytes ``start:stop`` of shard ``shard`` without copying."""
        if self._pid != os.getpid():  # a forked worker must not share the parent's maps
            self._maps, self._pid = {}, os.getpid()
        data = self._maps.get(shard)
        if data is None:
            path = self.folder / self.names[shard]
            try:
                with open(path, "rb") as f:
                    data = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
            except (OSError, ValueError) as error:
                raise CacheError(f"{path}: cannot open the shard ({error}); the cache is incomplete") from error
            self._maps[shard] = data
        if stop > len(data):
            raise CacheError(
                f"{self.folder / self.names[shard]}: holds {len(data)} bytes but the index refers to byte {stop}; "
                f"the shard was truncated or replaced, prepare the cache into a new folder"
            )
        return data[start:stop]


def _not_finished(root: Path) -> CacheError:
    if (root / INDEX).exists():
        return CacheError(
            f"{root} is not a finished prepared cache (no {META}): `avcl prepare` was interrupted; "
            f"run `avcl prepare SRC {root}` again with the same SRC to resume it"
        )
    if any(not e.name.startswith(".") for e in root.iterdir()):  # e.g. the videos: never write the cache there
        return CacheError(
            f"{root} is not a prepared cache (no {INDEX} or {META}); if it holds videos, prepare them "
            f"into a new folder with `avcl prepare {root} NEW_FOLDER` and use NEW_FOLDER"
        )
    return CacheError(
        f"{root} is not a prepared cache (no {INDEX} or {META}); create it with `avcl prepare SRC {root}`"
    )


class PreparedCache:
    """Reader of a finished cache. Rows are sorted by path; ``entries`` holds the index as columns.

    Pickling sends only the folder, the metadata and the columns: each DataLoader worker maps the shard
    files itself on first use.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise CacheError(f"{self.root}: no such folder; create it with `avcl prepare SRC {self.root}`")
        meta_path = self.root / META
        if not meta_path.exists():
            raise _not_finished(self.root)
        try:
            self.meta: dict = json.loads(meta_path.read_text())
        except json.JSONDecodeError as error:
            raise CacheError(
                f"{meta_path}: not valid JSON ({error}); run `avcl prepare` again to rewrite it"
            ) from error
        if self.meta.get("format") != FORMAT:
            raise CacheError(f"{meta_path}: not written by `avcl prepare` (format {self.meta.get('format')!r})")
        if self.meta.get("version") != VERSION:
            raise CacheError(
                f"{self.root}: cache format version {self.meta.get('version')}, this avcl reads version {VERSION}; "
                f"prepare the videos again into a new folder"
            )
        records = read_jsonl(self.root / INDEX)
        expected = self.meta["counts"]["videos"]
        if len(records) != expected:
            raise CacheError(
                f"{self.root}: {INDEX} holds {len(records)} videos but {META} says {expected}; a prepare run was "
                f"interrupted after it finished once: run `avcl prepare SRC {self.root}` again to complete it"
            )
        self.classes: list[str] = list(self.meta["classes"])
        self.entries, shard_names = entries_from_records(records, self.classes)
        self._shards = _Shards(self.root / SHARDS, shard_names)
        self.frame_size: tuple[int, int] = tuple(self.meta["frame_size"])
        self.audio_mean = np.asarray(self.meta["audio_mean"], dtype=np.float32)  # (n_mels,)
        self.audio_std = np.asarray(self.meta["audio_std"], dtype=np.float32)  # (n_mels,)
        self.mel_fps = 1.0 / self.meta["hop_seconds"]  # spectrogram frames per second (100)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def shard_names(self) -> list[str]:
        return self._shards.names

    def check_shards(self, rows: np.ndarray | None = None) -> None:
        """Raise :class:`CacheError` naming the first shard that ``rows`` (default: every row) need and that
        is missing or shorter than the index's offsets say. A stat per shard: cheap enough for every run,
        and it turns what would otherwise fail inside a DataLoader worker into one clear line up front."""
        e = self.entries
        rows = np.arange(len(self)) if rows is None else np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return
        ends = np.zeros(len(self.shard_names), dtype=np.int64)
        np.maximum.at(ends, e.shard[rows], e.offset[rows] + e.size[rows])
        used = np.zeros(len(self.shard_names), dtype=bool)
        used[e.shard[rows]] = True
        for shard in np.flatnonzero(used):
            path = self.root / SHARDS / self.shard_names[shard]
            try:
                size = path.stat().st_size
            except OSError as error:
                videos = int(np.sum(e.shard[rows] == shard))
                raise CacheError(
                    f"{path}: missing or unreadable ({error.strerror or error}) but the index refers to it "
                    f"({videos} videos); the cache is incomplete, prepare it into a new folder"
                ) from None
            if size < ends[shard]:
                raise CacheError(
                    f"{path}: holds {size} bytes but the index refers to byte {int(ends[shard])}; "
                    f"the shard was truncated or replaced, prepare the cache into a new folder"
                )

    def splits(self) -> list[str]:
        return sorted({s for s in self.entries.split if s is not None})

    def indices(self, split: str | None = None) -> np.ndarray:
        """int64 rows of ``split`` (``None`` or ``"all"``: every row); empty for a split the cache lacks."""
        if split is None or split == "all":
            return np.arange(len(self), dtype=np.int64)
        return np.flatnonzero(self.entries.split == split).astype(np.int64)

    def _check_row(self, i: int) -> int:
        if not 0 <= i < len(self):
            raise IndexError(f"row {i} out of range for the cache {self.root} of {len(self)} videos")
        return int(i)

    def frame_table(self, i: int) -> np.ndarray:
        """uint64 (num_frames + 1,): byte offsets of row ``i``'s JPEG frames from its blob's start."""
        e = self.entries
        i = self._check_row(i)
        n = int(e.num_frames[i]) + 1
        start = int(e.table_offset[i])
        return np.frombuffer(self._shards.view(int(e.shard[i]), start, start + 8 * n), dtype="<u8")

    def _frame_ids(self, i: int, frame_ids: Iterable[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row ``i``'s frame table and ``frame_ids`` as (N,) int64, checked against its frame count."""
        table = self.frame_table(i)
        ids = np.asarray(frame_ids, dtype=np.int64).reshape(-1)
        n = len(table) - 1
        listed = ids.tolist()  # Python's min and max on a clip's ids cost less than numpy's reductions
        if listed and (min(listed) < 0 or max(listed) >= n):
            raise IndexError(
                f"frame ids {min(listed)}..{max(listed)} out of range for {self.entries.path[i]} ({n} frames)"
            )
        return table, ids

    def read_frames(self, i: int, frame_ids: Iterable[int] | np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(len(frame_ids), H, W, 3) uint8 RGB frames of row ``i``, decoded into ``out`` when given (a
        C-contiguous uint8 array of that shape, e.g. a reused buffer)."""
        e = self.entries
        table, ids = self._frame_ids(i, frame_ids)
        height, width = self.frame_size
        if out is None:
            out = np.empty((len(ids), height, width, 3), dtype=np.uint8)
        if not len(ids):
            return out
        shard, base = int(e.shard[i]), int(e.offset[i])
        starts, ends = table[ids].tolist(), table[ids + 1].tolist()
        lo = min(starts)
        blob = self._shards.view(shard, base + lo, base + max(ends))  # one bounds check and slice for the clip
        for k, (start, end) in enumerate(zip(starts, ends)):
            try:
                decode_frame(blob[start - lo : end - lo], out[k])
            except ValueError as error:
                raise CacheError(
                    f"{self.root / SHARDS / self.shard_names[shard]}: frame {ids[k]} of {e.path[i]} is not a valid "
                    f"JPEG ({error}); the cache is damaged, prepare it into a new folder"
                ) from error
        return out

    def frame_bytes(self, i: int, frame_ids: Iterable[int] | np.ndarray) -> list[bytes]:
        """The JPEG bytes of row ``i``'s frames ``frame_ids`` (for decoding elsewhere, e.g. on a GPU)."""
        table, ids = self._frame_ids(i, frame_ids)
        e = self.entries
        shard, base = int(e.shard[i]), int(e.offset[i])
        return [bytes(self._shards.view(shard, base + int(table[f]), base + int(table[f + 1]))) for f in ids]

    def mel_view(self, i: int) -> np.ndarray:
        """(n_mels, mel_frames) float16 read-only view of row ``i``'s log-mel (dB) in its shard."""
        e = self.entries
        i = self._check_row(i)
        if not e.has_audio[i]:
            raise ValueError(f"{e.path[i]} has no audio track; select rows with entries.has_audio")
        n_mels, frames = self.meta["mel"]["n_mels"], int(e.mel_frames[i])
        start = int(e.mel_offset[i])
        data = self._shards.view(int(e.shard[i]), start, start + 2 * n_mels * frames)
        return np.frombuffer(data, dtype="<f2").reshape(n_mels, frames)

    def read_mel(self, i: int) -> np.ndarray:
        """(n_mels, mel_frames) float32 log-mel (dB) of the whole audio of row ``i``, not normalised."""
        return self.mel_view(i).astype(np.float32)

    def mel_stats(self, i: int) -> np.ndarray:
        """(2, n_mels) float64: per-band sum and sum of squares over row ``i``'s mel frames."""
        e = self.entries
        n_mels = self.meta["mel"]["n_mels"]
        start = int(e.stats_offset[self._check_row(i)])
        if start < 0:
            raise ValueError(f"{e.path[i]} has no audio track")
        return np.frombuffer(self._shards.view(int(e.shard[i]), start, start + 16 * n_mels), dtype="<f8").reshape(
            2, n_mels
        )


def band_statistics(total: np.ndarray, count: int, n_mels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and std (floored at ``STD_FLOOR``) from ``total = [sum, sum of squares]`` over ``count``
    spectrogram frames; zeros and ones when there are none."""
    if not count:
        return np.zeros(n_mels), np.ones(n_mels)
    mean = total[0] / count
    return mean, np.maximum(np.sqrt(np.maximum(total[1] / count - mean**2, 0.0)), STD_FLOOR)


def write_meta(root: Path, settings: dict, classes: list[str], skipped: int) -> dict:
    """Finish a cache: compute the audio statistics and counts from the index, write ``meta.json``.

    The per-band mean and std come from the per-video sums stored beside each spectrogram, over the
    ``train`` split when the cache has one (so that no test audio shapes the normalisation), else over
    every video with audio. Returns the metadata.
    """
    root = Path(root)
    records = read_jsonl(root / INDEX)
    classes = sorted(set(classes) | {r["label"] for r in records if r.get("label") is not None})
    entries, shard_names = entries_from_records(records, classes)
    shards = _Shards(root / SHARDS, shard_names)
    n_mels = settings["mel"]["n_mels"]
    use = entries.has_audio.copy()
    stats_split = "train" if np.any(use & (entries.split == "train")) else None
    if stats_split:
        use &= entries.split == stats_split
    total = np.zeros((2, n_mels), dtype=np.float64)
    for i in np.flatnonzero(use):
        start = int(entries.stats_offset[i])
        total += np.frombuffer(shards.view(int(entries.shard[i]), start, start + 16 * n_mels), dtype="<f8").reshape(
            2, n_mels
        )
    mean, std = band_statistics(total, int(entries.mel_frames[use].sum()), n_mels)
    seconds = float(entries.duration.sum())
    size = int(entries.size.sum())
    meta = {
        **settings,
        "hop_seconds": settings["mel"]["hop_length"] / settings["mel"]["sample_rate"],
        "classes": classes,
        "audio_mean": [round(float(v), 5) for v in mean],
        "audio_std": [round(float(v), 5) for v in std],
        "audio_stats_split": stats_split,
        "counts": {
            "videos": len(entries),
            "with_audio": int(entries.has_audio.sum()),
            "skipped": skipped,
            "frames": int(entries.num_frames.sum()),
            "seconds": round(seconds, 3),
            "bytes": size,
        },
        "bytes_per_10s": round(size / seconds * 10.0) if seconds > 0 else None,
    }
    fileio.write_json(root / META, meta, indent=1)
    return meta
