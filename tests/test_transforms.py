"""Clip sampling, crops, the spectrogram window/resize/crop and to_model_input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avcl.config import DataConfig
from avcl.data import transforms as T


def test_random_clip_start_covers_every_valid_start_and_nothing_else():
    rng = np.random.default_rng(0)
    starts = {T.random_clip_start(20, 16, rng) for _ in range(500)}
    assert starts == set(range(5))
    assert T.random_clip_start(10, 16, rng) == 0  # shorter than a clip: start at 0


def test_uniform_clip_starts_span_the_video():
    starts = T.uniform_clip_starts(100, 16, 10)
    assert starts[0] == 0 and starts[-1] == 84 and len(starts) == 10
    assert np.all(np.diff(starts) > 0)
    assert T.centre_clip_start(100, 16) == 42


def test_clip_frame_ids_repeat_the_last_frame_of_a_short_video():
    assert T.clip_frame_ids(3, 4, 100).tolist() == [3, 4, 5, 6]
    assert T.clip_frame_ids(0, 6, 4).tolist() == [0, 1, 2, 3, 3, 3]


def test_crop_clip_takes_the_same_box_in_every_frame_and_flips_width():
    frames = np.random.default_rng(0).integers(0, 256, size=(4, 10, 12, 3), dtype=np.uint8)
    clip = T.crop_clip(frames, 2, 3, 5)
    assert clip.shape == (3, 4, 5, 5) and clip.dtype == torch.uint8
    assert torch.equal(clip, torch.from_numpy(frames[:, 2:7, 3:8]).permute(3, 0, 1, 2))
    flipped = T.crop_clip(frames, 2, 3, 5, flip=True)
    assert torch.equal(flipped, clip.flip(-1))


@pytest.mark.parametrize("flip", [False, True])
def test_crop_clip_into_channel_first_or_channels_last_memory_gives_crop_clip(flip):
    frames = np.random.default_rng(1).integers(0, 256, size=(4, 10, 12, 3), dtype=np.uint8)
    expected = T.crop_clip(frames, 2, 3, 5, flip=flip)
    first = np.empty((3, 4, 5, 5), np.uint8)
    last = T.channels_last_array((3, 4, 5, 5))
    assert last.shape == (3, 4, 5, 5) and last.strides[0] == 1 and np.moveaxis(last, 0, -1).flags.c_contiguous
    for out in (first, last):
        assert T.crop_clip_into(frames, 2, 3, 5, flip, out) is out
        assert torch.equal(torch.from_numpy(out), expected)


def test_crop_boxes_stay_inside_and_centre_is_centred():
    rng = np.random.default_rng(1)
    for _ in range(100):
        y, x = T.random_crop_box(128, 171, 112, rng)
        assert 0 <= y <= 16 and 0 <= x <= 59
    assert T.centre_crop_box(128, 171, 112) == (8, 29)
    with pytest.raises(ValueError, match="does not fit"):
        T.centre_crop_box(64, 64, 112)


@pytest.mark.parametrize("n_mels,frames", [(256, 1000), (256, 120), (128, 500), (64, 37), (256, 1)])
def test_spectrogram_crop_equals_normalise_resize_then_crop(n_mels, frames):
    rng = np.random.default_rng(frames)
    mel = rng.normal(-40, 15, size=(n_mels, frames)).astype(np.float16)
    mean = rng.normal(-40, 5, size=n_mels).astype(np.float32)
    std = rng.uniform(5, 20, size=n_mels).astype(np.float32)
    normalised = torch.from_numpy((mel.astype(np.float32) - mean[:, None]) / std[:, None])
    full = F.interpolate(normalised[None, None], size=(256, 256), mode="bilinear", align_corners=False, antialias=True)[
        0, 0
    ]
    for y, x in [(0, 0), (144, 144), (37, 101)]:
        crop = T.spectrogram_crop(mel, mean, std, 256, y, x, 112)
        assert crop.shape == (112, 112) and crop.dtype == torch.float32
        torch.testing.assert_close(crop, full[y : y + 112, x : x + 112], atol=2e-5, rtol=0)
        out = np.full((112, 112), np.nan, np.float32)  # written in place: the same numbers
        assert torch.equal(T.spectrogram_crop(mel, mean, std, 256, y, x, 112, out=out), crop)
        assert torch.equal(torch.from_numpy(out), crop)
        as_float32 = T.spectrogram_crop(mel.astype(np.float32), mean, std, 256, y, x, 112)
        assert torch.equal(as_float32, crop)  # float16 is widened exactly


def test_audio_window_whole_seconds_and_padding():
    mel = np.arange(2 * 300, dtype=np.float32).reshape(2, 300)  # 3 s at 100 frames/s
    pad = np.array([-1.0, -2.0], dtype=np.float32)
    assert T.audio_window(mel, None, 1.0, 100, pad) is mel
    middle = T.audio_window(mel, 1.2, 1.5, 100, pad)
    assert middle.shape == (2, 120) and middle[0, 0] == 90 and middle[0, -1] == 209
    start = T.audio_window(mel, 1.2, 0.2, 100, pad)  # 40 frames before the audio starts
    assert start.shape == (2, 120)
    assert np.all(start[:, :40] == pad[:, None]) and start[0, 40] == 0
    end = T.audio_window(mel, 1.2, 2.9, 100, pad)
    assert np.all(end[:, -50:] == pad[:, None]) and end[0, -51] == 299
    assert T.parse_audio_window("whole") is None and T.parse_audio_window("1.2") == 1.2


def test_to_model_input_normalises_uint8_video_per_channel():
    cfg = DataConfig()
    video = torch.randint(0, 256, (2, 3, 4, 8, 8), dtype=torch.uint8)
    batch = {"video": video, "audio": torch.randn(2, 1, 8, 8), "label": torch.tensor([0, 1]), "name": ["a", "b"]}
    out = T.to_model_input(batch, cfg, "cpu")
    mean = torch.tensor(cfg.video_mean).view(3, 1, 1, 1)
    std = torch.tensor(cfg.video_std).view(3, 1, 1, 1)
    torch.testing.assert_close(out["video"], (video.float() / 255 - mean) / std)
    assert torch.equal(out["audio"], batch["audio"]) and out["name"] == ["a", "b"]

    cfg_plain = DataConfig(normalize_video=False)
    torch.testing.assert_close(T.to_model_input(batch, cfg_plain, "cpu")["video"], video.float() / 255)

    test_video = torch.randint(0, 256, (2, 5, 3, 4, 8, 8), dtype=torch.uint8)  # (B, N, 3, T, H, W)
    torch.testing.assert_close(
        T.to_model_input({"video": test_video}, cfg, "cpu")["video"], (test_video.float() / 255 - mean) / std
    )

    already = torch.randn(2, 3, 4, 8, 8)  # normalised by the dataset (normalize_on_device=false)
    assert torch.equal(T.to_model_input({"video": already}, cfg, "cpu")["video"], already)

    last = T.to_model_input({"video": video}, cfg, "cpu", channels_last=True)["video"]
    assert last.is_contiguous(memory_format=torch.channels_last_3d)

    # the loader's clips are channels-last in memory: channel-first for the model unless channels_last
    loader_video = video.permute(0, 2, 3, 4, 1).contiguous().permute(0, 4, 1, 2, 3)
    assert torch.equal(loader_video, video) and not loader_video.is_contiguous()
    plain = T.to_model_input({"video": loader_video}, cfg, "cpu")["video"]
    assert plain.is_contiguous() and torch.equal(plain, out["video"])
    kept = T.to_model_input({"video": loader_video}, cfg, "cpu", channels_last=True)["video"]
    assert kept.is_contiguous(memory_format=torch.channels_last_3d) and torch.equal(kept, out["video"])
    loader_test = test_video.permute(0, 1, 3, 4, 5, 2).contiguous().permute(0, 1, 5, 2, 3, 4)
    test_out = T.to_model_input({"video": loader_test}, cfg, "cpu", channels_last=True)["video"]
    assert test_out.is_contiguous() and torch.equal(
        test_out, T.to_model_input({"video": test_video}, cfg, "cpu")["video"]
    )
