"""The synthetic benchmark's tables: classes, cues, textures, palette and the formats it may write.

Plain data, shared by the scene, the sound and the writer; the functions that draw a motion pattern, a
timbre or a texture are looked up by these names in ``scene.py`` and ``sound.py``.
"""

from __future__ import annotations

from avcl.errors import UserError

PATTERNS = ("bounce", "slide", "swing", "pulse")
SOUNDS = ("bell", "drum", "pluck", "clap")

# The fixed class order. Any prefix keeps the grid as complete as it can be: from 3 classes on, some
# classes share a pattern and others a timbre; the first 4 form a 2x2 grid, the first 8 (the default)
# 4 patterns x 2 timbres, the first 12 4 patterns x 3 timbres, all 16 the full 4x4 grid.
CLASS_ORDER: tuple[tuple[str, str], ...] = (
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
MAX_CLASSES = len(CLASS_ORDER)
SPLITS = ("train", "val", "test")
# How the sound codes the motion pattern (``sound_code``): "timing", one shared texture sound whose
# loudness follows the motion of the pattern (the pattern is in *when* it is loud, not in its spectrum);
# "spectrum", a texture of its own per pattern (TEXTURE_OF_PATTERN: whistle, scrape, whoosh, hum).
SOUND_CODES = ("timing", "spectrum")
# What the motion patterns look like (``motion``): "kinds", four kinds of motion (a ball bouncing, a block
# sliding, a pendulum swinging, an object pulsing); "profiles", one kind for all, the block sliding from
# wall to wall, each pattern a speed profile of every run (PROFILE_OF_PATTERN): the same speeds in
# another order, so only the order within a run tells the patterns apart.
MOTIONS = ("kinds", "profiles")
# What surrounds the object (``scene``): "room", a floor and two walls, the pendulum's post and rod, the
# pulsing object lighting up (a still frame shows much of the pattern: the block on the floor, the rod);
# "open", the object alone over the background: no floor, walls, post or rod drawn, the ground it bounces
# and slides on at a random height, the pulsing object resting on that ground without lighting up, and
# the drum's object a flat bar (SHAPE_IN_OPEN_SCENE) rather than a square, whose corners alone tell it
# from the bell's disc.
SCENES = ("room", "open")
PROFILE_OF_PATTERN = {
    "bounce": "decelerating",
    "slide": "accelerating",
    "swing": "slow-fast-slow",
    "pulse": "fast-slow-fast",
}
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
    "context",
    "video_sha256",
    "audio_sha256",
)
# The cross-modal class cues: the shape that shows a timbre, and the sound texture that a pattern makes.
SHAPE_OF_SOUND = {"bell": "disc", "drum": "square", "pluck": "triangle", "clap": "diamond"}
TEXTURE_OF_PATTERN = {"bounce": "whistle", "slide": "scrape", "swing": "whoosh", "pulse": "hum"}
# The fixed palette the looks vary around (``look``): background gradient ends, floor, walls, object, the
# pendulum's rod and the silent decoys (``decoys``).
PALETTE = {
    "c1": (70.0, 90.0, 120.0),
    "c2": (110.0, 130.0, 150.0),
    "c1-1": (125.0, 95.0, 65.0),
    "c2-1": (160.0, 130.0, 95.0),
    "c1-2": (55.0, 110.0, 65.0),
    "c2-2": (95.0, 150.0, 105.0),
    "c1-3": (110.0, 65.0, 115.0),
    "c2-3": (150.0, 105.0, 155.0),
    "floor": (60.0, 50.0, 40.0),
    "wall": (150.0, 150.0, 160.0),
    "object": (235.0, 205.0, 60.0),
    "rod": (30.0, 30.0, 30.0),
    "decoy": (200.0, 90.0, 200.0),
}
SHAPES = tuple(SHAPE_OF_SOUND.values())
SHAPE_IN_OPEN_SCENE = {"square": "bar"}  # the shapes the open scene draws otherwise; the rest as they are


def shape_in_scene(shape: str, scene: str) -> str:
    """The shape ``scene`` draws for ``shape``: the open scene's from :data:`SHAPE_IN_OPEN_SCENE`."""
    return SHAPE_IN_OPEN_SCENE.get(shape, shape) if scene == "open" else shape


TEXTURES = tuple(TEXTURE_OF_PATTERN.values())
PATTERN_OF_TEXTURE = {texture: pattern for pattern, texture in TEXTURE_OF_PATTERN.items()}
# The phase of the motion cycle (0: an impact, 1: the next) at which the shared texture sounds, per pattern.
TEXTURE_PHASE = {"bounce": 0.2, "slide": 0.4, "swing": 0.6, "pulse": 0.8}
TEXTURE_WIDTH = 0.3  # the burst's length, as a fraction of the cycle
# name -> centre pitch or band in Hz of the timbres (their sounds: ``sound.py``). Pitch ranges overlap at
# high difficulty, so the timbre (partials, decay, noisiness), not one frequency bin, tells the sounds apart.
TIMBRE_CENTRE_HZ = {"bell": 880.0, "drum": 110.0, "pluck": 262.0, "clap": 1600.0}
# Sample rates that AAC in MP4 can carry.
AAC_SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)


def class_names(classes: int) -> list[str]:
    """Names (``pattern-sound``) of the first ``classes`` classes of the fixed order; the position is the label."""
    if not 2 <= classes <= MAX_CLASSES:
        raise UserError(f"the synthetic benchmark has 2 to {MAX_CLASSES} classes, not {classes}")
    return [f"{pattern}-{sound}" for pattern, sound in CLASS_ORDER[:classes]]
