"""Clip sampling, crops, flips, spectrogram windows and normalisation (uint8 in, float out).

Every random choice takes a ``numpy.random.Generator`` so that a sample depends only on its seed.

The spectrogram of a sample (METHOD.md section 1): the log-mel (n_mels, frames) of the whole audio is cut
to the audio window (``whole``, or ``seconds`` centred on the clip), normalised per mel band with the
cache statistics, resized to ``audio_size x audio_size`` (bilinear, antialiased as PIL and torchvision's
``Resize`` do, so that shrinking 1000 frames to 256 averages them rather than skipping some), then
cropped to ``audio_crop x audio_crop``. ``spectrogram_crop`` computes only the crop of the resized
image, which is the same numbers as resizing everything and cropping, at a fraction of the cost.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from avcl.config import DataConfig

# ------------------------------------------------------------------------------------- clip sampling


def random_clip_start(num_frames: int, clip_len: int, rng: np.random.Generator) -> int:
    """First frame of a clip drawn uniformly from the ``num_frames - clip_len + 1`` possible ones."""
    return int(rng.integers(0, max(num_frames - clip_len, 0) + 1))


def centre_clip_start(num_frames: int, clip_len: int) -> int:
    return max(num_frames - clip_len, 0) // 2


def uniform_clip_starts(num_frames: int, clip_len: int, n: int) -> np.ndarray:
    """(n,) int64 first frames of ``n`` clips spaced uniformly from the start to the end of the video."""
    return np.round(np.linspace(0, max(num_frames - clip_len, 0), n)).astype(np.int64)


def clip_frame_ids(start: int, clip_len: int, num_frames: int) -> np.ndarray:
    """(clip_len,) int64 frame indices from ``start``; a video shorter than the clip repeats its last frame."""
    return np.minimum(np.arange(start, start + clip_len), num_frames - 1).astype(np.int64)


# ----------------------------------------------------------------------------------------------- crops


def random_crop_box(height: int, width: int, size: int, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner ``(y, x)`` of a ``size x size`` crop drawn uniformly inside ``height x width``."""
    _check_crop(height, width, size)
    return int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))


def centre_crop_box(height: int, width: int, size: int) -> tuple[int, int]:
    _check_crop(height, width, size)
    return (height - size) // 2, (width - size) // 2


def _check_crop(height: int, width: int, size: int) -> None:
    if size > height or size > width:
        raise ValueError(f"crop {size}x{size} does not fit in {height}x{width}; prepare larger frames or crop smaller")


def crop_clip(frames: np.ndarray, y: int, x: int, size: int, flip: bool = False) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, T, size, size) uint8: the same crop (and flip) for every frame."""
    clip = frames[:, y : y + size, x : x + size]
    if flip:
        clip = clip[:, :, ::-1]
    return torch.from_numpy(np.ascontiguousarray(clip.transpose(3, 0, 1, 2)))


def crop_clip_into(frames: np.ndarray, y: int, x: int, size: int, flip: bool, out: np.ndarray) -> np.ndarray:
    """``crop_clip`` written into ``out`` ((3, T, size, size) uint8, e.g. a row of a batch).

    ``out`` may be channel-first in memory or a channels-last view (memory (T, size, size, 3), see
    ``channels_last_array``): the latter takes a plain copy of each cropped row, about six times faster
    than moving the colour channel first."""
    clip = frames[:, y : y + size, x : x + size]
    if flip and out.strides[0] < out.strides[3]:
        # channels-last: numpy copies a reversed row of 3-byte pixels one element at a time; torch
        # reverses the crop into a contiguous block, which then copies straight across
        torch.from_numpy(out).copy_(torch.from_numpy(clip).flip(2).permute(3, 0, 1, 2))
        return out
    if flip:
        clip = clip[:, :, ::-1]
    np.copyto(out, clip.transpose(3, 0, 1, 2))
    return out


def channels_last_array(shape: tuple[int, ...], dtype=np.uint8) -> np.ndarray:
    """An empty array of ``shape`` (..., 3, T, H, W) whose memory is laid out (..., T, H, W, 3): the
    ``channels_last_3d`` layout for 5-d video. Same shape and values as a channel-first array, cheaper
    to fill from decoded (H, W, 3) frames."""
    *lead, c, t, h, w = shape
    return np.moveaxis(np.empty((*lead, t, h, w, c), dtype=dtype), -1, -4)


# ------------------------------------------------------------------------------------------ video float


def normalize_video(video: torch.Tensor, data_cfg: DataConfig) -> torch.Tensor:
    """uint8 (..., 3, T, H, W) -> float32 in [0, 1], then per-channel mean/std if ``normalize_video``."""
    out = video.float().div_(255.0)
    if data_cfg.normalize_video:
        shape = (3, 1, 1, 1)  # the channel axis is 4th from the end in (B, 3, T, H, W) and (B, N, 3, T, H, W)
        mean = torch.tensor(data_cfg.video_mean, dtype=out.dtype, device=out.device).view(shape)
        std = torch.tensor(data_cfg.video_std, dtype=out.dtype, device=out.device).view(shape)
        out.sub_(mean).div_(std)
    return out


def stkd(video: torch.Tensor, set_len: int | None = None) -> torch.Tensor:
    """TCGL's STKD: remove the temporal mean of every pixel and channel of float video (..., 3, T, H, W).

    The mean over time is the DC term of a DCT along time, so this keeps exactly the non-zero
    frequencies (the motion). ``set_len`` divides T into consecutive sets of that many frames, each
    with its own mean removed (TCGL's 4-frame sets); None takes the whole clip.
    """
    t = video.shape[-3]
    if set_len is None or set_len == t:
        return video - video.mean(dim=-3, keepdim=True)
    if set_len <= 0 or t % set_len:
        raise ValueError(f"STKD sets of {set_len} frames do not divide a clip of {t} frames")
    sets = video.unflatten(-3, (t // set_len, set_len))
    return (sets - sets.mean(dim=-3, keepdim=True)).flatten(-4, -3)


def to_model_input(batch: dict, data_cfg: DataConfig, device: torch.device | str, channels_last: bool = False) -> dict:
    """Move a batch to ``device`` and make its video float.

    uint8 ``video`` (B, 3, T, H, W) or (B, N, 3, T, H, W) becomes float32 /255 with the per-channel
    normalisation of ``data_cfg``; a float video is already normalised (``normalize_on_device=false``)
    and is left as it is. ``channels_last`` puts 5-d video in ``channels_last_3d`` memory format;
    otherwise uint8 video is made channel-first (contiguous) on ``device`` first: the loader's batches
    are channels-last in memory (``channels_last_array``), and the model gets what it always got.
    ``data.stkd`` then removes each clip's temporal mean (:func:`stkd`). TCGL's ``tuple`` (B, 3, 3, T, H, W)
    is made float the same way. Other tensors are moved unchanged; other values are passed through.
    """
    device = torch.device(device)
    out = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    for key in ("video", "tuple"):
        video = out.get(key)
        if isinstance(video, torch.Tensor):
            if video.dtype == torch.uint8:
                if not (channels_last and video.dim() == 5):
                    video = video.contiguous()  # the loader's channels-last clips, channel-first on the device
                video = normalize_video(video, data_cfg)
            if getattr(data_cfg, "stkd", False):
                video = stkd(video)
            if channels_last and video.dim() == 5:
                video = video.contiguous(memory_format=torch.channels_last_3d)
            out[key] = video
    return out


# -------------------------------------------------------------------------------------------- audio


def parse_audio_window(window: str | float | None) -> float | None:
    """``"whole"`` (or None) -> None; ``"1.2"`` or 1.2 -> 1.2 seconds."""
    if window is None or window == "whole":
        return None
    seconds = float(window)
    if not seconds > 0:
        raise ValueError(f"audio window must be 'whole' or a positive number of seconds, got {window!r}")
    return seconds


def audio_window(
    mel: np.ndarray, seconds: float | None, centre_time: float, mel_fps: float, pad_value: np.ndarray
) -> np.ndarray:
    """Cut the (n_mels, frames) log-mel to the audio window.

    ``seconds=None``: the whole spectrogram (no copy). Otherwise ``round(seconds * mel_fps)`` frames
    centred on ``centre_time`` (seconds); frames outside the audio are ``pad_value`` (n_mels,), the
    band means, which normalisation turns into zeros.
    """
    if seconds is None:
        return mel
    n = max(1, round(seconds * mel_fps))
    start = int(round(centre_time * mel_fps - n / 2))
    frames = mel.shape[1]
    lo, hi = max(start, 0), min(start + n, frames)
    if lo == start and hi == start + n:
        return mel[:, lo:hi]
    out = np.empty((mel.shape[0], n), dtype=np.float32)
    out[:] = np.asarray(pad_value, dtype=np.float32)[:, None]
    if hi > lo:
        out[:, lo - start : hi - start] = mel[:, lo:hi]
    return out


@functools.lru_cache(maxsize=4096)
def _resize_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Antialiased bilinear resize from ``n_in`` to ``n_out`` samples in banded form: for each output,
    the first of its K input taps (n_out,) int64 and the tap weights (n_out, K) float32.

    The weights of ``F.interpolate(mode="bilinear", antialias=True, align_corners=False)`` and PIL: a
    triangle filter stretched by the scale when shrinking, plain bilinear when enlarging. A few KB per
    (n_in, n_out), cached because whole-audio spectrograms come in a limited set of lengths.
    """
    scale = n_in / n_out
    support = scale if scale >= 1.0 else 1.0
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    centre = scale * (np.arange(n_out) + 0.5)
    lo = np.maximum((centre - support + 0.5).astype(np.int64), 0)
    hi = np.minimum((centre + support + 0.5).astype(np.int64), n_in)
    taps = int((hi - lo).max())
    first = np.minimum(lo, n_in - taps)
    idx = first[:, None] + np.arange(taps)
    weights = np.clip(1.0 - np.abs((idx - centre[:, None] + 0.5) * inv), 0.0, None)
    weights *= (idx >= lo[:, None]) & (idx < hi[:, None])
    weights /= weights.sum(axis=1, keepdims=True)
    return first, weights.astype(np.float32)


def resize_weights(n_in: int, n_out: int, start: int, count: int) -> tuple[int, np.ndarray]:
    """Rows ``start:start+count`` of the (n_out, n_in) resize matrix of ``_resize_taps``, restricted to
    the input band they touch: ``(first input index of the band, (count, band) float32 weights)``."""
    first, weights = _resize_taps(n_in, n_out)
    first, weights = first[start : start + count], weights[start : start + count]
    band_lo = int(first[0])
    dense = np.zeros((count, int(first[-1]) + weights.shape[1] - band_lo), dtype=np.float32)
    dense[np.arange(count)[:, None], (first - band_lo)[:, None] + np.arange(weights.shape[1])] = weights
    return band_lo, dense


def spectrogram_crop(
    mel: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    size: int,
    y: int,
    x: int,
    crop: int,
    out: np.ndarray | None = None,
) -> torch.Tensor:
    """(crop, crop) float32: the ``crop x crop`` window at ``(y, x)`` of the (n_mels, frames) log-mel
    normalised per band (``(mel - mean) / std``, both (n_mels,)) and resized to ``size x size``;
    written into ``out`` ((crop, crop) float32, C-contiguous, e.g. a row of a batch) when given."""
    n_mels, frames = mel.shape
    if mel.shape[1] == 0:
        raise ValueError("empty spectrogram")
    x0, wx = resize_weights(frames, size, x, crop)
    if n_mels == size:  # no resize along the mel axis: take the rows
        y0, wy = y, None
        rows = slice(y, y + crop)
    else:
        y0, wy = resize_weights(n_mels, size, y, crop)
        rows = slice(y0, y0 + wy.shape[1])
    # a copy of the band in its stored type (float16 from the cache), made float32 by torch (vectorised)
    part = torch.from_numpy(mel[rows, x0 : x0 + wx.shape[1]].copy()).to(torch.float32)
    part.sub_(torch.from_numpy(mean[rows, None])).div_(torch.from_numpy(std[rows, None]))
    target = None if out is None else torch.from_numpy(out)
    if wy is None:
        return torch.matmul(part, torch.from_numpy(wx).T, out=target)
    return torch.matmul(torch.from_numpy(wy), part @ torch.from_numpy(wx).T, out=target)


def spread_positions(limit: int, n: int) -> np.ndarray:
    """(n,) int64 positions spaced uniformly over [0, limit] (crops spread along an axis)."""
    return np.round(np.linspace(0, limit, n)).astype(np.int64) if n > 1 else np.array([limit // 2], dtype=np.int64)


def clip_centre_time(start: int, clip_len: int, fps: float) -> float:
    """Time (seconds) of the middle of a clip of ``clip_len`` frames from frame ``start``."""
    return (start + clip_len / 2) / fps if fps > 0 and math.isfinite(fps) else 0.0
