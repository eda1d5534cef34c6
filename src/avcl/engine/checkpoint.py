"""Checkpoints: written atomically, verified by a sha256 stored in the file, loaded with ``weights_only=True``.

A checkpoint is a plain dict of tensors, numbers, strings and nested dicts/lists, serialised by
``torch.save`` (a zip archive) and followed by a fixed 48-byte trailer::

    bytes 0 .. n-1     the torch.save payload (still a valid PyTorch file: torch.load ignores the trailer)
    n .. n+7           b"AVCLCKPT"
    n+8 .. n+15        n, little-endian uint64
    n+16 .. n+47       sha256 of bytes 0 .. n-1

PyTorch does not check the CRCs of its zip archive, so a file damaged after it was written (flipped
bytes, a bad disk, a partial copy) would otherwise load and silently train on wrong weights. Every load
checks the trailer and the hash of the open file (read through ``mmap``, no copy), and only then
unpickles the same open file with ``torch.load(..., weights_only=True)``, which never executes code
from the file. A damaged or truncated file is refused with a :class:`UserError` that names it and the
newest intact ``epoch-*.pt`` beside it.

Files without the trailer (written by other programs, or by avcl before checkpoints carried a hash)
are refused: their content cannot be verified.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import mmap
import os
import pickle
import re
import struct
from pathlib import Path
from typing import Any

import torch

from avcl.errors import UserError
from avcl.fileio import atomic_write

MAGIC = b"AVCLCKPT"
_TRAILER = struct.Struct("<8sQ32s")
TRAILER_BYTES = _TRAILER.size  # 48


class CheckpointError(UserError):
    """A checkpoint file that cannot be used: damaged, truncated, foreign or holding pickled code."""


# ------------------------------------------------------------------------------------------- writing


def encode_checkpoint(state: dict[str, Any]) -> memoryview:
    """The bytes of a checkpoint file (a view, not a copy): ``torch.save(state)``, then the trailer with
    its sha256. Serialised and hashed once, they can be written to several files."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with buffer.getbuffer() as payload:  # no copy; released before the buffer grows
        length, digest = len(payload), hashlib.sha256(payload).digest()
    buffer.write(_TRAILER.pack(MAGIC, length, digest))
    return buffer.getbuffer()


def write_checkpoint(data: bytes | memoryview, path: str | Path) -> Path:
    """Write encoded checkpoint bytes to ``path`` atomically (:func:`avcl.fileio.atomic_write`): a run
    killed while saving leaves the previous file intact, never a torn one."""
    return atomic_write(path, data)


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Serialise ``state`` with its sha256 and write it to ``path`` atomically (see :func:`write_checkpoint`)."""
    return write_checkpoint(encode_checkpoint(state), path)


# ------------------------------------------------------------------------------------------- reading


def _check(data) -> tuple[bool, str]:
    """Whether a file's bytes (``bytes`` or an ``mmap``) are an intact checkpoint, and if not, why
    (an empty reason: no trailer, the file is not a damaged avcl checkpoint but something else)."""
    if len(data) >= TRAILER_BYTES:
        magic, length, digest = _TRAILER.unpack_from(data, len(data) - TRAILER_BYTES)
        if magic == MAGIC:
            if length != len(data) - TRAILER_BYTES:
                return False, (
                    f"{len(data)} bytes where its trailer records {length + TRAILER_BYTES}: "
                    f"truncated or extended after it was written"
                )
            with memoryview(data) as view, view[:length] as payload:  # no copy of the payload
                if hashlib.sha256(payload).digest() != digest:
                    return False, "its content does not match the sha256 stored in it: damaged after it was written"
            return True, ""
    if data[:4] == b"PK\x03\x04" and not _complete_zip(data):
        return False, f"truncated: {len(data)} bytes, its end (zip directory and sha256 trailer) is missing"
    return False, ""


@contextlib.contextmanager
def _mapped(fh):
    """The bytes of an open file as a read-only mmap (``b""`` for an empty file)."""
    if os.fstat(fh.fileno()).st_size == 0:
        yield b""
        return
    with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        yield mm


def _complete_zip(data: bytes) -> bool:
    """True when ``data`` ends with a zip end-of-central-directory record (how torch.save files end)."""
    return len(data) >= 22 and data[-22:-18] == b"PK\x05\x06"


def is_intact(path: str | Path) -> bool:
    """True when ``path`` is an avcl checkpoint whose content matches its stored sha256."""
    try:
        with open(path, "rb") as fh, _mapped(fh) as data:
            return _check(data)[0]
    except (OSError, ValueError):
        return False


def newest_intact(folder: Path, exclude: Path | None = None) -> Path | None:
    """The ``epoch-*.pt`` of ``folder`` with the highest epoch whose hash checks out."""

    def epoch(p: Path) -> int:
        match = re.fullmatch(r"epoch-(\d+)\.pt", p.name)
        return int(match.group(1)) if match else -1

    candidates = sorted((p for p in folder.glob("epoch-*.pt") if epoch(p) >= 0), key=epoch, reverse=True)
    for candidate in candidates:
        if exclude is not None and candidate.resolve() == exclude.resolve():
            continue
        if is_intact(candidate):
            return candidate
    return None


def _damaged(path: Path, why: str) -> CheckpointError:
    intact = newest_intact(path.parent, exclude=path)
    hint = (
        f"the newest intact checkpoint beside it is {intact} (resume with --resume {intact}, or pass it as "
        f"--checkpoint)"
        if intact
        else f"no intact epoch-*.pt beside it in {path.parent}"
    )
    return CheckpointError(f"{path}: damaged checkpoint, refused ({why}); {hint}")


def _pickled_code(path: Path, exc: Exception) -> CheckpointError:
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    what = f" (it refers to {found.group(1)})" if found else ""
    return CheckpointError(
        f"{path}: a PyTorch file holding pickled Python objects{what}, not only tensors and plain values; "
        f"avcl does not load pickled code, which could run anything: use a checkpoint written by avcl"
    )


def _resolve(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
    if not path.is_file():
        raise UserError(f"{path}: no checkpoint there (expected a .pt file or a run folder with last.pt)")
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`: trailer and sha256 checked first, then
    ``torch.load(weights_only=True)``. A run folder resolves to its ``best.pt``, else ``last.pt``.

    Raises :class:`CheckpointError` (a :class:`UserError`, one line) for a damaged, truncated, foreign or
    code-holding file, naming the file and, for a damaged one, the newest intact ``epoch-*.pt`` beside it.
    """
    path = _resolve(path)
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    # One open file for the check and the load: a checkpoint replaced meanwhile (by a run still writing
    # to this folder) cannot swap unverified bytes in. The hash reads the file through mmap, without a copy.
    with fh:
        with _mapped(fh) as data:
            intact, why = _check(data)
            complete_zip = _complete_zip(data)
        fh.seek(0)
        if not intact:
            if why:
                raise _damaged(path, why)
            if complete_zip:  # a whole PyTorch file, but without avcl's trailer
                try:
                    torch.load(fh, map_location="cpu", weights_only=True)
                except pickle.UnpicklingError as exc:
                    raise _pickled_code(path, exc) from None
                except Exception:
                    pass
                raise CheckpointError(
                    f"{path}: a PyTorch file without avcl's sha256 trailer (written by another program, or by avcl "
                    f"before checkpoints carried one), refused because its content cannot be verified; to adopt a "
                    f"file you trust: avcl.engine.checkpoint.save_checkpoint(torch.load(path, weights_only=True), path)"
                )
            raise CheckpointError(f"{path}: not an avcl checkpoint (not a PyTorch file)")
        try:  # torch.load reads the zip from its end directory and ignores the trailer after it
            return torch.load(fh, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as exc:
            raise _pickled_code(path, exc) from None
        except Exception as exc:  # intact bytes that still do not load: say which file and why
            raise CheckpointError(
                f"{path}: cannot be read as an avcl checkpoint ({exc.__class__.__name__}: {exc})"
            ) from exc
