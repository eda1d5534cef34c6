"""The synthetic audio-visual action benchmark (``avcl synth``).

Every class is a pair (visual action pattern, sound timbre). The patterns: ``bounce`` (a ball hits the
floor), ``slide`` (a block hits one wall, then the other), ``swing`` (a pendulum strikes a post) and
``pulse`` (the object swells and lights up). The timbres of the impacts: ``bell``, ``drum``, ``pluck`` (a
plucked string) and ``clap``. Every pattern occurs with several timbres and every timbre with several
patterns (the default 8 classes: 4 patterns x 2 timbres). The class is what the modalities share: the
object's shape follows the timbre (:data:`SHAPE_OF_SOUND`), and one texture sound, the same for every
pattern, bursts at a pattern-specific phase of the visible motion (:data:`TEXTURE_PHASE`,
``sound_code="timing"``), each with probability ``cue``; ``cue=0`` makes the two modalities independent
at class level. Each impact sound starts exactly at the frame of its visual event. The nuisances are
modality-specific and drawn per video, each scaled by a knob: ``look`` (colours around a fixed
palette), ``size``, ``distractors``, ``ambient``, ``event_rate``, ``difficulty`` (noise, jitter, ranges).

The videos are real files: lossless H.264 (yuv420p) video and mono AAC audio in .mp4, laid out like
Kinetics, ``OUT/{train,val,test}/<class>/<class>_<index>.mp4``, with ``OUT/manifest.csv`` (including
hashes of each file's decoded media), ``OUT/classes.txt`` and ``OUT/synth.json`` (the generation
settings). Everything follows from the seed: the video of class ``c`` and index ``i`` is drawn from
``SeedSequence([seed, c, i])``, whatever the worker count or the number of classes asked for, and its
decoded frames and audio are the same on every machine (:func:`media_hashes`, :func:`verify_benchmark`).
``docs/synthetic-benchmark.md`` describes the design.
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import hashlib
import json
import math
import multiprocessing
import os
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np

from avcl.errors import UserError
from avcl.progress import progress as progress_bar

PATTERNS = ("bounce", "slide", "swing", "pulse")
SOUNDS = ("bell", "drum", "pluck", "clap")

# The fixed class order. Any prefix keeps the grid as complete as it can be: from 3 classes on, some
# classes share a pattern and others a timbre; the first 4 form a 2x2 grid, the first 8 (the default)
# 4 patterns x 2 timbres, the first 12 4 patterns x 3 timbres, all 16 the full 4x4 grid.
_CLASS_ORDER: tuple[tuple[str, str], ...] = (
    ("bounce", "bell"),
    ("slide", "drum"),
    ("bounce", "drum"),
    ("slide", "bell"),
    ("swing", "bell"),
    ("swing", "drum"),
    ("pulse", "bell"),
    ("pulse", "drum"),
    ("bounce", "pluck"),
    ("slide", "pluck"),
    ("swing", "pluck"),
    ("pulse", "pluck"),
    ("bounce", "clap"),
    ("slide", "clap"),
    ("swing", "clap"),
    ("pulse", "clap"),
)
MAX_CLASSES = len(_CLASS_ORDER)
SPLITS = ("train", "val", "test")
# How the sound codes the motion pattern (``sound_code``): "timing", one shared texture sound whose
# loudness follows the motion of the pattern (the pattern is in *when* it is loud, not in its spectrum);
# "spectrum", a texture of its own per pattern (TEXTURE_OF_PATTERN: whistle, scrape, whoosh, hum).
SOUND_CODES = ("timing", "spectrum")
MANIFEST_COLUMNS = (
    "path",
    "label",
    "split",
    "pattern",
    "sound",
    "frames",
    "duration",
    "events",
    "shape",
    "texture",
    "video_sha256",
    "audio_sha256",
)
# The cross-modal class cues: the shape that shows a timbre, and the sound texture that a pattern makes.
SHAPE_OF_SOUND = {"bell": "disc", "drum": "square", "pluck": "triangle", "clap": "diamond"}
TEXTURE_OF_PATTERN = {"bounce": "whistle", "slide": "scrape", "swing": "whoosh", "pulse": "hum"}
# Sample rates that AAC in MP4 can carry.
AAC_SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
_MARKER = "synth.json"


def class_names(classes: int) -> list[str]:
    """Names (``pattern-sound``) of the first ``classes`` classes of the fixed order; the position is the label."""
    if not 2 <= classes <= MAX_CLASSES:
        raise UserError(f"the synthetic benchmark has 2 to {MAX_CLASSES} classes, not {classes}")
    return [f"{pattern}-{sound}" for pattern, sound in _CLASS_ORDER[:classes]]


# ---------------------------------------------------------------------------------------------------
# One video: frames, audio and event times, all drawn from one random generator.


@dataclass(frozen=True)
class _VideoJob:
    """Everything a worker needs to write one video (picklable)."""

    path: str
    class_index: int
    index: int
    seed: int
    height: int
    width: int
    fps: int
    min_duration: float
    max_duration: float
    difficulty: float
    sample_rate: int
    cue: float
    look: float = 0.35
    size: float = 1.5
    distractors: int = 0
    ambient: float = 0.05
    sound_code: str = "timing"
    event_rate: float = 0.8


@dataclass
class _Clip:
    """One rendered video, before encoding."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    audio: np.ndarray  # (S,) float32 in [-1, 1], S = T * sample_rate / fps
    events: list[int]  # frame indices of the visual events, which are also the sound onsets
    shape: str  # the object's shape
    texture: str  # the sound texture that follows the motion (a value of TEXTURE_OF_PATTERN)


def _event_schedule(
    rng: np.random.Generator, num_frames: int, fps: int, difficulty: float, event_rate: float = 0.8
) -> np.ndarray:
    """Impact frames that recur over the whole clip, one interval apart (``1 / event_rate`` seconds times
    0.8-1.25 per video, jittered per impact by 10 % (difficulty 0) to 35 % (difficulty 1)), at least 3
    frames apart.

    Returns ``(N,)`` increasing frames: a virtual impact before the clip (frame -1 or earlier), the
    impacts inside it, and a virtual one at or after its end, so every instant of the clip lies between
    two impacts (see :func:`_schedule_at`).
    """
    base = rng.uniform(0.8, 1.25) * fps / event_rate
    jitter = 0.1 + 0.25 * difficulty
    first = int(rng.integers(1, max(2, min(round(base), num_frames // 2)) + 1))
    starts = [min(-1, first - max(3, round(base * rng.uniform(1 - jitter, 1 + jitter))))]
    starts.append(first)
    while starts[-1] <= num_frames:
        starts.append(starts[-1] + max(3, round(base * rng.uniform(1 - jitter, 1 + jitter))))
    return np.asarray(starts)


def _schedule_at(starts: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the instants ``t`` (N,) (in frames, fractional for audio samples) lie among the impacts ``starts``.

    Returns ``(phase, interval, count)``, each (N,): the phase in [0, 1) since the last impact, the
    length in frames of the current interval, and the number of impacts since the virtual one before
    the clip (whose parity gives a direction).
    """
    count = np.searchsorted(starts, t, side="right") - 1
    interval = (starts[count + 1] - starts[count]).astype(np.float64)
    phase = (t - starts[count]) / interval
    return phase, interval, count


_LUMA = np.array([0.299, 0.587, 0.114])


def _random_colour(rng: np.random.Generator, c1: np.ndarray, c2: np.ndarray, min_distance: float) -> np.ndarray:
    """(3,) RGB in [0, 255] that stands out from every colour of the background gradient ``c1 -> c2``.

    At least ``min_distance`` away in RGB and ``min_distance / 3`` in luma (H.264 keeps chroma at half
    resolution, so a small object must differ in brightness to stay visible). After 50 draws the best
    candidate wins.
    """
    seg = c2 - c1
    luma_lo, luma_hi = sorted((float(_LUMA @ c1), float(_LUMA @ c2)))
    best, best_score = c1, -1.0
    for _ in range(50):
        colour = rng.uniform(0, 255, 3)
        t = np.clip(np.dot(colour - c1, seg) / max(float(np.dot(seg, seg)), 1e-6), 0.0, 1.0)
        dist = float(np.linalg.norm(colour - (c1 + t * seg)))
        luma = float(_LUMA @ colour)
        luma_dist = max(luma_lo - luma, luma - luma_hi, 0.0)
        score = min(dist / min_distance, 3 * luma_dist / min_distance)
        if score > best_score:
            best, best_score = colour, score
        if score >= 1:
            break
    return best.astype(np.float32)


# The fixed palette the looks vary around (``look``): background gradient ends, floor, walls, object.
_PALETTE = {
    "c1": (70.0, 90.0, 120.0),
    "c2": (110.0, 130.0, 150.0),
    "floor": (60.0, 50.0, 40.0),
    "wall": (150.0, 150.0, 160.0),
    "object": (235.0, 205.0, 60.0),
    "rod": (30.0, 30.0, 30.0),
}


def _look_colour(rng: np.random.Generator, name: str, look: float) -> np.ndarray:
    """(3,) the palette colour ``name`` moved by ``look`` times a uniform draw in [-128, 128] per channel
    (``look=1``: nearly any colour; 0: always the palette's). Always three draws, whatever ``look``."""
    return np.clip(np.asarray(_PALETTE[name]) + look * rng.uniform(-128, 128, 3), 0, 255).astype(np.float32)


def _smooth_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W) float32 in [-1, 1]: a coarse random grid upsampled bilinearly (blotches, no fine detail)."""
    gh, gw = int(rng.integers(3, 8)), int(rng.integers(3, 10))
    grid = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    ys = np.linspace(0, gh - 1, height, dtype=np.float32)
    xs = np.linspace(0, gw - 1, width, dtype=np.float32)
    y0 = np.minimum(ys.astype(int), gh - 2)
    x0 = np.minimum(xs.astype(int), gw - 2)
    wy, wx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = grid[y0][:, x0] * (1 - wx) + grid[y0][:, x0 + 1] * wx
    bottom = grid[y0 + 1][:, x0] * (1 - wx) + grid[y0 + 1][:, x0 + 1] * wx
    return top * (1 - wy) + bottom * wy


def _stamp(img: np.ndarray, shape: str, cx: float, cy: float, r: float, colour: np.ndarray) -> None:
    """Paint an anti-aliased ``disc``, ``square``, ``triangle`` or ``diamond`` of radius ``r`` into ``img``
    (H, W, 3) in place.

    Only the bounding box is touched, which keeps drawing cheap whatever the frame size.
    """
    h, w = img.shape[:2]
    y0, y1 = max(0, int(cy - r - 1)), min(h, int(cy + r + 2))
    x0, x1 = max(0, int(cx - r - 1)), min(w, int(cx + r + 2))
    if y0 >= y1 or x0 >= x1:
        return
    dy = (np.arange(y0, y1, dtype=np.float32) - cy)[:, None]  # signed: the triangle points up
    dx = np.abs(np.arange(x0, x1, dtype=np.float32) - cx)[None, :]
    if shape == "disc":
        dist = np.sqrt(dx * dx + dy * dy)
    elif shape == "square":
        dist = np.maximum(dx, np.abs(dy))
    elif shape == "triangle":
        # Apex (0, -r) and base corners (+-r, r), so it stands on the floor like the square: the distance
        # beyond the base and beyond the slanted sides (outward normals (+-2, -1) / sqrt 5), plus r.
        dist = np.maximum(dy, (2 * dx - dy - r) / np.float32(math.sqrt(5)) + r)
    else:  # diamond: an L1 ball, its tips on the box like the triangle's corners
        dist = dx + np.abs(dy)
    alpha = np.clip(r - dist + 0.5, 0.0, 1.0)[..., None]
    box = img[y0:y1, x0:x1]
    box += alpha * (colour - box)


def _stamp_segment(
    img: np.ndarray, p: tuple[float, float], q: tuple[float, float], half_width: float, colour: np.ndarray
) -> None:
    """Paint an anti-aliased thick segment from ``p`` to ``q`` (``(x, y)`` pixels) into ``img`` in place."""
    h, w = img.shape[:2]
    pad = half_width + 1
    y0, y1 = max(0, int(min(p[1], q[1]) - pad)), min(h, int(max(p[1], q[1]) + pad + 1))
    x0, x1 = max(0, int(min(p[0], q[0]) - pad)), min(w, int(max(p[0], q[0]) + pad + 1))
    if y0 >= y1 or x0 >= x1:
        return
    ys = np.arange(y0, y1, dtype=np.float32)[:, None] - p[1]
    xs = np.arange(x0, x1, dtype=np.float32)[None, :] - p[0]
    vx, vy = q[0] - p[0], q[1] - p[1]
    t = np.clip((xs * vx + ys * vy) / max(vx * vx + vy * vy, 1e-6), 0.0, 1.0)
    dist = np.sqrt((xs - t * vx) ** 2 + (ys - t * vy) ** 2)
    alpha = np.clip(half_width - dist + 0.5, 0.0, 1.0)[..., None]
    box = img[y0:y1, x0:x1]
    box += alpha * (colour - box)


_SHAPES = tuple(SHAPE_OF_SOUND.values())
_TEXTURES = tuple(TEXTURE_OF_PATTERN.values())


def _draw_cues(rng: np.random.Generator, pattern: str, sound: str, cue: float) -> tuple[str, str]:
    """The cross-modal class cues of one video: ``(shape of the object, sound texture of the motion)``.

    With probability ``cue`` the shape is the timbre's (:data:`SHAPE_OF_SOUND`), otherwise it is drawn
    uniformly from all four shapes; independently, the texture is the pattern's
    (:data:`TEXTURE_OF_PATTERN`) with probability ``cue``, otherwise uniform over all four. So a shape
    or texture matches the class with probability ``cue + (1 - cue) / 4``, and ``cue=0`` makes both
    independent of the class. Always the same four draws, whatever the outcome: ``cue`` changes these
    two choices only, never the rest of the video.
    """
    keep_shape, any_shape, keep_texture, any_texture = rng.random(), rng.integers(4), rng.random(), rng.integers(4)
    shape = SHAPE_OF_SOUND[sound] if keep_shape < cue else _SHAPES[int(any_shape)]
    texture = TEXTURE_OF_PATTERN[pattern] if keep_texture < cue else _TEXTURES[int(any_texture)]
    return shape, texture


def _render_frames(
    rng: np.random.Generator,
    pattern: str,
    shape: str,
    starts: np.ndarray,
    num_frames: int,
    height: int,
    width: int,
    fps: int,
    difficulty: float,
    look: float = 0.35,
    size: float = 1.5,
    distractors: int = 0,
) -> np.ndarray:
    """Draw the clip: frames (T, H, W, 3) uint8 of the object of ``shape`` doing ``pattern`` with the
    impacts ``starts`` (see :func:`_event_schedule`).

    The scene is a room (a floor and two walls, drawn for every pattern so that the furniture alone
    does not give the pattern away) over a gradient-and-blotches background, silent distractors
    drifting on smooth paths behind the object, and the object doing its pattern. Colours vary by
    ``look`` around a fixed palette (:func:`_look_colour`), as do the background's blotches; ``size``
    scales the object; up to ``distractors`` silent objects move about.
    """
    d = difficulty
    phase, interval, count = _schedule_at(starts, np.arange(num_frames))

    # Static scene.
    c1 = _look_colour(rng, "c1", look).astype(np.float64)
    c2 = _look_colour(rng, "c2", look).astype(np.float64)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = np.cos(angle) * xx / width + np.sin(angle) * yy / height
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    bg = c1 + ramp[..., None] * (c2 - c1)
    texture_amp = look * rng.uniform(5, 10 + 40 * d) / 0.35
    bg += texture_amp * _smooth_texture(rng, height, width)[..., None] * rng.uniform(0.5, 1.0, 3)
    floor_h = max(2, round(height * rng.uniform(0.06, 0.14)))
    floor_top = height - floor_h
    left = max(1, round(width * rng.uniform(0.02, 0.12)))
    right = width - max(1, round(width * rng.uniform(0.02, 0.12)))
    bg[floor_top:] = _look_colour(rng, "floor", look)
    wall_colour = _look_colour(rng, "wall", look)
    bg[:floor_top, :left] = wall_colour
    bg[:floor_top, right:] = wall_colour
    bg = bg.astype(np.float32)

    # The object. Sizes are in pixels relative to the frame height so every frame size looks alike.
    r = float(height * rng.uniform(0.06, 0.09 + 0.04 * d)) * size
    colour = _look_colour(rng, "object", look)
    room_h, room_w = float(floor_top), float(right - left)
    rel = interval / interval.max()  # longer interval, larger swing or bounce (as with gravity)
    flash = np.zeros(num_frames, np.float32)
    radius = np.full(num_frames, r, np.float32)
    rod = None
    if pattern == "bounce":
        cx = np.full(num_frames, rng.uniform(left + r, right - r), np.float32)
        top = rng.uniform(0.45, 0.85) * (room_h - 2 * r - 2)
        cy = floor_top - r - top * rel**2 * 4 * phase * (1 - phase)
    elif pattern == "slide":
        span = room_w - 2 * r
        direction = 1 if rng.random() < 0.5 else 0
        forward = (count + direction) % 2 == 0
        cx = np.where(forward, left + r + span * phase, right - r - span * phase).astype(np.float32)
        cy = np.full(num_frames, floor_top - r, np.float32)
    elif pattern == "swing":
        side = 1 if rng.random() < 0.5 else -1
        post_w = max(2.0, r / 2)
        py = rng.uniform(0.06, 0.2) * height
        length = rng.uniform(0.5, 0.8) * (floor_top - py - 2 * r - 2)
        sin_max = min(math.sin(rng.uniform(0.6, 1.1)), max(0.2, (room_w - 3 * r - post_w - 4) / length))
        reach = length * sin_max + r
        lo = left + (reach if side < 0 else r + post_w + 1)
        hi = right - (reach if side > 0 else r + post_w + 1)
        px = rng.uniform(lo, hi) if lo < hi else (left + right) / 2
        theta = math.asin(sin_max) * rel * 4 * phase * (1 - phase)
        cx = (px + side * length * np.sin(theta)).astype(np.float32)
        cy = (py + length * np.cos(theta)).astype(np.float32)
        # The post the bob strikes when it swings back to the vertical.
        post_x0 = round(px - side * r - (post_w if side > 0 else 0))
        bg[int(py + length - r) : floor_top, max(0, post_x0) : max(0, post_x0 + round(post_w))] = wall_colour
        rod = (px, py, max(0.8, r / 5), _look_colour(rng, "rod", look))
    else:  # pulse: the object swells and lights up at each beat, then relaxes
        cx = np.full(num_frames, rng.uniform(left + 2 * r, right - 2 * r), np.float32)
        cy = np.full(num_frames, rng.uniform(2 * r, floor_top - 2 * r), np.float32)
        decay = np.exp(-phase * interval / rng.uniform(2.0, 4.0))
        radius = r * (1 + 0.7 * decay)
        flash = 0.6 * decay

    # Silent distractors on smooth Lissajous paths: motion without any impact.
    t = np.arange(num_frames, dtype=np.float32) / fps
    movers = []
    for _ in range(int(rng.integers(0, distractors + 1))):
        dr = r * rng.uniform(0.5, 1.0)
        ax, ay = rng.uniform(0.1, 0.45) * room_w, rng.uniform(0.1, 0.45) * room_h
        xc = rng.uniform(left + ax, right - ax) if room_w > 2 * ax else (left + right) / 2
        yc = rng.uniform(ay, floor_top - ay) if room_h > 2 * ay else room_h / 2
        fx, fy = rng.uniform(0.15, 0.5, 2)
        p1, p2 = rng.uniform(0, 2 * np.pi, 2)
        movers.append(
            (
                _SHAPES[int(rng.integers(len(_SHAPES)))],
                dr,
                _random_colour(rng, c1, c2, 60 + 40 * look),
                xc + ax * np.sin(2 * np.pi * fx * t + p1),
                yc + ay * np.sin(2 * np.pi * fy * t + p2),
            )
        )

    # Frame by frame, so the float working copy stays small and in cache.
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    white = np.full(3, 255, np.float32)
    noise_std = np.float32(1.0 + 10.0 * d)
    for f in range(num_frames):
        img = bg.copy()
        for dshape, dr, dcolour, dx, dy in movers:
            _stamp(img, dshape, float(dx[f]), float(dy[f]), dr, dcolour)
        if rod is not None:
            px, py, half_w, rod_colour = rod
            _stamp_segment(img, (px, py), (float(cx[f]), float(cy[f])), half_w, rod_colour)
            _stamp(img, "disc", px, py, half_w + 1, rod_colour)
        _stamp(img, shape, float(cx[f]), float(cy[f]), float(radius[f]), colour + flash[f] * (white - colour))
        img += noise_std * rng.standard_normal((height, width, 1), dtype=np.float32)  # sensor noise, grey
        np.clip(img, 0, 255, out=img)
        frames[f] = img
    return frames


# Sounds. Each returns (L,) float32 with its attack at sample 0 and a peak of about 1.


def _bell(rng: np.random.Generator, f0: float, sr: int, decay: float) -> np.ndarray:
    """Inharmonic partials of a struck bar (1 : 2.76 : 5.40 : 8.93) with a long ring."""
    t = np.arange(int(1.2 * sr), dtype=np.float64) / sr
    out = np.zeros_like(t)
    for ratio, amp, tau in ((1.0, 1.0, 0.8), (2.756, 0.5, 0.4), (5.404, 0.3, 0.2), (8.933, 0.15, 0.1)):
        if f0 * ratio < 0.45 * sr:
            out += amp * np.exp(-t / (tau * decay)) * np.sin(2 * np.pi * f0 * ratio * t)
    return out


def _drum(rng: np.random.Generator, f0: float, sr: int, decay: float) -> np.ndarray:
    """A membrane: a low sine whose pitch drops from 2.5 f0 to f0, plus a short noise click."""
    n = int(0.5 * sr)
    t = np.arange(n, dtype=np.float64) / sr
    freq = f0 * (1 + 1.5 * np.exp(-t / 0.015))
    body = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / (0.15 * decay))
    click = rng.standard_normal(n).astype(np.float32) * np.exp(-t / 0.006)
    click = np.convolve(click, np.ones(4, np.float32) / 4, mode="same")  # a little lowpass
    return (body + 0.4 * click).astype(np.float32)


def _pluck(rng: np.random.Generator, f0: float, sr: int, decay: float) -> np.ndarray:
    """A plucked string: harmonics shaped by the pluck position, upper harmonics dying faster."""
    t = np.arange(int(1.0 * sr), dtype=np.float64) / sr
    where = rng.uniform(0.12, 0.3)
    harmonics = np.arange(1, int(min(20, 0.45 * sr / f0)) + 1, dtype=np.float32)
    amps = np.abs(np.sin(np.pi * harmonics * where)) / harmonics
    taus = 0.45 * decay / (1 + 0.35 * (harmonics - 1))
    parts = amps[:, None] * np.exp(-t[None] / taus[:, None]) * np.sin(2 * np.pi * f0 * harmonics[:, None] * t[None])
    out = parts.sum(0)
    return out / max(float(np.abs(out).max()), 1e-6)


def _band_noise(rng: np.random.Generator, n: int, sr: int, fc: float, octaves: float) -> np.ndarray:
    """(n,) float32 unit-variance noise band-passed around ``fc`` Hz (a Gaussian in log frequency whose
    standard deviation is ``octaves``)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    spectrum *= np.exp(-0.5 * (np.log2(np.maximum(freqs, 1.0) / fc) / octaves) ** 2)
    band = np.fft.irfft(spectrum, n)
    return (band / max(float(band.std()), 1e-9)).astype(np.float32)


def _clap(rng: np.random.Generator, fc: float, sr: int, decay: float) -> np.ndarray:
    """A hand clap: three or four quick noise bursts and a short tail, band-passed around ``fc``."""
    n = int(0.35 * sr)
    t = np.arange(n, dtype=np.float64) / sr
    env = np.exp(-t / (0.06 * decay)) * 0.5
    for k in range(int(rng.integers(3, 5))):
        start = k * rng.uniform(0.005, 0.011)
        env += np.where(t >= start, np.exp(-(t - start) / 0.004), 0.0)
    out = _band_noise(rng, n, sr, fc, 0.8) * env
    return (out / max(float(np.abs(out).max()), 1e-6)).astype(np.float32)


# name -> (sound function, centre pitch or band in Hz). Pitch ranges overlap at high difficulty, so the
# timbre (partials, decay, noisiness), not one frequency bin, tells the sounds apart.
_TIMBRES: dict[str, tuple[Callable[..., np.ndarray], float]] = {
    "bell": (_bell, 880.0),
    "drum": (_drum, 110.0),
    "pluck": (_pluck, 262.0),
    "clap": (_clap, 1600.0),
}


def _coloured_noise(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """(n,) float32 unit-variance noise with a random spectral slope between white and brown."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / sr), 30.0)
    spectrum *= freqs ** (-rng.uniform(0.0, 1.0))
    noise = np.fft.irfft(spectrum, n)
    return (noise / max(float(noise.std()), 1e-9)).astype(np.float32)


def _distractor_sound(rng: np.random.Generator, sr: int) -> np.ndarray:
    """A sound with no visual event: a smooth pitch glide or a short sine knock, at a random pitch."""
    if rng.random() < 0.5:
        n = int(rng.uniform(0.15, 0.6) * sr)
        f_start, f_end = np.exp(rng.uniform(np.log(150), np.log(4000), 2))
        freq = np.geomspace(f_start, f_end, n)
        env = np.sin(np.pi * np.arange(n) / n) ** 2  # no sharp onset
        return (np.sin(2 * np.pi * np.cumsum(freq) / sr) * env).astype(np.float32)
    n = int(0.3 * sr)
    t = np.arange(n) / sr
    return (np.sin(2 * np.pi * np.exp(rng.uniform(np.log(200), np.log(3000))) * t) * np.exp(-t / 0.05)).astype(
        np.float32
    )


_PATTERN_OF_TEXTURE = {texture: pattern for pattern, texture in TEXTURE_OF_PATTERN.items()}


# The phase of the motion cycle (0: an impact, 1: the next) at which the shared texture sounds, per pattern.
TEXTURE_PHASE = {"bounce": 0.2, "slide": 0.4, "swing": 0.6, "pulse": 0.8}
_TEXTURE_WIDTH = 0.3  # the burst's length, as a fraction of the cycle


def motion_envelope(pattern: str, starts: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(N,) float64 in [0, 1]: how loud the shared texture is at the instants ``t`` (in frames) when it
    follows the motion of ``pattern`` with the impacts ``starts``.

    One burst per motion cycle (a raised cosine lasting 30 % of the cycle), centred on the phase
    :data:`TEXTURE_PHASE` of ``pattern``: 0.2 of the way from one impact to the next for ``bounce`` (the
    ball rising), 0.4 for ``slide`` (the block near the middle), 0.6 for ``swing`` (the bob swinging
    back) and 0.8 for ``pulse`` (the object relaxed, before the next swell). The bursts have the same
    shape, length and loudness for every pattern, so the texture's spectrum and loudness statistics are
    the same; only *when* it sounds relative to the impacts, i.e. to the visible motion, tells the pattern.
    """
    phase, _, _ = _schedule_at(starts, t)
    distance = np.abs((phase - TEXTURE_PHASE[pattern] + 0.5) % 1.0 - 0.5)  # circular, in cycles
    return np.where(distance < _TEXTURE_WIDTH / 2, 0.5 + 0.5 * np.cos(2 * np.pi * distance / _TEXTURE_WIDTH), 0.0)


def _timing_texture(
    rng: np.random.Generator, texture: str, starts: np.ndarray, num_samples: int, fps: int, sr: int
) -> np.ndarray:
    """(S,) float32: the shared texture (band noise, 1-2 kHz centre, one octave) whose loudness follows the
    motion of the pattern of ``texture`` (:func:`motion_envelope`); unit RMS. Same draws for every texture."""
    carrier = _band_noise(rng, num_samples, sr, 1400 * 2 ** rng.uniform(-0.5, 0.5), 0.5)
    t = np.arange(num_samples) * (fps / sr)
    return (carrier * motion_envelope(_PATTERN_OF_TEXTURE[texture], starts, t)).astype(np.float32)


def _texture(
    rng: np.random.Generator, texture: str, starts: np.ndarray, num_samples: int, fps: int, sr: int
) -> np.ndarray:
    """(S,) float32: the sound ``texture`` that the motion of its pattern makes between the impacts ``starts``.

    A unit-RMS carrier times an envelope in [0, 1] that follows the pattern's motion, computed from the
    impact schedule alone, so a texture fits any video (a slide's scrape in a bounce video follows the
    block that would slide there). In a video of its own pattern it follows the object on screen:

    - ``whistle`` (bounce): a tone whose pitch rises with the ball and falls with it (up to 1.5 octaves
      for the highest bounce), fading out at each impact;
    - ``scrape`` (slide): high band noise (2.5-4.5 kHz) as loud as the block is fast, silent at the walls;
    - ``whoosh`` (swing): low band noise (250-500 Hz) as loud as the pendulum is fast, loudest as it
      sweeps down onto the post, silent where it turns;
    - ``hum`` (pulse): a low buzz (55-90 Hz and its harmonics) that swells with the object at each beat.
    """
    t = np.arange(num_samples) * (fps / sr)  # sample instants in frames
    phase, interval, _ = _schedule_at(starts, t)
    if texture == "whistle":
        height = (interval / interval.max()) ** 2 * 4 * phase * (1 - phase)  # as the ball in _render_frames
        freq = rng.uniform(300, 500) * 2 ** (1.5 * height)
        carrier = math.sqrt(2) * np.sin(2 * np.pi * np.cumsum(freq) / sr)
        envelope = np.sqrt(np.sin(np.pi * phase))
    elif texture == "scrape":
        carrier = _band_noise(rng, num_samples, sr, rng.uniform(2500, 4500), 0.4)
        frames_from_wall = np.minimum(phase, 1 - phase) * interval
        envelope = interval.min() / interval * np.clip(frames_from_wall / 1.5, 0, 1)
    elif texture == "whoosh":
        carrier = _band_noise(rng, num_samples, sr, rng.uniform(250, 500), 0.7)
        envelope = np.abs(1 - 2 * phase)  # the angular speed of the swing in _render_frames, normalised
    else:  # hum
        f0, harmonics = rng.uniform(55, 90), np.arange(1, 7)
        offsets = rng.uniform(0, 2 * np.pi, len(harmonics))
        carrier = sum(np.sin(2 * np.pi * k * f0 * t / fps + o) / k for k, o in zip(harmonics, offsets))
        carrier /= math.sqrt(float(np.sum(1 / harmonics**2)) / 2)
        envelope = 0.3 + 0.7 * np.exp(-phase * interval / 3.0)  # relaxes over a few frames, as the swell
    return (carrier * envelope).astype(np.float32)


def _add_at(audio: np.ndarray, sound: np.ndarray, start: int) -> None:
    """Mix ``sound`` into ``audio`` from sample ``start`` on, cut at the end of the clip."""
    if 0 <= start < len(audio):
        n = min(len(sound), len(audio) - start)
        audio[start : start + n] += sound[:n]


def _render_audio(
    rng: np.random.Generator,
    sound: str,
    texture: str,
    events: list[int],
    starts: np.ndarray,
    num_samples: int,
    fps: int,
    sr: int,
    difficulty: float,
    distractors: int = 0,
    ambient: float = 0.05,
    sound_code: str = "timing",
) -> np.ndarray:
    """(S,) float32: the class sound at every impact frame of ``events`` (onset at ``frame * sr / fps``),
    distractor sounds at random times, background noise, and the motion ``texture`` over the impact
    schedule ``starts``. ``sound_code`` "timing": the shared texture of :func:`_timing_texture` at -10 dB
    (RMS) from the impacts' peak level; "spectrum": the pattern's own texture (:func:`_texture`), 12 dB
    (difficulty 0) to 20 dB (difficulty 1) below. ``ambient``: the background noise's RMS relative to the
    impacts' peak level. ``distractors``: sounds without a visual event, ``distractors / 2`` a second."""
    d = difficulty
    func, centre = _TIMBRES[sound]
    spread = 0.3 + 0.5 * d  # octaves either side of the timbre's centre
    f0 = centre * 2 ** rng.uniform(-spread, spread)
    decay = rng.uniform(0.7, 1.3)
    loudness = rng.uniform(0.35, 0.7)
    audio = np.zeros(num_samples, np.float32)
    for e in events:
        hit = func(rng, f0 * 2 ** rng.normal(0, 0.02), sr, decay)
        _add_at(audio, loudness * rng.uniform(0.7, 1.0) * hit, round(e * sr / fps))
    seconds = num_samples / sr
    for _ in range(int(rng.poisson(0.5 * distractors * seconds))):
        gain = loudness * rng.uniform(0.15, 0.45)
        _add_at(audio, gain * _distractor_sound(rng, sr), int(rng.integers(0, num_samples)))
    audio += loudness * ambient * _coloured_noise(rng, num_samples, sr)
    # Drawn last, so that the texture a video gets leaves every other part of it unchanged.
    if sound_code == "timing":
        audio += loudness * 10 ** (-10 / 20) * _timing_texture(rng, texture, starts, num_samples, fps, sr)
    else:
        audio += loudness * 10 ** (-(12 + 8 * d) / 20) * _texture(rng, texture, starts, num_samples, fps, sr)
    peak = float(np.abs(audio).max())
    if peak > 0.95:  # scale rather than clip, so the waveform keeps its shape
        audio *= 0.95 / peak
    return audio


def _render_clip(job: _VideoJob) -> _Clip:
    """Draw one video from its own seed: duration, frames, events and audio."""
    pattern, sound = _CLASS_ORDER[job.class_index]
    rng = np.random.default_rng(np.random.SeedSequence([job.seed, job.class_index, job.index]))
    shape, texture = _draw_cues(rng, pattern, sound, job.cue)
    num_frames = max(2, round(rng.uniform(job.min_duration, job.max_duration) * job.fps))
    starts = _event_schedule(rng, num_frames, job.fps, job.difficulty, job.event_rate)
    frames = _render_frames(
        rng,
        pattern,
        shape,
        starts,
        num_frames,
        job.height,
        job.width,
        job.fps,
        job.difficulty,
        job.look,
        job.size,
        job.distractors,
    )
    events = [int(e) for e in starts if 0 <= e < num_frames]
    num_samples = round(num_frames * job.sample_rate / job.fps)
    audio = _render_audio(
        rng,
        sound,
        texture,
        events,
        starts,
        num_samples,
        job.fps,
        job.sample_rate,
        job.difficulty,
        job.distractors,
        job.ambient,
        job.sound_code,
    )
    return _Clip(frames, audio, events, shape, texture)


@contextlib.contextmanager
def _portable_ffmpeg() -> Iterator[None]:
    """Run FFmpeg's plain C code paths (no SIMD) inside the block, whatever the CPU.

    FFmpeg picks SIMD routines by the CPU it runs on, and some of them round floats differently: the
    AAC decoder's output on an AVX-512 machine differs in the last bits from its output without SIMD.
    ``av_force_cpu_flags(0)`` selects the C routines, which every CPU runs alike (forcing *no* flag is
    safe anywhere, unlike forcing flags a CPU lacks); ``-1`` restores detection afterwards. Codecs pick
    their routines when they are opened, so everything opened inside the block keeps the C paths.
    Does nothing where PyAV's libavutil cannot be found (then the hashes are only checked on CPUs alike).
    """
    lib = _libavutil()
    if lib is None:
        yield
        return
    lib.av_force_cpu_flags(0)
    try:
        yield
    finally:
        lib.av_force_cpu_flags(-1)


_AVUTIL: list = []


def _libavutil():
    """The libavutil that PyAV loaded (ctypes handle), or None."""
    if not _AVUTIL:
        handle = None
        candidates = []
        try:
            with open("/proc/self/maps") as f:
                candidates = sorted({line.split()[-1] for line in f if "libavutil" in line and "/" in line})
        except OSError:
            pass
        root = Path(av.__file__).resolve().parent
        for folder in (root.parent / "av.libs", root / ".dylibs", root.parent / "av.dylibs"):
            candidates += sorted(str(p) for p in folder.glob("libavutil*")) if folder.is_dir() else []
        for candidate in candidates:
            try:
                handle = ctypes.CDLL(candidate)
                handle.av_force_cpu_flags.argtypes = [ctypes.c_int]
                break
            except (OSError, AttributeError):
                handle = None
        _AVUTIL.append(handle)
    return _AVUTIL[0]


def _rgb_to_yuv420p(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB -> (T, 3H/2, W) uint8 yuv420p planes (BT.601, limited range) in integer
    arithmetic, so the result is the same on every machine (swscale's SIMD conversion need not be).
    Chroma is the rounded mean of each 2x2 block."""
    rgb = frames.astype(np.int32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16
    t, h, w = r.shape
    mean = rgb.reshape(t, h // 2, 2, w // 2, 2, 3).sum((2, 4))  # 4x the 2x2 mean
    mr, mg, mb = mean[..., 0], mean[..., 1], mean[..., 2]
    u = ((-38 * mr - 74 * mg + 112 * mb + 512) >> 10) + 128
    v = ((112 * mr - 94 * mg - 18 * mb + 512) >> 10) + 128
    out = np.empty((t, h * 3 // 2, w), np.uint8)
    out[:, :h] = y
    out[:, h : h + h // 4] = u.reshape(t, h // 4, w)
    out[:, h + h // 4 :] = v.reshape(t, h // 4, w)
    return out


# libx264: lossless (qp 0; the decoded frames are the encoder's input whatever code path it took) and
# without assembly (asm=0: the same bitstream on every CPU, which its SIMD paths do not promise).
X264_OPTIONS = {"qp": "0", "preset": "ultrafast", "x264-params": "asm=0"}


def _write_mp4(path: Path, frames: np.ndarray, audio: np.ndarray, fps: int, sample_rate: int) -> None:
    """Encode ``frames`` (T, H, W, 3) uint8 as lossless H.264 (yuv420p) and ``audio`` (S,) float32 as mono
    AAC into ``path``, the same bytes on every machine (see :data:`X264_OPTIONS`, :func:`_portable_ffmpeg`).

    One encoder thread each: generation already runs one process per core.
    """
    planes = _rgb_to_yuv420p(frames)
    with _portable_ffmpeg(), av.open(str(path), mode="w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height = frames.shape[2], frames.shape[1]
        video.pix_fmt = "yuv420p"
        video.options = dict(X264_OPTIONS)
        video.codec_context.thread_count = 1
        sound = container.add_stream("aac", rate=sample_rate)
        sound.layout = "mono"
        sound.bit_rate = 64000
        sound.options = {"aac_coder": "fast"}  # about 4x faster than the default coder search
        for i, image in enumerate(planes):
            frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode())
        chunk = sample_rate  # one second per frame object; the encoder re-cuts them into AAC frames
        for start in range(0, len(audio), chunk):
            frame = av.AudioFrame.from_ndarray(audio[None, start : start + chunk], format="fltp", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = start
            frame.time_base = Fraction(1, sample_rate)
            container.mux(sound.encode(frame))
        container.mux(sound.encode())


def media_hashes(path: str | Path) -> tuple[str, str]:
    """``(video, audio)`` sha256 hex digests of a file's decoded media, the same on every machine.

    Video: the decoded yuv420p planes of every frame, in order (H.264 decoding is bit-exact by the
    standard; the planes are taken before any conversion to RGB, whose SIMD code varies by CPU).
    Audio: the decoded float32 samples, decoded with FFmpeg's C paths (:func:`_portable_ffmpeg`), since
    the AAC decoder's SIMD output differs in the last bits between CPUs.
    """
    video, audio = hashlib.sha256(), hashlib.sha256()
    with _portable_ffmpeg(), av.open(str(path)) as container:
        for stream in container.streams:
            stream.thread_type = "SLICE"
            stream.codec_context.thread_count = 1
        for frame in container.decode(container.streams.video[0], container.streams.audio[0]):
            if isinstance(frame, av.VideoFrame):
                video.update(np.ascontiguousarray(frame.reformat(format="yuv420p").to_ndarray()).tobytes())
            else:
                audio.update(np.ascontiguousarray(frame.to_ndarray(), dtype="<f4").tobytes())
    return video.hexdigest(), audio.hexdigest()


def _make_video(job: _VideoJob) -> dict[str, str]:
    """Render and write one video (atomically: a temporary name, then a rename); return its manifest row."""
    clip = _render_clip(job)
    path = Path(job.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    try:
        _write_mp4(tmp, clip.frames, clip.audio, job.fps, job.sample_rate)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    pattern, sound = _CLASS_ORDER[job.class_index]
    video_hash, audio_hash = media_hashes(path)
    return {
        "path": job.path,
        "label": f"{pattern}-{sound}",
        "pattern": pattern,
        "sound": sound,
        "frames": str(len(clip.frames)),
        "duration": f"{len(clip.frames) / job.fps:.3f}",
        "events": " ".join(str(e) for e in clip.events),
        "shape": clip.shape,
        "texture": clip.texture,
        "video_sha256": video_hash,
        "audio_sha256": audio_hash,
    }


# ---------------------------------------------------------------------------------------------------
# The benchmark.


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
    classes: int,
    per_class: int,
    height: int,
    width: int,
    fps: int,
    min_duration: float,
    max_duration: float,
    difficulty: float,
    sample_rate: int,
    splits: tuple[float, float, float],
    workers: int,
    cue: float,
    look: float = 0.35,
    size: float = 1.5,
    distractors: int = 0,
    ambient: float = 0.05,
    sound_code: str = "timing",
    event_rate: float = 0.8,
) -> None:
    class_names(classes)  # checks the range
    if per_class < 1:
        raise UserError(f"--per-class must be at least 1, not {per_class}")
    if height < 24 or width < 24:
        raise UserError(f"frames must be at least 24x24 pixels, not {height}x{width} (height x width)")
    if not 1 <= fps <= 120:
        raise UserError(f"fps must be between 1 and 120, not {fps}")
    if not 0 < min_duration <= max_duration:
        raise UserError(f"durations must satisfy 0 < min ({min_duration}) <= max ({max_duration})")
    if not 0.0 <= difficulty <= 1.0:
        raise UserError(f"difficulty must be in [0, 1], not {difficulty}")
    if not 0.0 <= cue <= 1.0:
        raise UserError(f"cue must be in [0, 1], not {cue}")
    if not 0.0 <= look <= 1.0:
        raise UserError(f"look must be in [0, 1], not {look}")
    if not 0.25 <= size <= 3.0:
        raise UserError(f"size must be in [0.25, 3], not {size}")
    if distractors < 0:
        raise UserError(f"distractors must be 0 or more, not {distractors}")
    if not 0.0 <= ambient <= 1.0:
        raise UserError(f"ambient must be in [0, 1], not {ambient}")
    if sound_code not in SOUND_CODES:
        raise UserError(f"sound_code must be one of {', '.join(SOUND_CODES)}, not {sound_code!r}")
    if not 0.1 <= event_rate <= fps / 4:
        raise UserError(f"event_rate must be between 0.1 and fps / 4 ({fps / 4}) events a second, not {event_rate}")
    if sample_rate not in AAC_SAMPLE_RATES:
        raise UserError(f"AAC in MP4 cannot carry {sample_rate} Hz; use one of {', '.join(map(str, AAC_SAMPLE_RATES))}")
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
    a second), ``ambient`` (background noise level), ``sound_code`` (how the sound codes the motion
    pattern, :data:`SOUND_CODES`) and ``event_rate`` (impacts a second). ``workers`` processes render
    and encode (0 or 1: in this process); the result does not depend on it.

    ``out`` must be new, empty, or a benchmark written before (which is replaced).
    """
    splits = tuple(float(s) for s in splits)  # type: ignore[assignment]
    _check_arguments(
        classes,
        per_class,
        height,
        width,
        fps,
        min_duration,
        max_duration,
        difficulty,
        sample_rate,
        splits,
        workers,
        cue,
        look,
        size,
        distractors,
        ambient,
        sound_code,
        event_rate,
    )
    out = Path(out)
    _prepare_folder(out)
    height, width = height + height % 2, width + width % 2
    names = class_names(classes)
    counts = split_counts(per_class, splits)
    split_of = [name for name, count in zip(SPLITS, counts) for _ in range(count)]
    jobs = [
        _VideoJob(
            str(out / split_of[i] / name / f"{name}_{i:04d}.mp4"),
            c,
            i,
            seed,
            height,
            width,
            fps,
            min_duration,
            max_duration,
            difficulty,
            sample_rate,
            cue,
            look,
            size,
            distractors,
            ambient,
            sound_code,
            event_rate,
        )
        for c, name in enumerate(names)
        for i in range(per_class)
    ]
    settings = {
        "generator": "avcl synth",
        "complete": False,
        "classes": names,
        "per_class": per_class,
        "seed": seed,
        "height": height,
        "width": width,
        "fps": fps,
        "min_duration": min_duration,
        "max_duration": max_duration,
        "difficulty": difficulty,
        "cue": cue,
        "look": look,
        "size": size,
        "distractors": distractors,
        "ambient": ambient,
        "sound_code": sound_code,
        "event_rate": event_rate,
        "sample_rate": sample_rate,
        "splits": dict(zip(SPLITS, splits)),
        "split_counts": dict(zip(SPLITS, counts)),
        "videos": len(jobs),
    }
    # Written first, so that a rerun recognises (and replaces) even an interrupted benchmark.
    _write_json(out / _MARKER, settings)
    rows = list(_run_jobs(jobs, workers, progress))

    # Manifest order: split, then class, then index (the order of ``jobs`` within a split).
    rank = {job.path: (SPLITS.index(split_of[job.index]), k) for k, job in enumerate(jobs)}
    rows.sort(key=lambda row: rank[row["path"]])
    for row in rows:
        relative = Path(row["path"]).relative_to(out)
        row["split"] = relative.parts[0]
        row["path"] = relative.as_posix()
    manifest = out / "manifest.csv"
    tmp = out / "manifest.csv.part"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, manifest)
    (out / "classes.txt").write_text("".join(f"{name}\n" for name in names))
    _write_json(out / _MARKER, {**settings, "complete": True})
    return manifest


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _check_row(args: tuple[str, str, str]) -> str | None:
    path, video_hash, audio_hash = args
    if not Path(path).is_file():
        return f"{path}: missing"
    try:
        hashes = media_hashes(path)
    except (av.error.FFmpegError, IndexError) as e:
        return f"{path}: cannot be decoded ({e})"
    if hashes != (video_hash, audio_hash):
        which = [name for name, a, b in zip(("video", "audio"), hashes, (video_hash, audio_hash)) if a != b]
        return f"{path}: decoded {' and '.join(which)} differ from the manifest"
    return None


def verify_benchmark(out: str | Path, workers: int = 2, progress: bool = False) -> tuple[int, list[str]]:
    """Check a copy of a benchmark: decode every file of ``out/manifest.csv`` and compare its media hashes
    (:func:`media_hashes`) with the manifest's. Returns ``(files checked, problems)``; no problem means
    the copy decodes exactly as the one that was generated, on any machine."""
    out = Path(out)
    manifest = out / "manifest.csv"
    if not manifest.is_file():
        raise UserError(f"{manifest} not found: not a synthetic benchmark")
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and "video_sha256" not in rows[0]:
        raise UserError(f"{manifest} has no media hashes (written by an older avcl synth)")
    args = [(str(out / row["path"]), row["video_sha256"], row["audio_sha256"]) for row in rows]
    bar = progress_bar(
        total=len(args), desc="avcl synth --verify", unit="video", disable=not progress, dynamic_ncols=True
    )
    with bar:
        if workers <= 1 or len(args) < 2:
            results = []
            for a in args:
                results.append(_check_row(a))
                bar.update()
        else:
            with multiprocessing.get_context("spawn").Pool(min(workers, len(args))) as pool:
                results = []
                for r in pool.imap(_check_row, args, chunksize=4):
                    results.append(r)
                    bar.update()
    return len(args), [r for r in results if r is not None]
