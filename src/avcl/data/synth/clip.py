"""One video, drawn from its own seed: its class cues, impact schedule, frames and sound."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avcl.data.synth.events import _event_schedule
from avcl.data.synth.scene import _Decoys, _render_frames
from avcl.data.synth.sound import _render_audio
from avcl.data.synth.tables import (
    CLASS_ORDER,
    PATTERNS,
    SHAPE_OF_SOUND,
    SHAPES,
    TEXTURE_OF_PATTERN,
    TEXTURES,
    shape_in_scene,
)


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
    decoys: int = 0
    motion: str = "kinds"
    contexts: int = 1
    scene: str = "room"


@dataclass
class _Clip:
    """One rendered video, before encoding."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    audio: np.ndarray  # (S,) float32 in [-1, 1], S = T * sample_rate / fps
    events: list[int]  # frame indices of the visual events, which are also the sound onsets
    shape: str  # the object's shape
    texture: str  # the sound texture that follows the motion (a value of TEXTURE_OF_PATTERN)
    context: int = 0  # the visual context (0 to 3): its background palette, and the motion shown is
    # PATTERNS[(pattern's position + context) % 4]


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
    shape = SHAPE_OF_SOUND[sound] if keep_shape < cue else SHAPES[int(any_shape)]
    texture = TEXTURE_OF_PATTERN[pattern] if keep_texture < cue else TEXTURES[int(any_texture)]
    return shape, texture


def _render_clip(job: _VideoJob) -> _Clip:
    """Draw one video from its own seed: duration, frames, events and audio. The decoys draw from a
    stream of their own (``SeedSequence([seed, class, index, 1])``), so that they change only their
    own pixels: the rest of the video is the same with or without them; so does the visual context
    (``SeedSequence([seed, class, index, 2])``), which changes only the frames."""
    pattern, sound = CLASS_ORDER[job.class_index]
    seed = [job.seed, job.class_index, job.index]
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    shape, texture = _draw_cues(rng, pattern, sound, job.cue)
    shape = shape_in_scene(shape, job.scene)
    num_frames = max(2, round(rng.uniform(job.min_duration, job.max_duration) * job.fps))
    starts = _event_schedule(rng, num_frames, job.fps, job.difficulty, job.event_rate)
    # From a stream of its own, so that with one context (the default) nothing else changes.
    context_rng = np.random.default_rng(np.random.SeedSequence([*seed, 2]))
    context = int(context_rng.integers(job.contexts)) * (len(PATTERNS) // job.contexts)
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
        job.motion,
        _Decoys(job.decoys, np.random.default_rng(np.random.SeedSequence([*seed, 1])), job.event_rate),
        context,
        job.scene,
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
    return _Clip(frames, audio, events, shape, texture, context)
