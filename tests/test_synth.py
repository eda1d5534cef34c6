"""The synthetic audio-visual benchmark: real H.264/AAC files, deterministic, with the class structure
(look-alike / sound-alike classes), the cross-modal class cues and the audio-visual synchronisation it
promises."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest

from avcl.cli import main as avcl_main
from avcl.data.synth import (
    MANIFEST_COLUMNS,
    MOTIONS,
    PATTERNS,
    SCENES,
    SHAPE_IN_OPEN_SCENE,
    SHAPE_OF_SOUND,
    SOUNDS,
    TEXTURE_OF_PATTERN,
    TEXTURE_PHASE,
    X264_OPTIONS,
    _draw_cues,
    _render_clip,
    _rgb_to_yuv420p,
    _stamp,
    _timing_texture,
    _VideoJob,
    class_names,
    generate_benchmark,
    media_hashes,
    motion_envelope,
    split_counts,
    verify_benchmark,
)
from avcl.data.synth.scene import (
    _MOTIONS,
    _PROFILES,
    _Beats,
    _Decoys,
    _distractors,
    _draw_decoys,
    _draw_room,
    _render_frames,
)
from avcl.data.synth.tables import PALETTE
from avcl.errors import UserError

FPS, SR = 25, 24000
# 4 classes = the 2x2 grid bounce/slide x bell/drum; difficulty 0 keeps the scene clean enough for the
# simple trackers below (no distractors, little noise).
TINY = dict(
    classes=4,
    per_class=3,
    seed=0,
    height=48,
    width=64,
    fps=FPS,
    min_duration=2.4,
    max_duration=3.0,
    difficulty=0.0,
    sample_rate=SR,
    progress=False,
)


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    """Written by 2 worker processes."""
    return generate_benchmark(tmp_path_factory.mktemp("synth") / "a", workers=2, **TINY).parent


def read_manifest(root: Path) -> list[dict[str, str]]:
    with open(root / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def decode(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(T, H, W, 3) uint8 frames and (S,) float32 mono audio of a file."""
    with av.open(str(path)) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    with av.open(str(path)) as c:
        audio = np.concatenate([f.to_ndarray()[0] for f in c.decode(audio=0)])
    return frames, audio


def dominant_frequency(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio))
    freqs = np.fft.rfftfreq(len(audio), 1 / SR)
    spectrum[freqs < 40] = 0  # ignore the DC and rumble
    return float(freqs[np.argmax(spectrum)])


def object_track(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: centroid x, centroid y and lowest row of the pixels that differ from the temporal median."""
    background = np.median(frames, axis=0)
    mask = np.abs(frames.astype(np.float32) - background).sum(-1) > 60
    rows = np.arange(frames.shape[1])[None, :, None]
    cols = np.arange(frames.shape[2])[None, None, :]
    n = np.maximum(mask.sum((1, 2)), 1)
    cx = (mask * cols).sum((1, 2)) / n
    cy = (mask * rows).sum((1, 2)) / n
    bottom = np.where(mask, rows, -1).max((1, 2))
    return cx, cy, bottom


def audio_onset_strength(audio: np.ndarray, num_frames: int) -> np.ndarray:
    """(T,) rise of the log energy of each video frame's audio over the previous frame's.

    A floor at 1/1000 of the loudest frame keeps the background noise from making rises of its own.
    """
    hop = SR // FPS
    energy = (audio[: num_frames * hop].reshape(num_frames, hop) ** 2).sum(1)
    level = np.log(energy + 1e-3 * energy.max())
    return np.diff(level, prepend=level[0])


def test_class_order_keeps_look_alike_and_sound_alike_classes():
    names = class_names(16)
    assert len(set(names)) == 16 and names[:3] == ["bounce-bell", "slide-drum", "bounce-drum"]
    for k in range(3, 17):
        patterns = [n.split("-")[0] for n in class_names(k)]
        sounds = [n.split("-")[1] for n in class_names(k)]
        assert len(set(patterns)) < k and len(set(sounds)) < k  # some classes share a look, some a sound
    for k, timbres in ((8, ("bell", "drum")), (12, ("bell", "drum", "pluck"))):  # 4 patterns x 2, x 3
        grid = {tuple(n.split("-")) for n in class_names(k)}
        assert grid == {(p, s) for p in ("bounce", "slide", "swing", "pulse") for s in timbres}
    for bad in (1, 17):
        with pytest.raises(UserError, match="2 to 16 classes"):
            class_names(bad)


def test_split_counts_are_stratified_and_never_leave_a_split_empty_when_avoidable():
    assert split_counts(24, (0.7, 0.15, 0.15)) == (17, 4, 3)
    assert split_counts(3, (0.7, 0.15, 0.15)) == (1, 1, 1)
    assert split_counts(10, (1.0, 0.0, 0.0)) == (10, 0, 0)
    assert all(sum(split_counts(n, (0.6, 0.3, 0.1))) == n for n in range(1, 40))


def test_layout_manifest_and_classes_file(bench):
    rows = read_manifest(bench)
    assert tuple(rows[0].keys()) == MANIFEST_COLUMNS
    assert (bench / "classes.txt").read_text().split() == class_names(4)
    settings = json.loads((bench / "synth.json").read_text())
    assert settings["complete"] is True and settings["cue"] == 1.0
    knobs = (
        "look",
        "size",
        "distractors",
        "decoys",
        "motion",
        "contexts",
        "scene",
        "ambient",
        "sound_code",
        "event_rate",
    )
    assert {k: settings[k] for k in knobs} == {
        "look": 0.35,
        "size": 1.5,
        "distractors": 0,
        "decoys": 0,
        "motion": "kinds",
        "contexts": 1,
        "scene": "room",
        "ambient": 0.05,
        "sound_code": "timing",
        "event_rate": 0.8,
    }
    assert len(rows) == 12
    for row in rows:
        split, label, name = Path(row["path"]).parts
        assert (split, label) == (row["split"], row["label"]) and (bench / row["path"]).is_file()
        assert name.startswith(label + "_") and name.endswith(".mp4")
        assert row["label"] == f"{row['pattern']}-{row['sound']}"
        assert row["shape"] in SHAPE_OF_SOUND.values() and row["texture"] in TEXTURE_OF_PATTERN.values()
        assert row["context"] == "0"
    for label in class_names(4):  # 3 videos a class: one per split
        assert sorted(r["split"] for r in rows if r["label"] == label) == ["test", "train", "val"]
    assert [r["split"] for r in rows] == sorted((r["split"] for r in rows), key=["train", "val", "test"].index)


def test_files_are_mp4_with_h264_video_and_aac_audio_of_the_stated_length(bench):
    for row in read_manifest(bench):
        path = bench / row["path"]
        with av.open(str(path)) as c:
            assert c.format.name.split(",")[0] == "mov"  # the mov/mp4 demuxer
            video, audio = c.streams.video[0], c.streams.audio[0]
            assert video.codec_context.name == "h264" and video.codec_context.pix_fmt == "yuv420p"
            assert (video.codec_context.height, video.codec_context.width) == (48, 64)
            assert audio.codec_context.name == "aac" and audio.codec_context.sample_rate == SR
        frames, samples = decode(path)
        assert len(frames) == int(row["frames"])
        assert 2.4 <= float(row["duration"]) <= 3.0
        assert abs(len(samples) / SR - float(row["duration"])) < 0.05, path


def test_same_seed_gives_identical_media_whatever_the_worker_count_and_class_count(bench, tmp_path):
    again = generate_benchmark(tmp_path / "b", workers=1, **TINY).parent
    assert (again / "manifest.csv").read_text() == (bench / "manifest.csv").read_text()  # hashes included
    for row in read_manifest(bench):  # byte-identical files too (x264 without assembly)
        assert (again / row["path"]).read_bytes() == (bench / row["path"]).read_bytes(), row["path"]
    for row in read_manifest(bench):
        first, second = decode(bench / row["path"]), decode(again / row["path"])
        assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1]), row["path"]
    # A video depends on (seed, class, index) only: asking for fewer classes and videos gives the same one.
    small = generate_benchmark(tmp_path / "c", workers=1, **{**TINY, "classes": 2, "per_class": 1}).parent
    name = "bounce-bell/bounce-bell_0000.mp4"
    same, ref = decode(small / "train" / name), decode(bench / "train" / name)
    assert np.array_equal(same[0], ref[0]) and np.array_equal(same[1], ref[1])


def test_different_seed_gives_different_media_and_cli_reports_it(bench, tmp_path, capsys):
    out = tmp_path / "seed1"
    args = [
        "synth",
        str(out),
        "--classes",
        "2",
        "--per-class",
        "1",
        "--seed",
        "1",
        "--height",
        "48",
        "--width",
        "64",
        "--min-duration",
        "2.4",
        "--max-duration",
        "3.0",
        "--difficulty",
        "0",
        "--workers",
        "1",
        "--quiet",
        "--cue",
        "0.5",
    ]
    assert avcl_main(args) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "2 videos, 2 classes" in printed and "cue 0.5" in printed
    assert json.loads((out / "synth.json").read_text())["cue"] == 0.5
    other, ref = (
        decode(out / "train/bounce-bell/bounce-bell_0000.mp4"),
        decode(bench / "train/bounce-bell/bounce-bell_0000.mp4"),
    )
    assert other[0].shape != ref[0].shape or not np.array_equal(other[0], ref[0])
    assert len(other[1]) != len(ref[1]) or not np.allclose(other[1], ref[1])
    # Writing again into a benchmark folder replaces it; a folder with other content is refused.
    assert avcl_main(args) == 0
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert avcl_main(["synth", str(foreign), "--quiet"]) == 2
    assert "not empty" in capsys.readouterr().err and (foreign / "notes.txt").exists()
    assert avcl_main(["synth", str(tmp_path / "bad"), "--cue", "1.5", "--quiet"]) == 2
    assert "cue must be in [0, 1], not 1.5" in capsys.readouterr().err
    # One place validates: the command line passes its values on, generate_benchmark refuses them.
    assert avcl_main(["synth", str(tmp_path / "bad"), "--sound-code", "pitch", "--quiet"]) == 2
    assert "sound_code must be one of timing, spectrum, not 'pitch'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_look_alike_classes_differ_in_sound_and_sound_alike_classes_differ_in_motion(bench):
    rows = read_manifest(bench)
    pitch = {label: [] for label in class_names(4)}
    motion = {label: [] for label in class_names(4)}
    for row in rows:
        frames, audio = decode(bench / row["path"])
        pitch[row["label"]].append(dominant_frequency(audio))
        cx, cy, _ = object_track(frames)
        spread = [np.subtract(*np.percentile(x, [90, 10])) for x in (cy, cx)]  # robust to a stray frame
        motion[row["label"]].append(spread[0] / max(spread[1], 1e-6))  # > 1: moves up and down
    # Same look (bounce), different sound: every bell rings far above every drum.
    assert min(pitch["bounce-bell"] + pitch["slide-bell"]) > 2 * max(pitch["bounce-drum"] + pitch["slide-drum"])
    # Same sound, different look: bounce moves vertically, slide horizontally, whatever the timbre.
    assert min(motion["bounce-bell"] + motion["bounce-drum"]) > 3
    assert max(motion["slide-bell"] + motion["slide-drum"]) < 1 / 3


def test_sound_onsets_coincide_with_the_frames_where_the_ball_hits_the_floor(bench):
    checked = 0
    for row in read_manifest(bench):
        if row["pattern"] != "bounce":
            continue
        frames, audio = decode(bench / row["path"])
        _, _, bottom = object_track(frames)
        # Impacts: each run of frames where the ball's lowest pixel reaches the floor gives the middle of
        # the frames where it is lowest.
        low = np.flatnonzero(bottom >= bottom.max() - 1)
        impacts = []
        for run in np.split(low, np.flatnonzero(np.diff(low) > 1) + 1):
            lowest = run[bottom[run] == bottom[run].max()]
            impacts.append(int(round(lowest.mean())))
        assert impacts, row["path"]
        events = [int(e) for e in row["events"].split()]
        assert len(impacts) == len(events) and all(abs(a - b) <= 1 for a, b in zip(impacts, events)), row["path"]
        onset = audio_onset_strength(audio, len(frames))
        near = np.zeros(len(frames), bool)
        for t in impacts:
            assert onset[max(0, t - 1) : t + 2].max() > 2.0, (row["path"], t)  # a loud onset at the impact
            near[max(0, t - 2) : t + 3] = True
        # and none elsewhere: the texture's bursts rise over a few frames (raised cosine), far more gently
        assert onset[~near].max() < 1.5, row["path"]
        checked += 1
    assert checked == 6


@pytest.mark.parametrize("cue", [0.75, 0.3, 0.0, 1.0])
def test_shape_follows_the_timbre_and_texture_the_pattern_with_probability_cue(cue):
    """Each cue matches the class with probability cue + (1 - cue) / 4; at cue=0 both are uniform
    whatever the class, i.e. independent of it."""
    rng = np.random.default_rng(0)
    n = 2000  # draws per class: a binomial fraction then has a standard deviation of at most 0.011
    for pattern, sound in zip(PATTERNS, SOUNDS):
        draws = [_draw_cues(rng, pattern, sound, cue) for _ in range(n)]
        shapes, textures = Counter(s for s, _ in draws), Counter(t for _, t in draws)
        cues = (("shape", shapes, SHAPE_OF_SOUND[sound]), ("texture", textures, TEXTURE_OF_PATTERN[pattern]))
        for name, counts, own in cues:
            assert len(counts) == (1 if cue == 1 else 4), (name, counts)
            for value, count in counts.items():
                expected = cue + (1 - cue) / 4 if value == own else (1 - cue) / 4
                assert abs(count / n - expected) < 0.045, (pattern, sound, name, value, count)


def test_cue_changes_the_shape_and_the_texture_and_nothing_else():
    job = _VideoJob("unused.mp4", 1, 0, 0, 48, 64, FPS, 2.4, 3.0, 0.5, SR, 1.0)  # class 1 = slide-drum
    cued = _render_clip(job)
    assert (cued.shape, cued.texture) == ("square", "scrape")
    for index in range(20):  # the first video whose cue-free draws pick another shape and texture
        free = _render_clip(dataclasses.replace(job, cue=0.0, index=index))
        if free.shape != "square" and free.texture != "scrape":
            break
    else:
        pytest.fail("none of 20 videos drew another shape and texture at cue 0")
    cued = _render_clip(dataclasses.replace(job, index=index))
    assert free.events == cued.events and free.frames.shape == cued.frames.shape
    changed = np.any(free.frames != cued.frames, axis=-1)  # (T, H, W): only the object's pixels
    assert changed.any(axis=(1, 2)).all() and changed.mean() < 0.05
    assert len(free.audio) == len(cued.audio) and not np.array_equal(free.audio, cued.audio)


def test_the_four_shapes_are_distinct_and_the_triangle_stands_on_its_base():
    masks = {}
    for shape in SHAPE_OF_SOUND.values():
        img = np.zeros((40, 40, 3), np.float32)
        _stamp(img, shape, 20.0, 20.0, 12.0, np.full(3, 255, np.float32))
        masks[shape] = img[..., 0] > 127
    for a, b in itertools.combinations(masks, 2):
        assert (masks[a] ^ masks[b]).sum() > 0.15 * min(masks[a].sum(), masks[b].sum()), (a, b)
    widths = masks["triangle"].sum(1)
    rows = np.flatnonzero(widths)
    assert widths[rows[0]] <= 3 and widths[rows[-1]] >= 20  # apex at the top, base at the bottom
    assert rows[-1] == np.flatnonzero(masks["square"].any(1))[-1]  # on the floor where the block would be


def test_the_slide_texture_is_heard_between_the_impacts_of_the_videos_that_have_it():
    """Between impacts (from 0.35 s after one to the next), the 2-5 kHz band of slide-drum videos holds
    far more energy with the slide's scrape than with any other texture."""

    def band_energy_between_impacts(clip) -> float:
        keep = np.ones(len(clip.audio), bool)
        for e in clip.events:
            start = round(e * SR / FPS)
            keep[max(0, start - SR // 100) : start + int(0.35 * SR)] = False
        power = np.abs(np.fft.rfft(clip.audio * keep)) ** 2
        freqs = np.fft.rfftfreq(len(clip.audio), 1 / SR)
        return float(power[(freqs >= 2000) & (freqs <= 5000)].sum() / keep.sum())

    job = _VideoJob("unused.mp4", 1, 0, 7, 48, 64, FPS, 2.4, 3.0, 0.5, SR, 0.5, sound_code="spectrum")
    energy = {True: [], False: []}
    for index in range(16):
        clip = _render_clip(dataclasses.replace(job, index=index))
        energy[clip.texture == "scrape"].append(band_energy_between_impacts(clip))
    assert len(energy[True]) >= 3 and len(energy[False]) >= 3
    assert min(energy[True]) > 5 * max(energy[False]), energy


def test_manifest_hashes_match_the_files_and_a_changed_file_is_caught(bench, tmp_path, capsys):
    rows = read_manifest(bench)
    assert all(len(row["video_sha256"]) == 64 and len(row["audio_sha256"]) == 64 for row in rows)
    assert len({row["video_sha256"] for row in rows}) == len(rows)
    assert verify_benchmark(bench, workers=1) == (len(rows), [])
    assert avcl_main(["synth", str(bench), "--verify", "--quiet", "--workers", "1"]) == 0
    assert "all match the manifest" in capsys.readouterr().out
    # A copy with one file swapped for another video is caught, by the function and by the CLI.
    copy = tmp_path / "copy"
    shutil.copytree(bench, copy)
    shutil.copy(copy / rows[1]["path"], copy / rows[0]["path"])
    checked, problems = verify_benchmark(copy, workers=2)
    assert checked == len(rows) and len(problems) == 1 and rows[0]["path"] in problems[0]
    assert avcl_main(["synth", str(copy), "--verify", "--quiet", "--workers", "1"]) == 1
    assert "1 differ" in capsys.readouterr().out


def test_video_is_lossless_so_decoding_gives_the_rendered_frames_whatever_the_encoder_did(bench):
    """The decoded yuv420p planes are exactly the integer conversion of the rendered frames: what x264's
    code path (SIMD or not) did cannot change the decoded pictures."""
    assert X264_OPTIONS["qp"] == "0" and "asm=0" in X264_OPTIONS["x264-params"]
    row = read_manifest(bench)[0]
    job = _VideoJob(
        "unused.mp4",
        0,
        int(Path(row["path"]).stem.split("_")[-1]),
        TINY["seed"],
        48,
        64,
        FPS,
        TINY["min_duration"],
        TINY["max_duration"],
        0.0,
        SR,
        0.75,
    )
    clip = _render_clip(job)
    with av.open(str(bench / row["path"])) as c:
        planes = np.stack([f.to_ndarray() for f in c.decode(video=0)])
    assert np.array_equal(planes, _rgb_to_yuv420p(clip.frames))


def test_same_hashes_when_numpy_runs_without_its_cpu_specific_simd(bench, tmp_path):
    """NumPy picks SIMD kernels by CPU (AVX-512, AVX2, ...), and some round differently (float32 sin and
    exp). Generating with only NumPy's baseline kernels, as on the oldest CPU the wheel supports, must
    give the same manifest, hashes included. On a CPU without extra kernels both runs are alike anyway."""
    from numpy._core._multiarray_umath import __cpu_baseline__

    out = tmp_path / "baseline"
    code = (
        "import sys; from avcl.data.synth import generate_benchmark; "
        f"generate_benchmark(sys.argv[1], workers=1, **{TINY!r})"
    )
    env = {
        **os.environ,
        "NPY_ENABLE_CPU_FEATURES": " ".join(__cpu_baseline__) or "none",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    if not __cpu_baseline__:
        env.pop("NPY_ENABLE_CPU_FEATURES")
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, env=env)
    assert (out / "manifest.csv").read_text() == (bench / "manifest.csv").read_text()


def test_media_hashes_are_stable_for_a_file(bench):
    row = read_manifest(bench)[0]
    assert media_hashes(bench / row["path"]) == (row["video_sha256"], row["audio_sha256"])
    assert media_hashes(bench / row["path"]) == (row["video_sha256"], row["audio_sha256"])


def test_an_oracle_reads_the_class_from_the_manifest_factors(bench, tmp_path):
    """The class is (pattern, sound): those two columns determine the label. The cross-modal cues carry
    it too: at cue 1, the object's shape gives the sound and the texture's timing gives the pattern, so
    (shape, texture) alone determine the label as well; at cue 0 they are drawn whatever the class."""
    sound_of_shape = {shape: sound for sound, shape in SHAPE_OF_SOUND.items()}
    pattern_of_texture = {texture: pattern for pattern, texture in TEXTURE_OF_PATTERN.items()}
    for row in read_manifest(bench):  # cue 1 (the default)
        assert row["label"] == f"{row['pattern']}-{row['sound']}"
        assert row["label"] == f"{pattern_of_texture[row['texture']]}-{sound_of_shape[row['shape']]}"


def _band_envelope(audio: np.ndarray, num_frames: int, lo: float = 1000.0, hi: float = 2000.0) -> np.ndarray:
    """(T,) energy of each video frame's audio between ``lo`` and ``hi`` Hz."""
    hop = SR // FPS
    chunks = audio[: num_frames * hop].reshape(num_frames, hop)
    power = np.abs(np.fft.rfft(chunks * np.hanning(hop), axis=1)) ** 2
    freqs = np.fft.rfftfreq(hop, 1 / SR)
    return power[:, (freqs >= lo) & (freqs <= hi)].sum(1)


@pytest.mark.parametrize("cue", [1.0, 0.0])
def test_the_texture_sounds_at_the_phase_of_the_visible_motion_that_the_manifest_names(cue):
    """The shared texture (1-2 kHz band) bursts once per motion cycle at the phase of the pattern it
    follows: measured from the rendered sound and from the impacts *seen* in the frames (the ball's
    lowest points), the band's loudness matches the envelope of the manifest's texture far better than
    that of any other pattern. At cue 1 that is the video's own pattern; at cue 0 whatever was drawn."""
    job = _VideoJob("unused.mp4", 0, 0, 11, 48, 64, FPS, 4.0, 4.0, 0.0, SR, cue)  # bounce-bell
    job = dataclasses.replace(job, class_index=2)  # bounce-drum: the drum stays below the texture's band
    best_own = []
    for index in range(6):
        clip = _render_clip(dataclasses.replace(job, index=index))
        _, _, bottom = object_track(clip.frames)
        low = np.flatnonzero(bottom >= bottom.max() - 1)
        seen = [int(round(run.mean())) for run in np.split(low, np.flatnonzero(np.diff(low) > 1) + 1)]
        assert [abs(a - b) <= 1 for a, b in zip(seen, clip.events)] and len(seen) == len(clip.events)
        # The schedule as the frames show it, with virtual impacts one interval before and after.
        step = int(np.diff(seen).mean()) if len(seen) > 1 else len(clip.frames)
        starts = np.asarray([seen[0] - step, *seen, seen[-1] + step, seen[-1] + 2 * step])
        band = _band_envelope(clip.audio, len(clip.frames))
        t = np.arange(len(clip.frames)) + 0.5
        keep = np.ones(len(t), bool)
        for e in clip.events:  # leave out the impacts themselves
            keep[max(0, e - 1) : e + 2] = False
        corr = {p: np.corrcoef(motion_envelope(p, starts, t)[keep], band[keep])[0, 1] for p in TEXTURE_PHASE}
        own = {v: k for k, v in TEXTURE_OF_PATTERN.items()}[clip.texture]
        if cue == 1.0:
            assert own == "bounce"
        best_own.append(max(corr, key=corr.get) == own)
        assert corr[own] > 0.6, (index, clip.texture, corr)
    assert all(best_own)


def test_the_timing_texture_has_the_same_spectrum_and_loudness_whatever_the_pattern():
    """Only the timing codes the pattern: over a clip, the shared texture's power and spectrum do not
    tell the patterns apart (the same random draws give the same carrier)."""
    starts = np.arange(0, 200, 20)  # 7 whole cycles of 20 frames in the 140 frames rendered
    powers, spectra = [], []
    freqs = np.fft.rfftfreq(140 * SR // FPS, 1 / SR)
    for texture in TEXTURE_OF_PATTERN.values():
        audio = _timing_texture(np.random.default_rng(3), texture, starts, 140 * SR // FPS, FPS, SR)
        powers.append(float(np.mean(audio.astype(np.float64) ** 2)))
        power = np.abs(np.fft.rfft(audio.astype(np.float64))) ** 2
        centroid = float((freqs * power).sum() / power.sum())
        spectra.append((centroid, float(np.sqrt(((freqs - centroid) ** 2 * power).sum() / power.sum()))))
    assert max(powers) / min(powers) < 1.1
    for centroid, width in spectra[1:]:  # centre and width of the spectrum within 3 %
        assert abs(centroid / spectra[0][0] - 1) < 0.03 and abs(width / spectra[0][1] - 1) < 0.03, spectra


def tiny_cli_args(out: Path, *extra: str) -> list[str]:
    """``avcl synth`` with the settings of TINY, 2 classes."""
    sizes = ["--height", "48", "--width", "64", "--fps", str(FPS), "--sample-rate", str(SR)]
    durations = ["--min-duration", "2.4", "--max-duration", "3.0", "--difficulty", "0"]
    return [
        "synth",
        str(out),
        "--classes",
        "2",
        "--per-class",
        "3",
        *sizes,
        *durations,
        "--workers",
        "1",
        "--quiet",
        *extra,
    ]


def rows_by_path(root: Path) -> dict[str, dict[str, str]]:
    return {row["path"]: row for row in read_manifest(root)}


def colour_mask(frames: np.ndarray, colour, tolerance: float = 25.0, flash: float = 0.0) -> np.ndarray:
    """(T, H, W) pixels within ``tolerance`` (RGB) of ``colour`` lit towards white by up to ``flash``."""
    c = np.asarray(colour, np.float32)
    seg = np.float32(255) - c
    x = frames.astype(np.float32) - c
    t = np.clip((x @ seg) / float(seg @ seg), 0.0, flash)
    return np.linalg.norm(x - t[..., None] * seg, axis=-1) < tolerance


def dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    """(T, H, W) ``mask`` grown by ``steps`` pixels (8-neighbourhood) within each frame."""
    for _ in range(steps):
        grown = mask.copy()
        grown[:, 1:] |= mask[:, :-1]
        grown[:, :-1] |= mask[:, 1:]
        grown[:, :, 1:] |= grown[:, :, :-1].copy()
        grown[:, :, :-1] |= grown[:, :, 1:].copy()
        mask = grown
    return mask


def test_decoys_are_silent_moving_objects_that_change_only_their_own_pixels():
    """The decoys draw from a random stream of their own: the audio, the events, the cues and every pixel
    away from the decoys (their bodies, a pendulum's rod, a swing's post) are what they are without
    them (changed pixels lie next to a decoy's colour, a rod's, a post's or the object's, which hides
    them where they pass behind it). In a clean scene (look 0) the decoys show the palette's decoy
    colour, and it moves."""
    job = _VideoJob("unused.mp4", 0, 0, 5, 48, 64, FPS, 2.4, 3.0, 0.0, SR, 1.0, look=0.0)
    for class_index, index in ((0, 0), (4, 1), (6, 2), (1, 3)):
        plain = _render_clip(dataclasses.replace(job, class_index=class_index, index=index))
        clip = _render_clip(dataclasses.replace(job, class_index=class_index, index=index, decoys=3))
        assert np.array_equal(plain.audio, clip.audio) and plain.events == clip.events
        assert (plain.shape, plain.texture) == (clip.shape, clip.texture)
        decoy = colour_mask(clip.frames, PALETTE["decoy"], flash=0.6)  # a pulsing decoy lights up
        assert not colour_mask(plain.frames, PALETTE["decoy"], flash=0.6).any()
        assert decoy.any(axis=(1, 2)).mean() > 0.9 and decoy.sum((1, 2)).mean() > 20
        assert np.mean([(decoy[f] != decoy[f + 1]).any() for f in range(len(decoy) - 1)]) > 0.8  # they move
        changed = np.any(plain.frames != clip.frames, axis=-1)
        rod, post = colour_mask(clip.frames, PALETTE["rod"]), colour_mask(clip.frames, PALETTE["wall"], 15.0)
        front = colour_mask(clip.frames, PALETTE["object"], flash=0.6)  # the object, drawn over the decoys
        assert changed.any() and not (changed & ~dilate(decoy | rod | post | front, 2)).any(), (class_index, index)
        assert changed.mean() < 0.2
    # Under motion="profiles" the decoys slide along the floor too: no higher or lower than the block.
    clip = _render_clip(dataclasses.replace(job, class_index=1, decoys=3, motion="profiles"))
    decoy_rows = np.flatnonzero(colour_mask(clip.frames, PALETTE["decoy"]).any(axis=(0, 2)))
    block_rows = np.flatnonzero(colour_mask(clip.frames, PALETTE["object"], 30.0).any(axis=(0, 2)))
    assert len(decoy_rows) and block_rows[0] - 1 <= decoy_rows[0] and decoy_rows[-1] <= block_rows[-1] + 1


def test_decoys_through_the_command_line_change_the_frames_only(bench, tmp_path):
    """N decoys are recorded in synth.json; the manifest is the one without decoys but for the video hashes."""
    out = tmp_path / "decoys"
    assert avcl_main(tiny_cli_args(out, "--decoys", "2")) == 0
    assert json.loads((out / "synth.json").read_text())["decoys"] == 2
    rows, ref = rows_by_path(out), rows_by_path(bench)
    assert len(rows) == 6
    for path, row in rows.items():
        assert {k: v for k, v in row.items() if k != "video_sha256"} == {
            k: v for k, v in ref[path].items() if k != "video_sha256"
        }
        assert row["video_sha256"] != ref[path]["video_sha256"], path


def test_the_defaults_given_explicitly_write_the_same_media(bench, tmp_path):
    root = generate_benchmark(
        tmp_path / "explicit",
        workers=1,
        **{**TINY, "classes": 2},
        decoys=0,
        motion="kinds",
        contexts=1,
        scene="room",
    )
    rows, ref = rows_by_path(root.parent), rows_by_path(bench)
    assert len(rows) == 6 and all(row == ref[path] for path, row in rows.items())


def test_the_speed_profiles_go_from_0_to_1_with_the_same_speeds_in_another_order():
    p = (np.arange(100000) + 0.5) / 100000
    speeds = {}
    for pattern, profile in _PROFILES.items():
        g = profile(p)
        assert abs(profile(np.zeros(1))[0]) < 1e-12 and abs(profile(np.ones(1))[0] - 1) < 1e-12
        assert np.all(np.diff(g) >= 0), pattern
        speeds[pattern] = np.sort(np.diff(g) * len(p))
    for pattern in PATTERNS:  # uniform between 0 and twice the mean (1)
        assert np.allclose(speeds[pattern], speeds["bounce"], atol=1e-3), pattern
        assert abs(np.quantile(speeds[pattern], 0.25) - 0.5) < 0.01 and speeds[pattern][-1] > 1.99


def block_track(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: centroid x and y of the pixels of the object's palette colour (look 0)."""
    mask = colour_mask(frames, PALETTE["object"], 30.0)
    n = mask.sum((1, 2))
    assert n.min() > 5
    rows = np.arange(frames.shape[1])[None, :, None]
    cols = np.arange(frames.shape[2])[None, None, :]
    return (mask * cols).sum((1, 2)) / n, (mask * rows).sum((1, 2)) / n


@pytest.mark.parametrize("pattern", PATTERNS)
def test_under_motion_profiles_every_pattern_is_the_block_sliding_at_its_speed_profile(pattern):
    """The block stays on the floor, turns at every impact, and its speed over each run between two
    impacts follows the pattern's profile: bounce decelerates, slide accelerates, swing is fastest in
    the middle of a run, pulse near the walls."""
    class_index = class_names(8).index(f"{pattern}-bell")
    job = _VideoJob("unused.mp4", class_index, 0, 2, 48, 96, FPS, 4.0, 4.0, 0.0, SR, 1.0, look=0.0)
    runs = 0
    for index in range(2):
        clip = _render_clip(dataclasses.replace(job, index=index, motion="profiles"))
        x, y = block_track(clip.frames)
        assert np.ptp(y) < 0.5 and y.mean() > 0.6 * 48  # on the floor (the centroid wobbles with the edges)
        for e0, e1 in zip(clip.events, clip.events[1:]):
            speed = np.abs(np.diff(x[e0 : e1 + 1]))  # speed[k]: from frame e0 + k to the next
            assert np.sign(x[e1] - x[e0]) != np.sign(x[e0] - x[max(0, e0 - 1)]) or e0 == 0  # it turned
            q = len(speed) // 4
            early, late, middle = speed[:q].mean(), speed[-q:].mean(), speed[q:-q].mean()
            signature = {
                "bounce": early > 2 * late,
                "slide": late > 2 * early,
                "swing": middle > 2 * max(early, late),
                "pulse": min(early, late) > 2 * middle,
            }
            assert signature[pattern], (pattern, index, e0, e1, early, middle, late)
            runs += 1
    assert runs >= 3


def test_a_context_shows_the_pattern_as_the_shifted_motion_over_its_own_palette():
    """Context k draws the background from the palette ``c1-k``/``c2-k`` and moves the object exactly as
    the pattern k places further along PATTERNS moves it in context 0 (the same random draws): the
    object's track is the same in both renders, and at look 0 the background corner has the
    context's colour."""
    starts = np.array([-3, 5, 14, 22, 31])
    for k, pattern in itertools.product((1, 2, 3), PATTERNS):
        shown = PATTERNS[(PATTERNS.index(pattern) + k) % len(PATTERNS)]
        args = (starts, 30, 48, 64, FPS, 0.0)
        in_context = _render_frames(np.random.default_rng(k), pattern, "disc", *args, look=0.0, context=k)
        plain = _render_frames(np.random.default_rng(k), shown, "disc", *args, look=0.0)
        masks = [colour_mask(frames, PALETTE["object"], flash=0.6) for frames in (in_context, plain)]
        assert masks[0].sum((1, 2)).min() > 20
        for a, b in (masks, masks[::-1]):  # the same pixels, but at the edges (blended into the background)
            assert not (a & ~dilate(b, 1)).any(), (k, pattern)
        # the walls, and a post only where the shown motion is a swing: nothing of the hidden pattern's
        away = ~dilate(masks[0] | masks[1], 2)  # a flashing object's edges blend into either background
        walls = [colour_mask(frames, PALETTE["wall"], 15.0) & away for frames in (in_context, plain)]
        for a, b in (walls, walls[::-1]):
            assert not (a & ~dilate(b, 1)).any(), (k, pattern)
        ends = np.stack([PALETTE[f"c1-{k}"], PALETTE[f"c2-{k}"]])
        corner = in_context[:, 4, 30].astype(np.float32).mean(0)  # between the walls, above the floor
        assert np.all(corner >= ends.min(0) - 12) and np.all(corner <= ends.max(0) + 12), (k, corner)


@pytest.mark.parametrize("contexts", [2, 4])
def test_contexts_are_drawn_per_video_recorded_and_change_only_the_frames(tmp_path, contexts):
    """With 2 contexts the videos are in context 0 or 2, with 4 in any; the manifest records it; a video
    in context 0 is the default one, and every video's audio, events and cues are the default's."""
    out = tmp_path / f"c{contexts}"
    assert avcl_main(tiny_cli_args(out, "--per-class", "8", "--contexts", str(contexts))) == 0
    assert json.loads((out / "synth.json").read_text())["contexts"] == contexts
    default = tmp_path / "c1"
    assert avcl_main(tiny_cli_args(default, "--per-class", "8")) == 0
    rows, ref = rows_by_path(out), rows_by_path(default)
    seen = Counter(row["context"] for row in rows.values())
    assert set(seen) == ({"0", "2"} if contexts == 2 else {"0", "1", "2", "3"}), seen
    for path, row in rows.items():
        same = {k: v for k, v in row.items() if k not in ("video_sha256", "context")}
        assert same == {k: v for k, v in ref[path].items() if k not in ("video_sha256", "context")}
        assert (row["video_sha256"] == ref[path]["video_sha256"]) == (row["context"] == "0"), path


def test_decoys_and_motion_are_refused_out_of_range(tmp_path, capsys):
    for knobs, message in (
        ({"contexts": 3}, "contexts must be 1, 2 or 4, not 3"),
        ({"contexts": 2.0}, "contexts must be 1, 2 or 4, not 2.0"),
        ({"decoys": -1}, "decoys must be a whole number, 0 or more, not -1"),
        ({"decoys": 1.5}, "decoys must be a whole number, 0 or more, not 1.5"),
        ({"motion": "speeds"}, "motion must be one of kinds, profiles, not 'speeds'"),
        ({"scene": "garden"}, "scene must be one of room, open, not 'garden'"),
    ):
        with pytest.raises(UserError, match=re.escape(message)):
            generate_benchmark(tmp_path / "bad", **TINY, **knobs)
    assert MOTIONS == ("kinds", "profiles")
    assert avcl_main(["synth", str(tmp_path / "bad"), "--decoys", "-2", "--quiet"]) == 2
    assert "decoys must be a whole number, 0 or more, not -2" in capsys.readouterr().err
    assert avcl_main(["synth", str(tmp_path / "bad"), "--motion", "speeds", "--quiet"]) == 2
    assert "motion must be one of kinds, profiles, not 'speeds'" in capsys.readouterr().err
    assert avcl_main(["synth", str(tmp_path / "bad"), "--scene", "garden", "--quiet"]) == 2
    assert "scene must be one of room, open, not 'garden'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_the_open_scene_draws_the_background_alone_where_the_room_has_its_furniture():
    """The open scene's background is the room's gradient and blotches without the floor and walls painted
    over them (the same draws), and its ground lies anywhere from 6 to 50 % of the height above the
    bottom (the room's floor: 6 to 14 %)."""
    assert SCENES == ("room", "open")
    tops = []
    for seed in range(40):
        rngs = np.random.default_rng(seed), np.random.default_rng(seed)
        room = _draw_room(rngs[0], 60, 80, 0.35, 0.5)
        open_ = _draw_room(rngs[1], 60, 80, 0.35, 0.5, scene="open")
        assert room.furnished and not open_.furnished
        assert rngs[0].random() == rngs[1].random()  # as many draws: what follows is drawn alike
        inside = (slice(0, room.floor_top), slice(room.left, room.right))
        assert np.array_equal(open_.bg[inside], room.bg[inside])
        floor = room.bg[room.floor_top :]
        assert np.ptp(floor.reshape(-1, 3), axis=0).max() == 0  # one flat colour in the room ...
        assert np.ptp(open_.bg[room.floor_top :].reshape(-1, 3), axis=0).max() > 1  # ... the background in the open
        assert np.ptp(open_.bg[:, : room.left].reshape(-1, 3), axis=0).max() > 1  # no wall either
        tops.append(1 - open_.floor_top / 60)
    assert 0.06 <= min(tops) < 0.2 and 0.35 < max(tops) <= 0.5


def test_in_the_open_scene_the_swing_has_no_rod_or_post_and_the_pulse_rests_on_the_ground_unlit():
    beats = _Beats(np.linspace(0, 0.95, 20), np.full(20, 10.0), np.zeros(20))
    for seed in range(10):
        rng = np.random.default_rng(seed)
        room = _draw_room(rng, 60, 80, 0.35, 0.5, scene="open")
        bg = room.bg.copy()
        swing = _MOTIONS["swing"](rng, room, beats, 5.0, 0.35)
        assert swing.rod is None and np.array_equal(room.bg, bg)  # nothing drawn into the scene
        pulse = _MOTIONS["pulse"](rng, room, beats, 5.0, 0.35)
        assert not pulse.flash.any() and np.ptp(pulse.cy) == 0
        assert abs(float(pulse.cy[0] + pulse.radius.max()) - (room.floor_top - 1)) < 0.05  # touches it swollen
        furnished = _draw_room(np.random.default_rng(seed), 60, 80, 0.35, 0.5)
        assert _MOTIONS["swing"](np.random.default_rng(seed), furnished, beats, 5.0, 0.35).rod is not None
        assert _MOTIONS["pulse"](np.random.default_rng(seed), furnished, beats, 5.0, 0.35).flash.max() > 0.5
        # The open swing draws what the room's does (its rod's colour too), so the rest of a swing video,
        # its audio included, is drawn alike; the open pulse draws no height, one number fewer.
        rngs = np.random.default_rng(seed), np.random.default_rng(seed)
        for rng, where in zip(rngs, (furnished, room)):
            _MOTIONS["swing"](rng, where, beats, 5.0, 0.35)
        assert rngs[0].random() == rngs[1].random()


def test_the_open_scene_draws_the_drum_as_a_bar_and_records_it(tmp_path):
    """The bar is as wide as the square and 0.35 as high; through the command line the open scene's
    manifest names the bar where the room's names the square, and the audio of these classes (bounce,
    slide: every draw is the room's) does not change."""
    assert SHAPE_IN_OPEN_SCENE == {"square": "bar"}
    masks = {}
    for shape in ("square", "bar"):
        img = np.zeros((40, 40, 3), np.float32)
        _stamp(img, shape, 20.0, 20.0, 12.0, np.full(3, 255, np.float32))
        masks[shape] = img[..., 0] > 127
    assert masks["bar"].any(0).sum() == masks["square"].any(0).sum()
    assert abs(masks["bar"].any(1).sum() - 0.35 * masks["square"].any(1).sum()) <= 1
    room, open_ = tmp_path / "room", tmp_path / "open"
    assert avcl_main(tiny_cli_args(room)) == 0 and avcl_main(tiny_cli_args(open_, "--scene", "open")) == 0
    assert json.loads((open_ / "synth.json").read_text())["scene"] == "open"
    rows, ref = rows_by_path(open_), rows_by_path(room)
    for path, row in rows.items():
        assert row["shape"] == SHAPE_IN_OPEN_SCENE.get(ref[path]["shape"], ref[path]["shape"])
        assert row["audio_sha256"] == ref[path]["audio_sha256"] and row["events"] == ref[path]["events"]
        assert row["video_sha256"] != ref[path]["video_sha256"]
    assert {row["shape"] for row in rows.values()} == {"disc", "bar"}
    # The silent decoys and distractors take the open scene's shapes too.
    room = _draw_room(np.random.default_rng(0), 60, 80, 0.35, 0.5, scene="open")
    decoys = _draw_decoys(_Decoys(40, np.random.default_rng(1)), room, 5.0, 0.35, 20, FPS, 0.0, "kinds")
    movers = _distractors(np.random.default_rng(2), room, 5.0, 0.35, 20, FPS, 40)
    for drawn in ({d[0] for d in decoys}, {m[0] for m in movers}):
        assert "bar" in drawn and "square" not in drawn


@pytest.mark.parametrize("scene", SCENES)
def test_the_largest_objects_are_drawn_in_every_pattern_and_scene_not_refused(tmp_path, scene):
    """At ``size`` 3 an object may be too large for the room to hold a pulse anywhere but the middle; it is
    drawn there rather than failing the benchmark."""
    manifest = generate_benchmark(
        tmp_path / scene, workers=1, **{**TINY, "classes": 8, "per_class": 2}, size=3.0, scene=scene
    )
    assert len(read_manifest(manifest.parent)) == 16
