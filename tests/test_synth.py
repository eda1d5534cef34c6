"""The synthetic audio-visual benchmark: real H.264/AAC files, deterministic, with the class structure
(look-alike / sound-alike classes) and the audio-visual synchronisation it promises."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import av
import numpy as np
import pytest

from avcl.cli import main as avcl_main
from avcl.data.synth import MANIFEST_COLUMNS, class_names, generate_benchmark, split_counts
from avcl.errors import UserError

FPS, SR = 25, 24000
# 4 classes = the 2x2 grid bounce/slide x bell/drum; difficulty 0 keeps the scene clean enough for the
# simple trackers below (no distractors, little noise).
TINY = dict(classes=4, per_class=3, seed=0, height=48, width=64, fps=FPS, min_duration=2.4, max_duration=3.0,
            difficulty=0.0, sample_rate=SR, progress=False)


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
    grid = {tuple(n.split("-")) for n in class_names(12)}
    assert grid == {(p, s) for p in ("bounce", "slide", "swing", "pulse") for s in ("bell", "drum", "pluck")}
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
    assert json.loads((bench / "synth.json").read_text())["complete"] is True
    assert len(rows) == 12
    for row in rows:
        split, label, name = Path(row["path"]).parts
        assert (split, label) == (row["split"], row["label"]) and (bench / row["path"]).is_file()
        assert name.startswith(label + "_") and name.endswith(".mp4")
        assert row["label"] == f"{row['pattern']}-{row['sound']}"
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
    args = ["synth", str(out), "--classes", "2", "--per-class", "1", "--seed", "1", "--height", "48",
            "--width", "64", "--min-duration", "2.4", "--max-duration", "3.0", "--difficulty", "0",
            "--workers", "1", "--quiet"]
    assert avcl_main(args) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "2 videos, 2 classes" in printed
    other, ref = decode(out / "train/bounce-bell/bounce-bell_0000.mp4"), decode(bench / "train/bounce-bell/bounce-bell_0000.mp4")
    assert other[0].shape != ref[0].shape or not np.array_equal(other[0], ref[0])
    assert len(other[1]) != len(ref[1]) or not np.allclose(other[1], ref[1])
    # Writing again into a benchmark folder replaces it; a folder with other content is refused.
    assert avcl_main(args) == 0
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert avcl_main(["synth", str(foreign), "--quiet"]) == 2
    assert "not empty" in capsys.readouterr().err and (foreign / "notes.txt").exists()


def test_look_alike_classes_differ_in_sound_and_sound_alike_classes_differ_in_motion(bench):
    rows = read_manifest(bench)
    pitch = {label: [] for label in class_names(4)}
    motion = {label: [] for label in class_names(4)}
    for row in rows:
        frames, audio = decode(bench / row["path"])
        pitch[row["label"]].append(dominant_frequency(audio))
        cx, cy, _ = object_track(frames)
        motion[row["label"]].append(np.std(cy) / max(np.std(cx), 1e-6))  # > 1: moves up and down
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
            assert onset[max(0, t - 1):t + 2].max() > 2.0, (row["path"], t)  # a loud onset at the impact
            near[max(0, t - 2):t + 3] = True
        assert onset[~near].max() < 1.0, row["path"]  # and none elsewhere
        checked += 1
    assert checked == 6
