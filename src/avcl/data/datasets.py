"""Datasets returning the batch dict of ``docs/architecture.md``, the sampler and the loader.

- ``PreparedDataset``: samples from the prepared cache (``avcl prepare``); what training uses.
- ``SourceDataset``: decodes every sample from the source video file, as research code does; the
  baseline of ``avcl bench loader``. Same sampling, same output.

Modes: ``train`` (random clip, random crop, random flip, random spectrogram crop), ``eval`` (centre
clip, centre crops) and ``test`` (``data.test_clips`` clips spread uniformly over the video, centre
crop; spectrogram crops spread uniformly along time for the whole-audio window, else centred on each
clip's own window).

Determinism: a key is an int or ``(index, sample_seed)``; all randomness of a sample comes from
``np.random.default_rng(sample_seed)`` (``default_rng([seed, index])`` for an int key), never from global
state, so a sample is the same whatever the number of loader workers and after a resumed run.
``EpochSampler`` hands out those keys.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from avcl.config import DataConfig
from avcl.data import transforms as T
from avcl.data.cache import PreparedCache
from avcl.errors import UserError

MODES = ("train", "eval", "test")


@dataclass
class _Video:
    """What sampling needs to know about one video."""

    row: int  # row in the cache index (or in the item list)
    label: int  # class id, -1 when unlabelled
    num_frames: int
    fps: float
    has_audio: bool


class _ClipDataset(Dataset, ABC):
    """Sampling and transforms shared by both datasets; subclasses say where frames and spectrograms come from."""

    def __init__(self, data_cfg: DataConfig, mode: str, seed: int, classes: list[str],
                 audio_mean: np.ndarray, audio_std: np.ndarray, mel_fps: float) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.cfg = data_cfg
        self.mode = mode
        self.seed = seed
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        self.window = T.parse_audio_window(data_cfg.audio_window)
        self.mel_fps = mel_fps
        self.pad_value = np.asarray(audio_mean, dtype=np.float32)  # padding reads as the band mean: 0 once normalised
        if data_cfg.normalize_audio:
            self.audio_mean = np.asarray(audio_mean, dtype=np.float32)
            self.audio_std = np.asarray(audio_std, dtype=np.float32)
        else:
            self.audio_mean = np.zeros_like(self.pad_value)
            self.audio_std = np.ones_like(self.pad_value)
        if data_cfg.audio_crop > data_cfg.audio_size:
            raise UserError(f"data.audio_crop {data_cfg.audio_crop} exceeds data.audio_size {data_cfg.audio_size}")

    # -- what a subclass provides
    @abstractmethod
    def _video(self, pos: int) -> _Video:
        """Label, length and frame rate of the video at dataset position ``pos``."""

    @abstractmethod
    def _clips(self, pos: int, video: _Video, starts: np.ndarray, clip_len: int) -> np.ndarray:
        """(N, clip_len, H, W, 3) uint8 frames of the clips starting at ``starts``."""

    @abstractmethod
    def _mel(self, pos: int, video: _Video) -> np.ndarray:
        """(n_mels, frames) log-mel (dB) of the whole audio, float16 or float32."""

    # -- sampling
    def _key(self, key) -> tuple[int, np.random.Generator]:
        if isinstance(key, (tuple, list)):
            pos, sample_seed = int(key[0]), int(key[1])
            rng = np.random.default_rng(sample_seed)
        else:
            pos = int(key)
            rng = np.random.default_rng([self.seed, pos])
        if not 0 <= pos < len(self):
            raise IndexError(f"index {pos} out of range for a dataset of {len(self)} videos")
        return pos, rng

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        """``video`` (3, T, H, W) uint8 (float32 when ``normalize_on_device=false``), ``audio`` (1, F, Ta)
        float32, ``label`` and ``index`` int64 scalars; in test mode video (N, 3, T, H, W), audio (N, 1, F, Ta)."""
        pos, rng = self._key(key)
        cfg, mode = self.cfg, self.mode
        video = self._video(pos)
        clip_len, crop = cfg.clip_len, cfg.crop_size
        if mode == "test":
            starts = T.uniform_clip_starts(video.num_frames, clip_len, cfg.test_clips)
        elif mode == "train":
            starts = np.array([T.random_clip_start(video.num_frames, clip_len, rng)])
        else:
            starts = np.array([T.centre_clip_start(video.num_frames, clip_len)])
        frames = self._clips(pos, video, starts, clip_len)
        height, width = frames.shape[2:4]
        if mode == "train":
            y, x = T.random_crop_box(height, width, crop, rng)
            flip = bool(cfg.hflip and rng.random() < 0.5)
        else:
            (y, x), flip = T.centre_crop_box(height, width, crop), False
        clips = [T.crop_clip(f, y, x, crop, flip) for f in frames]
        clips = clips[0][None] if len(clips) == 1 else torch.stack(clips)  # (N, 3, T, crop, crop)
        if not cfg.normalize_on_device:
            clips = T.normalize_video(clips, cfg)
        audio = self._audio(pos, video, starts, rng)  # (N, 1, audio_crop, audio_crop)
        if mode != "test":
            clips, audio = clips[0], audio[0]
        return {
            "video": clips,
            "audio": audio,
            "label": torch.tensor(video.label, dtype=torch.int64),
            "index": torch.tensor(video.row, dtype=torch.int64),
        }

    def _audio(self, pos: int, video: _Video, starts: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        cfg = self.cfg
        size, crop, n = cfg.audio_size, cfg.audio_crop, len(starts)
        if not video.has_audio:  # only with require_audio=False: silence at the band means
            return torch.zeros(n, 1, crop, crop)
        mel = self._mel(pos, video)
        centre = (size - crop) // 2
        if self.mode == "train":
            boxes = [(int(rng.integers(0, size - crop + 1)), int(rng.integers(0, size - crop + 1)))]
        elif self.mode == "test" and self.window is None:
            boxes = [(centre, int(x)) for x in T.spread_positions(size - crop, n)]
        else:
            boxes = [(centre, centre)] * n
        out = []
        for start, (y, x) in zip(starts, boxes):
            time = T.clip_centre_time(int(start), cfg.clip_len, video.fps)
            window = T.audio_window(mel, self.window, time, self.mel_fps, self.pad_value)
            out.append(T.spectrogram_crop(window, self.audio_mean, self.audio_std, size, y, x, crop))
        return (out[0][None] if n == 1 else torch.stack(out))[:, None]


class PreparedDataset(_ClipDataset):
    """The videos of one split of a prepared cache (rows of ``cache.indices(split)``).

    ``require_audio`` drops videos without an audio track (audio-visual methods need both); with
    ``require_audio=False`` they are kept and their ``audio`` is zeros.
    """

    def __init__(self, root: str | PreparedCache, split: str | None, data_cfg: DataConfig, mode: str = "train",
                 require_audio: bool = True, seed: int = 0) -> None:
        cache = root if isinstance(root, PreparedCache) else PreparedCache(root)
        super().__init__(data_cfg, mode, seed, cache.classes, cache.audio_mean, cache.audio_std, cache.mel_fps)
        self.cache = cache
        rows = cache.indices(split)
        if require_audio:
            rows = rows[cache.entries.has_audio[rows]]
        self.rows = rows
        self.split = split
        cache.check_shards(rows)  # a missing or cut shard: one clear error now, not a traceback from a worker
        height, width = cache.frame_size
        if data_cfg.crop_size > min(height, width):
            raise UserError(
                f"{cache.root}: frames are {height}x{width}, smaller than data.crop_size {data_cfg.crop_size}; "
                f"prepare with a larger --size or lower data.crop_size"
            )

    def __len__(self) -> int:
        return len(self.rows)

    def _video(self, pos: int) -> _Video:
        e, row = self.cache.entries, int(self.rows[pos])
        return _Video(row, int(e.label[row]), int(e.num_frames[row]), float(e.fps[row]), bool(e.has_audio[row]))

    def _clips(self, pos: int, video: _Video, starts: np.ndarray, clip_len: int) -> np.ndarray:
        ids = np.stack([T.clip_frame_ids(int(s), clip_len, video.num_frames) for s in starts])  # (N, clip_len)
        if len(starts) == 1:
            return self.cache.read_frames(video.row, ids[0])[None]
        unique, inverse = np.unique(ids, return_inverse=True)  # overlapping test clips decode each frame once
        return self.cache.read_frames(video.row, unique)[inverse.reshape(ids.shape)]

    def _mel(self, pos: int, video: _Video) -> np.ndarray:
        return self.cache.mel_view(video.row)


class SourceDataset(_ClipDataset):
    """Decodes every sample from its source video: probe, seek and decode the clip, decode the whole
    audio track and compute its log-mel. What research code does; slow, the baseline of the benchmark.

    ``audio_stats``: per-band (mean, std) of the log-mel, e.g. a cache's; None normalises nothing.
    """

    def __init__(self, items: list, classes: list[str], data_cfg: DataConfig, mode: str = "train",
                 size: tuple[int, int] = (128, 171), seed: int = 0, mel=None,
                 audio_stats: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        from avcl.data.audio import MelSettings

        self.mel_settings = mel or MelSettings()
        n_mels = self.mel_settings.n_mels
        mean, std = audio_stats if audio_stats is not None else (np.zeros(n_mels), np.ones(n_mels))
        super().__init__(data_cfg, mode, seed, classes, mean, std,
                         self.mel_settings.sample_rate / self.mel_settings.hop_length)
        self.items = list(items)
        self.size = tuple(size)
        self._class_id = {name: i for i, name in enumerate(self.classes)}

    def __len__(self) -> int:
        return len(self.items)

    def _video(self, pos: int) -> _Video:
        from avcl.data.decode import probe

        item = self.items[pos]
        info = probe(item.path)
        return _Video(pos, self._class_id.get(item.label, -1), max(info.num_frames, 1), info.fps, info.has_audio)

    def _clips(self, pos: int, video: _Video, starts: np.ndarray, clip_len: int) -> np.ndarray:
        from avcl.data.decode import read_frames

        return np.stack([read_frames(self.items[pos].path, int(s), clip_len, size=self.size) for s in starts])

    def _mel(self, pos: int, video: _Video) -> np.ndarray:
        from avcl.data.audio import log_mel
        from avcl.data.decode import read_audio

        return log_mel(read_audio(self.items[pos].path, self.mel_settings.sample_rate), self.mel_settings)


class EpochSampler(Sampler):
    """Yields ``(index, sample_seed)`` keys for one rank, like ``DistributedSampler`` with seeds.

    The order depends only on ``(seed, epoch)`` and each sample's seed only on ``(seed, epoch, index)``,
    so a sample is the same whichever rank, worker or resumed run draws it. The order is padded (by
    repeating its start) to a multiple of ``world_size``, or cut when ``drop_last``; rank r takes every
    ``world_size``-th key from position r. Call ``set_epoch`` before each epoch.
    """

    def __init__(self, dataset_len: int, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.n = dataset_len
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.epoch = 0
        self.total = (self.n // world_size if drop_last else math.ceil(self.n / world_size)) * world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.total // self.world_size

    def __iter__(self):
        if self.n == 0:
            return iter(())
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n) if self.shuffle else np.arange(self.n)
        seeds = np.random.default_rng([self.seed, self.epoch, 1]).integers(0, 2**63 - 1, size=self.n)
        order = np.resize(order, self.total)  # pads by repeating from the start, or cuts
        mine = order[self.rank :: self.world_size]
        return iter([(int(i), int(seeds[i])) for i in mine])


def build_loader(dataset: Dataset, data_cfg: DataConfig, batch_size: int, *, shuffle: bool, seed: int,
                 rank: int = 0, world_size: int = 1, drop_last: bool = False, device: str | torch.device = "cpu"
                 ) -> DataLoader:
    """A DataLoader over ``dataset`` with an ``EpochSampler`` (``loader.sampler.set_epoch(e)``).

    ``drop_last`` also drops the last incomplete batch. Workers, pinned memory (CUDA only), persistent
    workers and prefetching follow ``data_cfg``.
    """
    workers = max(int(data_cfg.num_workers), 0)
    sampler = EpochSampler(len(dataset), shuffle, seed, rank, world_size, drop_last)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=bool(data_cfg.pin_memory and torch.device(device).type == "cuda"),
        persistent_workers=bool(data_cfg.persistent_workers and workers > 0),
        prefetch_factor=data_cfg.prefetch_factor if workers > 0 else None,
        drop_last=drop_last,
    )
