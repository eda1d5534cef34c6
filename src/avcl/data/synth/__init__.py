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
palette), ``size``, ``distractors``, ``decoys`` (silent objects doing motion patterns of their own),
``ambient``, ``event_rate``, ``difficulty`` (noise, jitter, ranges). ``motion="profiles"`` makes every
pattern the same block sliding between the walls, the pattern being its speed profile
(:data:`PROFILE_OF_PATTERN`); ``scene="open"`` draws no floor, walls, post or rod, so that a still frame
tells little of the pattern (:data:`SCENES`).

The videos are real files: lossless H.264 (yuv420p) video and mono AAC audio in .mp4, laid out like
Kinetics, ``OUT/{train,val,test}/<class>/<class>_<index>.mp4``, with ``OUT/manifest.csv`` (including
hashes of each file's decoded media), ``OUT/classes.txt`` and ``OUT/synth.json`` (the generation
settings). Everything follows from the seed: the video of class ``c`` and index ``i`` is drawn from
``SeedSequence([seed, c, i])``, whatever the worker count or the number of classes asked for, and its
decoded frames and audio are the same on every machine (:func:`media_hashes`, :func:`verify_benchmark`).
``docs/synthetic-benchmark.md`` describes the design.

The package, along its seams: ``tables`` (classes, cues, textures, palette: data), ``events`` (the
impact schedule), ``scene`` (the frames), ``sound`` (the audio), ``clip`` (one video from its seed),
``writing`` (encoding, media hashes, the manifest, verification) and ``benchmark``
(:func:`generate_benchmark`).
"""

from avcl.data.synth.benchmark import generate_benchmark, split_counts
from avcl.data.synth.clip import _Clip as _Clip
from avcl.data.synth.clip import _draw_cues as _draw_cues
from avcl.data.synth.clip import _render_clip as _render_clip
from avcl.data.synth.clip import _VideoJob as _VideoJob
from avcl.data.synth.scene import _stamp as _stamp
from avcl.data.synth.sound import _timing_texture as _timing_texture
from avcl.data.synth.sound import motion_envelope
from avcl.data.synth.tables import (
    AAC_SAMPLE_RATES,
    CLASS_ORDER,
    MANIFEST_COLUMNS,
    MAX_CLASSES,
    MOTIONS,
    PATTERNS,
    PROFILE_OF_PATTERN,
    SCENES,
    SHAPE_IN_OPEN_SCENE,
    SHAPE_OF_SOUND,
    SOUND_CODES,
    SOUNDS,
    SPLITS,
    TEXTURE_OF_PATTERN,
    TEXTURE_PHASE,
    class_names,
)
from avcl.data.synth.writing import X264_OPTIONS, media_hashes, verify_benchmark
from avcl.data.synth.writing import _rgb_to_yuv420p as _rgb_to_yuv420p

__all__ = [
    "AAC_SAMPLE_RATES",
    "CLASS_ORDER",
    "MANIFEST_COLUMNS",
    "MAX_CLASSES",
    "MOTIONS",
    "PATTERNS",
    "PROFILE_OF_PATTERN",
    "SCENES",
    "SHAPE_IN_OPEN_SCENE",
    "SHAPE_OF_SOUND",
    "SOUND_CODES",
    "SOUNDS",
    "SPLITS",
    "TEXTURE_OF_PATTERN",
    "TEXTURE_PHASE",
    "X264_OPTIONS",
    "class_names",
    "generate_benchmark",
    "media_hashes",
    "motion_envelope",
    "split_counts",
    "verify_benchmark",
]
