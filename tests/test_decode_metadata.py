"""Real-world video metadata: display rotation (phone videos) and frame counts the container does not state."""

from __future__ import annotations

import av
import numpy as np
import pytest

from avcl.data.decode import iter_frames, read_frames


def _write_rotated(path, degrees: int, height: int = 32, width: int = 64, frames: int = 6):
    """A video whose stored frames are white in their left quarter, shown turned by ``degrees`` (CCW)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.set_display_rotation(degrees)
        image = np.zeros((height, width, 3), np.uint8)
        image[:, : width // 4] = 255
        for _ in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.mark.parametrize("degrees,white", [(0, "left"), (90, "bottom"), (-90, "top"), (180, "right")])
def test_rotated_video_decodes_upright(tmp_path, degrees, white):
    path = _write_rotated(tmp_path / f"rot{degrees}.mp4", degrees)
    frames = list(iter_frames(path, size=None))
    assert len(frames) == 6
    frame = frames[0].mean(axis=2)
    turned = degrees % 180 != 0
    assert frame.shape == ((64, 32) if turned else (32, 64))
    h, w = frame.shape
    regions = {
        "left": frame[:, : w // 8],
        "right": frame[:, -w // 8 :],
        "top": frame[: h // 8],
        "bottom": frame[-h // 8 :],
    }
    assert regions[white].mean() > 200
    opposite = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}[white]
    assert regions[opposite].mean() < 20
    # A requested size is the displayed (upright) size, and clip reads agree with the stream.
    resized = read_frames(path, start=2, count=3, size=(40, 24))
    assert resized.shape == (3, 40, 24, 3)


@pytest.mark.parametrize("suffix", [".mkv", ".webm"])
def test_probe_counts_frames_where_the_container_states_none(tmp_path, suffix):
    from media import has_encoder, write_video

    from avcl.data.decode import probe

    codec = "libvpx" if suffix == ".webm" else "libx264"
    if not has_encoder(codec):
        pytest.skip(f"no {codec} encoder")
    path = write_video(tmp_path / f"v{suffix}", num_frames=37, fps=25, codec=codec, audio=False)
    assert probe(path).num_frames == len(list(iter_frames(path, size=None))) == 37
