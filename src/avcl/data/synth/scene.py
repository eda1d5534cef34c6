"""Scene rendering: a room, a background, silent distractors and decoys, and the object doing its motion
pattern."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from avcl.data.synth.events import _event_schedule, _schedule_at
from avcl.data.synth.tables import PALETTE, PATTERNS, SCENES, SHAPES, shape_in_scene

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


def _look_colour(rng: np.random.Generator, name: str, look: float) -> np.ndarray:
    """(3,) the palette colour ``name`` moved by ``look`` times a uniform draw in [-128, 128] per channel
    (``look=1``: nearly any colour; 0: always the palette's). Always three draws, whatever ``look``."""
    return np.clip(np.asarray(PALETTE[name]) + look * rng.uniform(-128, 128, 3), 0, 255).astype(np.float32)


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


_BAR_HEIGHT = 0.35  # the bar's half-height, as a fraction of its half-width (the radius)


def _stamp(img: np.ndarray, shape: str, cx: float, cy: float, r: float, colour: np.ndarray) -> None:
    """Paint an anti-aliased ``disc``, ``square``, ``triangle``, ``diamond`` or ``bar`` (as wide as the
    square, 0.35 as high) of radius ``r`` into ``img`` (H, W, 3) in place.

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
    elif shape == "bar":
        dist = np.maximum(dx, np.abs(dy) / np.float32(_BAR_HEIGHT))
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
    motion: str = "kinds",
    decoys: _Decoys | None = None,
    context: int = 0,
    scene: str = "room",
) -> np.ndarray:
    """Draw the clip: frames (T, H, W, 3) uint8 of the object of ``shape`` doing ``pattern`` with the
    impacts ``starts`` (see :func:`_event_schedule`).

    The scene is a room (a floor and two walls, drawn for every pattern so that the furniture alone
    does not give the pattern away) or, with ``scene="open"``, bare (no floor, walls, post or rod
    drawn; the pulsing object sits on the unseen ground without lighting up), over a
    gradient-and-blotches background, silent distractors drifting on smooth paths behind the object,
    silent ``decoys`` doing motion patterns of their own (:func:`_draw_decoys`), and the object doing
    its pattern in front. Colours vary by ``look`` around a fixed palette (:func:`_look_colour`), as do
    the background's blotches; ``size`` scales the object; up to ``distractors`` silent objects move
    about; ``motion`` chooses what the patterns look like (:func:`_motion_of`); ``context`` (0 to 3)
    picks the background's palette and, above 0, shows the motion of the pattern ``context`` places
    further on, every random draw but the motion's the same as in context 0.
    """
    phase, interval, count = _schedule_at(starts, np.arange(num_frames))
    room = _draw_room(rng, height, width, look, difficulty, context, scene)
    # The object. Sizes are in pixels relative to the frame height so every frame size looks alike.
    r = float(height * rng.uniform(0.06, 0.09 + 0.04 * difficulty)) * size
    colour = _look_colour(rng, "object", look)
    beats = _Beats(phase, interval, count)
    if context:  # shows the pattern `context` places further on, drawn as it would be in context 0 ...
        shown = PATTERNS[(PATTERNS.index(pattern) + context) % len(PATTERNS)]
        track = _motion_of(shown, motion)(copy.deepcopy(rng), room, beats, r, look)
        # ... and leaves `rng` where context 0 does, drawing into a throwaway room (a swing's post)
        _motion_of(pattern, motion)(rng, replace(room, bg=room.bg.copy()), beats, r, look)
    else:
        track = _motion_of(pattern, motion)(rng, room, beats, r, look)
    movers = _distractors(rng, room, r, look, num_frames, fps, distractors)
    others = _draw_decoys(decoys, room, r, look, num_frames, fps, difficulty, motion) if decoys is not None else []
    return _compose(rng, room, track, movers, shape, colour, difficulty, others)


@dataclass
class _Room:
    """The static scene: the background (H, W, 3) float32 with the floor (rows ``floor_top`` on) and the
    walls (columns before ``left`` and from ``right`` on) drawn in (in the room scene; in the open one
    they only bound the motion); its gradient ends ``c1``, ``c2``."""

    bg: np.ndarray
    c1: np.ndarray
    c2: np.ndarray
    floor_top: int
    left: int
    right: int
    wall_colour: np.ndarray
    scene: str = "room"  # SCENES: "room" draws the floor, walls and the pendulum's post and rod, "open" none

    @property
    def furnished(self) -> bool:
        return self.scene == "room"

    @property
    def inner_height(self) -> float:  # from the top of the frame to the floor, in pixels
        return float(self.floor_top)

    @property
    def inner_width(self) -> float:  # between the walls, in pixels
        return float(self.right - self.left)


@dataclass
class _Beats:
    """Where each frame lies among the impacts (see :func:`_schedule_at`), each (T,)."""

    phase: np.ndarray
    interval: np.ndarray
    count: np.ndarray

    @property
    def rel(self) -> np.ndarray:  # longer interval, larger swing or bounce (as with gravity)
        return self.interval / self.interval.max()


@dataclass
class _Decoys:
    """The silent decoys of a video: how many, the random stream they are drawn from (a stream of their
    own, so that they change nothing else in the video) and the mean impact rate of their schedules."""

    count: int
    rng: np.random.Generator
    event_rate: float = 0.8


@dataclass
class _Motion:
    """The object's centre, radius and flash (0: its colour, 1: white) per frame, each (T,), and the
    pendulum's rod ``(x, y, half width, colour)`` when it hangs from one."""

    cx: np.ndarray
    cy: np.ndarray
    radius: np.ndarray
    flash: np.ndarray
    rod: tuple | None = None


def _draw_room(
    rng: np.random.Generator,
    height: int,
    width: int,
    look: float,
    difficulty: float,
    context: int = 0,
    scene: str = "room",
) -> _Room:
    """A gradient at a random angle with blotches, a floor and two walls, in colours around the palette;
    the gradient's palette is the context's (0: ``c1``/``c2``, k: ``c1-k``/``c2-k``). In the ``"open"``
    scene the floor and walls bound the motion but are not drawn, and the floor's top lies anywhere from
    6 to 50 % of the height above the bottom (6 to 14 % in the room), so that where the object is in a
    still frame says little about its pattern."""
    if scene not in SCENES:
        raise ValueError(f"unknown scene {scene!r}")
    furnished = scene == "room"
    suffix = f"-{context}" if context else ""
    c1 = _look_colour(rng, "c1" + suffix, look).astype(np.float64)
    c2 = _look_colour(rng, "c2" + suffix, look).astype(np.float64)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = np.cos(angle) * xx / width + np.sin(angle) * yy / height
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    bg = c1 + ramp[..., None] * (c2 - c1)
    texture_amp = look * rng.uniform(5, 10 + 40 * difficulty) / 0.35
    bg += texture_amp * _smooth_texture(rng, height, width)[..., None] * rng.uniform(0.5, 1.0, 3)
    floor_h = max(2, round(height * rng.uniform(0.06, 0.14 if furnished else 0.5)))
    floor_top = height - floor_h
    left = max(1, round(width * rng.uniform(0.02, 0.12)))
    right = width - max(1, round(width * rng.uniform(0.02, 0.12)))
    floor_colour = _look_colour(rng, "floor", look)
    wall_colour = _look_colour(rng, "wall", look)
    if furnished:
        bg[floor_top:] = floor_colour
        bg[:floor_top, :left] = wall_colour
        bg[:floor_top, right:] = wall_colour
    return _Room(bg.astype(np.float32), c1, c2, floor_top, left, right, wall_colour, scene)


# The motion patterns: (rng, room, beats, object radius, look) -> _Motion, one function each.


def _within(rng: np.random.Generator, lo: float, hi: float) -> float:
    """A position drawn uniformly in [lo, hi], or the middle where an object too large leaves no room."""
    return float(rng.uniform(lo, hi)) if lo <= hi else (lo + hi) / 2


def _room_for(room: _Room, space: float, least: float) -> float:
    """``space`` (pixels a motion may span), at least ``least`` in the open scene, where the ground may lie
    high enough to leave less (the room's floor rarely does; kept as it was there)."""
    return space if room.furnished else max(least, space)


def _resting(n: int, r: float) -> tuple[np.ndarray, np.ndarray]:
    """(radius, flash) of an object that keeps its size and colour."""
    return np.full(n, r, np.float32), np.zeros(n, np.float32)


def _bounce(rng: np.random.Generator, room: _Room, beats: _Beats, r: float, look: float) -> _Motion:
    """A ball that hits the floor at each impact, higher after a longer interval."""
    n = len(beats.phase)
    cx = np.full(n, _within(rng, room.left + r, room.right - r), np.float32)
    top = rng.uniform(0.45, 0.85) * _room_for(room, room.inner_height - 2 * r - 2, 0.0)
    cy = room.floor_top - r - top * beats.rel**2 * 4 * beats.phase * (1 - beats.phase)
    return _Motion(cx, cy, *_resting(n, r))


def _slide(rng: np.random.Generator, room: _Room, beats: _Beats, r: float, look: float) -> _Motion:
    """A block on the floor that hits one wall at an impact, then the other at the next."""
    return _along_floor(rng, room, beats, r, beats.phase)


def _along_floor(rng: np.random.Generator, room: _Room, beats: _Beats, r: float, progress: np.ndarray) -> _Motion:
    """A block on the floor that runs from one wall (at an impact) to the other (at the next), having
    covered the fraction ``progress`` (T,) of the way at each frame; it starts towards either wall."""
    n = len(beats.phase)
    span = room.inner_width - 2 * r
    direction = 1 if rng.random() < 0.5 else 0
    forward = (beats.count + direction) % 2 == 0
    covered = span * progress
    cx = np.where(forward, room.left + r + covered, room.right - r - covered).astype(np.float32)
    cy = np.full(n, room.floor_top - r, np.float32)
    return _Motion(cx, cy, *_resting(n, r))


def _swing(rng: np.random.Generator, room: _Room, beats: _Beats, r: float, look: float) -> _Motion:
    """A pendulum that strikes a post (drawn into the room, with its rod, unless the scene is open) when
    it swings back to the vertical."""
    n, floor_top, left, right = len(beats.phase), room.floor_top, room.left, room.right
    side = 1 if rng.random() < 0.5 else -1
    post_w = max(2.0, r / 2)
    py = rng.uniform(0.06, 0.2) * room.bg.shape[0]
    length = rng.uniform(0.5, 0.8) * _room_for(room, floor_top - py - 2 * r - 2, 2 * r)
    sin_max = min(math.sin(rng.uniform(0.6, 1.1)), max(0.2, (room.inner_width - 3 * r - post_w - 4) / length))
    reach = length * sin_max + r
    lo = left + (reach if side < 0 else r + post_w + 1)
    hi = right - (reach if side > 0 else r + post_w + 1)
    px = rng.uniform(lo, hi) if lo < hi else (left + right) / 2
    theta = math.asin(sin_max) * beats.rel * 4 * beats.phase * (1 - beats.phase)
    cx = (px + side * length * np.sin(theta)).astype(np.float32)
    cy = (py + length * np.cos(theta)).astype(np.float32)
    post_x0 = round(px - side * r - (post_w if side > 0 else 0))
    rod = (px, py, max(0.8, r / 5), _look_colour(rng, "rod", look))
    if not room.furnished:
        return _Motion(cx, cy, *_resting(n, r))
    room.bg[int(py + length - r) : floor_top, max(0, post_x0) : max(0, post_x0 + round(post_w))] = room.wall_colour
    return _Motion(cx, cy, *_resting(n, r), rod=rod)


_SWELL = 0.7  # how much larger the pulsing object is at a beat


def _pulse(rng: np.random.Generator, room: _Room, beats: _Beats, r: float, look: float) -> _Motion:
    """An object in the air that swells and lights up at each beat, then relaxes; in the open scene it
    sits on the ground (a disc touching it when fully swollen; a bar, 0.35 as high, floats above) and
    does not light up."""
    n = len(beats.phase)
    cx = np.full(n, _within(rng, room.left + 2 * r, room.right - 2 * r), np.float32)
    if room.furnished:
        cy = np.full(n, _within(rng, 2 * r, room.floor_top - 2 * r), np.float32)
    else:
        cy = np.full(n, room.floor_top - (1 + _SWELL) * r - 1, np.float32)
    decay = np.exp(-beats.phase * beats.interval / rng.uniform(2.0, 4.0))
    flash = 0.6 * decay if room.furnished else np.zeros(n)
    return _Motion(cx, cy, r * (1 + _SWELL * decay), flash)


_MOTIONS = {"bounce": _bounce, "slide": _slide, "swing": _swing, "pulse": _pulse}

# The speed profiles (``motion="profiles"``): the fraction of the wall-to-wall span covered at the phase
# p in [0, 1) of a run. Each speed runs uniformly from 0 to twice the mean; only their order differs.
_PROFILES = {
    "bounce": lambda p: 2 * p - p**2,  # decelerating: fast off the wall, slowing to the next
    "slide": lambda p: p**2,  # accelerating
    "swing": lambda p: np.where(p < 0.5, 2 * p**2, 1 - 2 * (1 - p) ** 2),  # slow-fast-slow
    "pulse": lambda p: np.where(p < 0.5, 2 * p - 2 * p**2, 2 * p**2 - 2 * p + 1),  # fast-slow-fast
}


def _motion_of(pattern: str, motion: str):
    """The motion function of ``pattern``, ``(rng, room, beats, radius, look) -> _Motion``: its own kind
    of motion (``motion="kinds"``, :data:`_MOTIONS`), or the block sliding between the walls at the
    pattern's speed profile (``"profiles"``, :data:`_PROFILES`)."""
    if motion == "kinds":
        return _MOTIONS[pattern]
    if motion != "profiles":
        raise ValueError(f"unknown motion {motion!r}")
    profile = _PROFILES[pattern]

    def run(rng: np.random.Generator, room: _Room, beats: _Beats, r: float, look: float) -> _Motion:
        return _along_floor(rng, room, beats, r, profile(beats.phase))

    return run


def _draw_decoys(
    decoys: _Decoys,
    room: _Room,
    r: float,
    look: float,
    num_frames: int,
    fps: int,
    difficulty: float,
    motion: str,
) -> list[tuple]:
    """``decoys.count`` silent objects, each doing a motion pattern drawn uniformly (whatever the class)
    on an impact schedule of its own, through the object's motion functions (a swing's post is drawn
    into the room in the room scene): ``(shape, colour, _Motion)`` each. Every draw comes from ``decoys.rng``."""
    rng, frames = decoys.rng, np.arange(num_frames)
    drawn = []
    for _ in range(decoys.count):
        pattern = PATTERNS[int(rng.integers(len(PATTERNS)))]
        shape = shape_in_scene(SHAPES[int(rng.integers(len(SHAPES)))], room.scene)
        radius = r * rng.uniform(0.7, 1.0)
        colour = _look_colour(rng, "decoy", look)
        starts = _event_schedule(rng, num_frames, fps, difficulty, decoys.event_rate)
        beats = _Beats(*_schedule_at(starts, frames))
        drawn.append((shape, colour, _motion_of(pattern, motion)(rng, room, beats, radius, look)))
    return drawn


def _distractors(
    rng: np.random.Generator, room: _Room, r: float, look: float, num_frames: int, fps: int, distractors: int
) -> list[tuple]:
    """Up to ``distractors`` silent objects on smooth Lissajous paths, motion without any impact:
    ``(shape, radius, colour, x (T,), y (T,))`` each."""
    left, right, floor_top, room_w, room_h = room.left, room.right, room.floor_top, room.inner_width, room.inner_height
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
                shape_in_scene(SHAPES[int(rng.integers(len(SHAPES)))], room.scene),
                dr,
                _random_colour(rng, room.c1, room.c2, 60 + 40 * look),
                xc + ax * np.sin(2 * np.pi * fx * t + p1),
                yc + ay * np.sin(2 * np.pi * fy * t + p2),
            )
        )
    return movers


def _compose(
    rng: np.random.Generator,
    room: _Room,
    motion: _Motion,
    movers: list[tuple],
    shape: str,
    colour: np.ndarray,
    difficulty: float,
    decoys: Sequence[tuple] = (),
) -> np.ndarray:
    """The frames (T, H, W, 3) uint8: the room, the distractors, the decoys (see :func:`_draw_decoys`),
    the object (each with its rod, if any), grey sensor noise. Frame by frame, so the float working
    copy stays small and in cache."""
    bg, num_frames = room.bg, len(motion.cx)
    height, width = bg.shape[:2]
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    noise_std = np.float32(1.0 + 10.0 * difficulty)
    for f in range(num_frames):
        img = bg.copy()
        for dshape, dr, dcolour, dx, dy in movers:
            _stamp(img, dshape, float(dx[f]), float(dy[f]), dr, dcolour)
        for dshape, dcolour, dmotion in decoys:
            _stamp_motion(img, f, dmotion, dshape, dcolour)
        _stamp_motion(img, f, motion, shape, colour)
        img += noise_std * rng.standard_normal((height, width, 1), dtype=np.float32)  # sensor noise, grey
        np.clip(img, 0, 255, out=img)
        frames[f] = img
    return frames


_WHITE = np.full(3, 255, np.float32)


def _stamp_motion(img: np.ndarray, f: int, motion: _Motion, shape: str, colour: np.ndarray) -> None:
    """Paint frame ``f`` of ``motion`` into ``img`` in place: the rod (if it hangs from one), then the
    object of ``shape``, its ``colour`` lit towards white by its flash."""
    cx, cy = float(motion.cx[f]), float(motion.cy[f])
    if motion.rod is not None:
        px, py, half_w, rod_colour = motion.rod
        _stamp_segment(img, (px, py), (cx, cy), half_w, rod_colour)
        _stamp(img, "disc", px, py, half_w + 1, rod_colour)
    _stamp(img, shape, cx, cy, float(motion.radius[f]), colour + motion.flash[f] * (_WHITE - colour))
