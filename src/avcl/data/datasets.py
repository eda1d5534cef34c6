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
import weakref
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

    # Samples have the clip layout (video, audio, label, index) that ``BatchLoader`` fills in place; a
    # subclass with other samples sets False and gets a plain DataLoader.
    fills_batches: bool = True

    def __init__(
        self,
        data_cfg: DataConfig,
        mode: str,
        seed: int,
        classes: list[str],
        audio_mean: np.ndarray,
        audio_std: np.ndarray,
        mel_fps: float,
    ) -> None:
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
    def _clips(self, pos: int, video: _Video, starts: np.ndarray, clip_len: int) -> list[np.ndarray]:
        """The clips starting at ``starts``: one (clip_len, H, W, 3) uint8 array each (views may share memory)."""

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

    def sample_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Shapes of one sample's ``video`` and ``audio`` (fixed by the config: a batch fills preallocated arrays)."""
        cfg = self.cfg
        video, audio = (3, cfg.clip_len, cfg.crop_size, cfg.crop_size), (1, cfg.audio_crop, cfg.audio_crop)
        if self.mode == "test":
            return (cfg.test_clips, *video), (cfg.test_clips, *audio)
        return video, audio

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        """``video`` (3, T, H, W) uint8 (float32 when ``normalize_on_device=false``), ``audio`` (1, F, Ta)
        float32, ``label`` and ``index`` int64 scalars; in test mode video (N, 3, T, H, W), audio (N, 1, F, Ta)."""
        video_shape, audio_shape = self.sample_shapes()
        video = np.empty(video_shape, dtype=np.uint8)
        audio = np.empty(audio_shape, dtype=np.float32)
        label, row = self._sample_into(key, video, audio)
        clips = torch.from_numpy(video)
        if not self.cfg.normalize_on_device:
            clips = T.normalize_video(clips, self.cfg)
        return {
            "video": clips,
            "audio": torch.from_numpy(audio),
            "label": torch.tensor(label, dtype=torch.int64),
            "index": torch.tensor(row, dtype=torch.int64),
        }

    def get_batch(self, keys, out: dict[str, np.ndarray] | None = None) -> dict[str, torch.Tensor]:
        """The samples of ``keys`` stacked as one batch, written into ``out`` (numpy arrays of at least
        ``len(keys)`` rows: ``video`` uint8, ``audio`` float32, ``label`` and ``index`` int64) when given.

        The same values as stacking ``self[key]`` for each key; no tensor per sample. Returns tensors
        viewing the first ``len(keys)`` rows (``video`` float32 and normalised when ``normalize_on_device``
        is false: then a new, contiguous tensor). ``video`` is fastest to fill channels-last in memory
        (``T.channels_last_array``, what the loader's buffers are): the decoded (H, W, 3) frames are then
        cropped by plain row copies; ``to_model_input`` makes it channel-first on the training device
        unless the model runs ``channels_last``."""
        n = len(keys)
        if out is None:
            video_shape, audio_shape = self.sample_shapes()
            out = {
                "video": T.channels_last_array((n, *video_shape)),
                "audio": np.empty((n, *audio_shape), np.float32),
                "label": np.empty(n, np.int64),
                "index": np.empty(n, np.int64),
            }
        for b, key in enumerate(keys):
            out["label"][b], out["index"][b] = self._sample_into(key, out["video"][b], out["audio"][b])
        batch = {k: torch.from_numpy(v[:n]) for k, v in out.items()}
        if not self.cfg.normalize_on_device:
            batch["video"] = T.normalize_video(batch["video"].contiguous(), self.cfg)
        return batch

    def _sample_into(self, key, video_out: np.ndarray, audio_out: np.ndarray) -> tuple[int, int]:
        """Write the sample of ``key`` into ``video_out`` ((N,) 3, T, crop, crop uint8) and ``audio_out``
        ((N,) 1, crop, crop float32); returns its label and cache row."""
        pos, rng = self._key(key)
        cfg, mode = self.cfg, self.mode
        video = self._video(pos)
        clip_len, crop = cfg.clip_len, cfg.crop_size
        starts = self._starts(video, rng)
        frames = self._clips(pos, video, starts, clip_len)
        y, x, flip = self._crop_box(*frames[0].shape[1:3], rng)
        clips = video_out if mode == "test" else video_out[None]  # (N, 3, T, crop, crop)
        for k, f in enumerate(frames):
            T.crop_clip_into(f, y, x, crop, flip, clips[k])
        self._audio_into(pos, video, starts, rng, audio_out if mode == "test" else audio_out[None])
        return video.label, video.row

    def _starts(self, video: _Video, rng: np.random.Generator) -> np.ndarray:
        """First frames of the sample's clips (the first random draw of a training sample)."""
        cfg = self.cfg
        if self.mode == "test":
            return T.uniform_clip_starts(video.num_frames, cfg.clip_len, cfg.test_clips)
        if self.mode == "train":
            return np.array([T.random_clip_start(video.num_frames, cfg.clip_len, rng)])
        return np.array([T.centre_clip_start(video.num_frames, cfg.clip_len)])

    def _crop_box(self, height: int, width: int, rng: np.random.Generator) -> tuple[int, int, bool]:
        """``(y, x, flip)`` of the clip crop (the draws after the clip start)."""
        crop = self.cfg.crop_size
        if self.mode == "train":
            y, x = T.random_crop_box(height, width, crop, rng)
            return y, x, bool(self.cfg.hflip and rng.random() < 0.5)
        return (*T.centre_crop_box(height, width, crop), False)

    def _audio_into(
        self, pos: int, video: _Video, starts: np.ndarray, rng: np.random.Generator, out: np.ndarray
    ) -> None:
        """Fill ``out`` (N, 1, crop, crop) float32 with the spectrogram crops of the clips at ``starts``."""
        cfg = self.cfg
        size, crop, n = cfg.audio_size, cfg.audio_crop, len(starts)
        if not video.has_audio:  # only with require_audio=False: silence at the band means
            out[:] = 0.0
            return
        mel = self._mel(pos, video)
        centre = (size - crop) // 2
        if self.mode == "train":
            y, x = int(rng.integers(0, size - crop + 1)), int(rng.integers(0, size - crop + 1))
            if cfg.audio_crop_axes == "time":  # both drawn whatever the axes: the random stream stays the same
                y = centre
            boxes = [(y, x)]
        elif self.mode == "test" and self.window is None:
            boxes = [(centre, int(x)) for x in T.spread_positions(size - crop, n)]
        else:
            boxes = [(centre, centre)] * n
        for k, (start, (y, x)) in enumerate(zip(starts, boxes)):
            time = T.clip_centre_time(int(start), cfg.clip_len, video.fps)
            window = T.audio_window(mel, self.window, time, self.mel_fps, self.pad_value)
            T.spectrogram_crop(window, self.audio_mean, self.audio_std, size, y, x, crop, out=out[k, 0])


class PreparedDataset(_ClipDataset):
    """The videos of one split of a prepared cache (rows of ``cache.indices(split)``).

    ``require_audio`` drops videos without an audio track (audio-visual methods need both); with
    ``require_audio=False`` they are kept and their ``audio`` is zeros.
    """

    def __init__(
        self,
        root: str | PreparedCache,
        split: str | None,
        data_cfg: DataConfig,
        mode: str = "train",
        require_audio: bool = True,
        seed: int = 0,
    ) -> None:
        cache = root if isinstance(root, PreparedCache) else PreparedCache(root)
        super().__init__(data_cfg, mode, seed, cache.classes, cache.audio_mean, cache.audio_std, cache.mel_fps)
        self.cache = cache
        rows = cache.indices(split)
        if require_audio:
            rows = rows[cache.entries.has_audio[rows]]
        self.rows = rows
        self.split = split
        self._frames: np.ndarray | None = None  # the frames of the last clip read (reused buffer)
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

    def _clips(self, pos: int, video: _Video, starts: np.ndarray, clip_len: int) -> list[np.ndarray]:
        if len(starts) == 1:  # decoded into a buffer reused from sample to sample: no allocation
            if self._frames is None or self._frames.shape[0] != clip_len:
                height, width = self.cache.frame_size
                self._frames = np.empty((clip_len, height, width, 3), dtype=np.uint8)
            ids = T.clip_frame_ids(int(starts[0]), clip_len, video.num_frames)
            return [self.cache.read_frames(video.row, ids, out=self._frames)]
        ids = np.stack([T.clip_frame_ids(int(s), clip_len, video.num_frames) for s in starts])  # (N, clip_len)
        unique, inverse = np.unique(ids, return_inverse=True)  # overlapping test clips decode each frame once
        frames, at = self.cache.read_frames(video.row, unique), inverse.reshape(ids.shape)
        # a clip whose frames follow each other among them is a view; one with a repeated last frame a copy
        return [frames[a[0] : a[0] + clip_len] if a[-1] - a[0] == clip_len - 1 else frames[a] for a in at]

    def _mel(self, pos: int, video: _Video) -> np.ndarray:
        return self.cache.mel_view(video.row)

    def encoded_batch(self, keys) -> dict:
        """The batch of ``keys`` with its frames left as JPEG bytes (``data.decode_device=device``):
        ``jpeg`` (B x N x T byte strings), ``boxes`` (B, 3) int64 ``(y, x, flip)``, ``clips`` (B, N, T),
        and ``audio``, ``label``, ``index`` as ``get_batch`` makes them. ``decode_encoded_batch`` turns
        it into ``get_batch``'s batch on any device; the random draws are the same, in the same order."""
        n, cfg = len(keys), self.cfg
        _, audio_shape = self.sample_shapes()
        height, width = self.cache.frame_size
        audio = np.empty((n, *audio_shape), np.float32)
        label, index, boxes, jpeg = np.empty(n, np.int64), np.empty(n, np.int64), np.empty((n, 3), np.int64), []
        for b, key in enumerate(keys):
            pos, rng = self._key(key)
            video = self._video(pos)
            starts = self._starts(video, rng)
            for start in starts:
                jpeg.extend(
                    self.cache.frame_bytes(video.row, T.clip_frame_ids(int(start), cfg.clip_len, video.num_frames))
                )
            boxes[b] = self._crop_box(height, width, rng)
            self._audio_into(pos, video, starts, rng, audio[b] if self.mode == "test" else audio[b][None])
            label[b], index[b] = video.label, video.row
        clips = cfg.test_clips if self.mode == "test" else 1
        return {
            "jpeg": jpeg,
            "boxes": torch.from_numpy(boxes),
            "clips": (n, clips, cfg.clip_len),
            "frame_size": (height, width),
            "test": self.mode == "test",
            "audio": torch.from_numpy(audio),
            "label": torch.from_numpy(label),
            "index": torch.from_numpy(index),
        }


class SourceDataset(_ClipDataset):
    """Decodes every sample from its source video: probe, seek and decode the clip, decode the whole
    audio track and compute its log-mel. What research code does; slow, the baseline of the benchmark.

    ``audio_stats``: per-band (mean, std) of the log-mel, e.g. a cache's; None normalises nothing.
    """

    def __init__(
        self,
        items: list,
        classes: list[str],
        data_cfg: DataConfig,
        mode: str = "train",
        size: tuple[int, int] = (128, 171),
        seed: int = 0,
        mel=None,
        audio_stats: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        from avcl.data.audio import MelSettings

        self.mel_settings = mel or MelSettings()
        n_mels = self.mel_settings.n_mels
        mean, std = audio_stats if audio_stats is not None else (np.zeros(n_mels), np.ones(n_mels))
        super().__init__(
            data_cfg, mode, seed, classes, mean, std, self.mel_settings.sample_rate / self.mel_settings.hop_length
        )
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

    def _clips(self, pos: int, video: _Video, starts: np.ndarray, clip_len: int) -> list[np.ndarray]:
        from avcl.data.decode import read_frames

        return [read_frames(self.items[pos].path, int(s), clip_len, size=self.size) for s in starts]

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

    def __init__(
        self, dataset_len: int, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1, drop_last: bool = False
    ) -> None:
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
        order = (
            np.random.default_rng([self.seed, self.epoch]).permutation(self.n) if self.shuffle else np.arange(self.n)
        )
        seeds = np.random.default_rng([self.seed, self.epoch, 1]).integers(0, 2**63 - 1, size=self.n)
        order = np.resize(order, self.total)  # pads by repeating from the start, or cuts
        mine = order[self.rank :: self.world_size]
        return iter([(int(i), int(seeds[i])) for i in mine])


class EpochBatchSampler(Sampler):
    """The keys of an ``EpochSampler`` cut into batches: yields ``(iteration, [(index, sample_seed), ...])``.

    The keys, their order and their seeds are those of the ``EpochSampler`` (so a batch is the same
    whatever the number of workers, after a resumed run and on every DDP rank); the last batch is
    shorter, or dropped with ``drop_last``. ``iteration`` (set by ``BatchLoader`` for each pass) tells
    a worker that the batches of an earlier pass it made but the main process never received (the pass
    was left early) were dropped. Other attributes (``epoch``, ``seed``, ``rank``...) are the key sampler's.
    """

    def __init__(self, sampler: EpochSampler, batch_size: int, drop_last: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.drop_last = drop_last
        self.iteration = 0

    def __getattr__(self, name: str):
        if name == "sampler":  # during unpickling, before __init__
            raise AttributeError(name)
        return getattr(self.sampler, name)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        keys, iteration, size = list(self.sampler), self.iteration, self.batch_size
        stop = len(self) * size if self.drop_last else len(keys)
        for start in range(0, stop, size):
            yield iteration, keys[start : start + size]


@dataclass
class _SlotBatch:
    """What a worker sends for a batch written into one of its shared-memory slots: a handle, plus the
    slot's tensors (and the ring's flags) the first times, until the main process has them."""

    token: str  # the worker's ring
    slot: int
    size: int  # samples in the batch (the slot holds up to batch_size)
    payload: tuple | None = None  # (slot tensors dict, held, received) while the main process lacks the slot


class _WorkerRing:
    """A worker's ring of batch buffers in shared memory, created once per worker (and reused every epoch
    by persistent workers).

    Slot ``s`` is free for the next batch when the main process received every batch sent in it
    (``received[s]`` counts them, written by the main process) and holds none (``held[s]``, set by the main
    process on receipt and cleared when the batch's tensors are released). With every slot in use (the
    caller keeps batches) the worker makes a batch of its own memory, as a plain DataLoader does.
    """

    def __init__(self, dataset: "_ClipDataset", batch_size: int, max_slots: int, shared: bool = True) -> None:
        import uuid

        video_shape, audio_shape = dataset.sample_shapes()
        self.shapes = {
            "video": ((batch_size, *video_shape), "channels_last"),
            "audio": ((batch_size, *audio_shape), torch.float32),
            "label": ((batch_size,), torch.int64),
            "index": ((batch_size,), torch.int64),
        }
        self.token = uuid.uuid4().hex
        self.max_slots = max_slots
        self.slots: list[dict[str, torch.Tensor]] = []
        self.shared = shared
        self.held = torch.zeros(max_slots, dtype=torch.uint8)
        self.received = torch.zeros(max_slots, dtype=torch.int64)
        if shared:
            self.held.share_memory_(), self.received.share_memory_()
        self.sent = np.zeros(max_slots, dtype=np.int64)
        self.iteration = None

    def _free_slot(self) -> int | None:
        received, held = self.received.numpy(), self.held.numpy()
        for s in range(len(self.slots)):
            if self.sent[s] == received[s] and not held[s]:
                return s
        if len(self.slots) < self.max_slots:
            slot = {k: _empty(shape, dtype) for k, (shape, dtype) in self.shapes.items()}
            self.slots.append({k: t.share_memory_() for k, t in slot.items()} if self.shared else slot)
            return len(self.slots) - 1
        return None

    def fill(self, dataset: "_ClipDataset", iteration: int, keys: list):
        if iteration != self.iteration:
            if self.iteration is not None:  # a new pass: what the main process did not receive was dropped
                self.sent[:] = self.received.numpy()
            self.iteration = iteration
        s = self._free_slot()
        if s is None:
            return dataset.get_batch(keys)
        tensors = self.slots[s]
        dataset.get_batch(keys, {k: t.numpy() for k, t in tensors.items()})
        payload = (tensors, self.held, self.received) if self.received[s] == 0 or not self.shared else None
        self.sent[s] += 1
        return _SlotBatch(self.token, s, len(keys), payload)


def _empty(shape: tuple[int, ...], dtype) -> torch.Tensor:
    """An empty tensor; ``dtype="channels_last"``: uint8 video (..., 3, T, H, W) laid out (..., T, H, W, 3)."""
    if dtype != "channels_last":
        return torch.empty(shape, dtype=dtype)
    *lead, c, t, h, w = shape
    return torch.empty((*lead, t, h, w, c), dtype=torch.uint8).movedim(-1, -4)


class _BatchDataset(Dataset):
    """What the DataLoader's workers index: a task ``(iteration, keys)`` -> a whole batch written into a
    slot of the process's ring (shared memory in a worker, plain memory without workers)."""

    def __init__(self, dataset: "_ClipDataset", batch_size: int, max_slots: int) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.max_slots = max_slots
        self._ring: _WorkerRing | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_ring": None}

    def __getitem__(self, task):
        iteration, keys = task
        if self.dataset.cfg.decode_device == "device" and hasattr(self.dataset, "encoded_batch"):
            return _Encoded(self.dataset.encoded_batch(keys))
        if not self.dataset.cfg.normalize_on_device:  # a float batch, normalised: made in memory of its own
            return self.dataset.get_batch(keys)
        if self._ring is None:
            in_worker = torch.utils.data.get_worker_info() is not None
            self._ring = _WorkerRing(self.dataset, self.batch_size, self.max_slots, shared=in_worker)
        return self._ring.fill(self.dataset, iteration, keys)


def decode_encoded_batch(encoded: dict, data_cfg: DataConfig, device: torch.device | str) -> dict[str, torch.Tensor]:
    """``PreparedDataset.encoded_batch`` -> the batch of ``get_batch``, its clips decoded, cropped and
    flipped on ``device`` (``torchvision.io.decode_jpeg``, batched on CUDA; the same on the CPU, the
    fallback, which gives ``get_batch``'s values: both decoders are libjpeg-turbo with its defaults)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    device = torch.device(device)
    data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in encoded["jpeg"]]
    if device.type == "cuda":
        frames = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    else:
        frames = decode_jpeg(data, mode=ImageReadMode.RGB)
    (n, clips, length), (height, width), crop = encoded["clips"], encoded["frame_size"], data_cfg.crop_size
    frames = torch.stack(frames).view(n, clips, length, 3, height, width)
    video = torch.empty((n, clips, 3, length, crop, crop), dtype=torch.uint8, device=device)
    for b, (y, x, flip) in enumerate(encoded["boxes"].tolist()):
        clip = frames[b, :, :, :, y : y + crop, x : x + crop]
        video[b] = (clip.flip(-1) if flip else clip).transpose(1, 2)
    video = video if encoded["test"] else video[:, 0]
    if not data_cfg.normalize_on_device:
        video = T.normalize_video(video, data_cfg)
    return {"video": video, "audio": encoded["audio"], "label": encoded["label"], "index": encoded["index"]}


class _Encoded(dict):
    """A batch whose frames are still JPEG bytes, decoded by the main process on the training device."""


def _identity(batch):
    return batch


class LoaderWorkerError(UserError):
    """A loader worker died (killed, out of memory): the pass stops with this error, the workers are shut down."""


class _MainRing:
    """The main process's side of a worker's ring: the slot tensors it has mapped and the ring's flags."""

    def __init__(self, held: torch.Tensor, received: torch.Tensor) -> None:
        self.held = held
        self.received = received
        self.slots: dict[int, dict[str, torch.Tensor]] = {}
        self.registered: list[torch.Tensor] = []  # slot tensors page-locked for CUDA (cudaHostRegister)


class _Lease:
    """Releases a slot once every tensor of its batch is gone (and, on CUDA, once the copies queued from it ran)."""

    def __init__(self, loader: "BatchLoader", held: torch.Tensor, slot: int, count: int) -> None:
        self.loader, self.held, self.slot, self.count = weakref.ref(loader), held, slot, count

    def __call__(self) -> None:
        self.count -= 1
        if self.count == 0:
            loader = self.loader()
            if loader is not None:
                loader._release(self.held, self.slot)
            else:
                self.held[self.slot] = 0


class BatchLoader:
    """The training loader: each batch is made whole by one worker, straight into one of the worker's
    reusable shared-memory buffers (a ring of ``prefetch_factor + 2`` slots), and arrives in the main
    process as a handle to that buffer: no tensor per sample, no collation, no fresh shared memory and no
    pickled tensors per batch. A slot goes back to its worker when the batch's tensors are released (all
    of ``video``, ``audio``, ``label``, ``index`` dropped); batches that the caller keeps are never
    overwritten (the worker then makes a batch in memory of its own). On CUDA with ``pin_memory`` the
    slots are page-locked once (``cudaHostRegister``), so ``non_blocking`` copies come straight from them.

    Without workers the batches are made in the calling process. Values, order and seeds are those of
    ``EpochBatchSampler``: the same batches whatever the number of workers. Like a DataLoader it has
    ``sampler`` (call ``loader.sampler.set_epoch(e)``), ``dataset``, ``batch_size``, ``drop_last``,
    ``num_workers``, ``pin_memory`` and ``len``. A dead worker stops the pass with ``LoaderWorkerError``.
    """

    def __init__(
        self,
        dataset: "_ClipDataset",
        sampler: EpochBatchSampler,
        *,
        num_workers: int,
        pin_memory: bool,
        persistent_workers: bool,
        prefetch_factor: int | None,
        device: torch.device,
    ) -> None:
        self.dataset = dataset
        self.sampler = sampler
        self.batch_size = sampler.batch_size
        self.drop_last = sampler.drop_last
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.device = device
        slots = (prefetch_factor or 2) + 2
        self._loader = DataLoader(
            _BatchDataset(dataset, sampler.batch_size, slots),
            batch_size=None,
            sampler=sampler,
            collate_fn=_identity,
            num_workers=num_workers,
            pin_memory=False,
            persistent_workers=persistent_workers,
            prefetch_factor=prefetch_factor,
        )
        self._rings: dict[str, _MainRing] = {}
        self._pending: list = []  # (CUDA event, held flags, slot): released once the copies before the event ran
        self._passes = 0

    def __len__(self) -> int:
        return len(self.sampler)

    def worker_pids(self) -> list[int]:
        """Process ids of the running workers (empty without workers or between non-persistent passes)."""
        it = getattr(self._loader, "_iterator", None)
        return [w.pid for w in getattr(it, "_workers", []) if w.is_alive()]

    def __iter__(self):
        self._passes += 1
        self.sampler.iteration = self._passes
        iterator = None
        try:
            iterator = iter(self._loader)
            _quiet_sigchld(iterator)
            for item in iterator:
                yield self._receive(item)
        except (RuntimeError, OSError, EOFError) as error:
            # a dead worker shows as the iterator's RuntimeError, or as a broken pipe or socket while
            # receiving what it had sent (the file descriptors of shared memory travel over sockets)
            dead = _dead_workers(iterator, wait=0.0 if "DataLoader worker" in str(error) else 2.0)
            if "DataLoader worker" not in str(error) and not dead:
                raise
            error = error if "DataLoader worker" in str(error) else f"worker(s) {dead} exited ({error!r})"
            self._shutdown(iterator)
            iterator = None
            raise LoaderWorkerError(
                f"a data loader worker stopped: {error}; the pass is stopped "
                "(out of memory? lower data.num_workers or the batch size)"
            ) from None
        finally:
            if self.num_workers > 0 and not self.persistent_workers:
                self._shutdown(iterator)

    def _shutdown(self, iterator) -> None:
        """Stop the workers of ``iterator`` and forget their rings (batches still held keep their memory)."""
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        if iterator is not None and getattr(self._loader, "_iterator", None) is iterator:
            self._loader._iterator = None
        self._flush(wait=True)
        for ring in self._rings.values():
            _unregister(ring)
        self._rings.clear()

    def close(self) -> None:
        """Stop persistent workers and drop the buffers now rather than at garbage collection."""
        self._shutdown(getattr(self._loader, "_iterator", None))

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def _receive(self, item) -> dict[str, torch.Tensor]:
        if self._pending:
            self._flush()
        if isinstance(item, _Encoded):  # data.decode_device=device: decoded here, on the training device
            batch = decode_encoded_batch(item, self.dataset.cfg, self.device)
            if self.pin_memory:
                batch = {k: v if v.is_cuda else v.pin_memory() for k, v in batch.items()}
            return batch
        if not isinstance(item, _SlotBatch):  # made in this process, or a worker had no free slot
            if self.pin_memory:
                item = {k: v.pin_memory() for k, v in item.items()}
            return item
        ring = self._rings.get(item.token)
        if ring is None:
            tensors, held, received = item.payload
            ring = self._rings[item.token] = _MainRing(held, received)
        if item.slot not in ring.slots:
            ring.slots[item.slot] = tensors = item.payload[0]
            if self.pin_memory:
                _register(ring, tensors)
        ring.held[item.slot] = 1  # before counting it received: the worker reuses a slot only when both allow it
        ring.received[item.slot] += 1
        lease = _Lease(self, ring.held, item.slot, 4)
        batch = {}
        for key, tensor in ring.slots[item.slot].items():
            batch[key] = view = tensor[: item.size]
            weakref.finalize(view, lease)
        return batch

    def _release(self, held: torch.Tensor, slot: int) -> None:
        if self.pin_memory and torch.cuda.is_available() and torch.cuda.is_initialized():
            event = torch.cuda.Event()
            event.record()  # copies queued from the slot on the current stream come before it
            self._pending.append((event, held, slot))
        else:
            held[slot] = 0

    def _flush(self, wait: bool = False) -> None:
        keep = []
        for event, held, slot in self._pending:
            if wait:
                event.synchronize()
            if wait or event.query():
                held[slot] = 0
            else:
                keep.append((event, held, slot))
        self._pending = keep


def _dead_workers(iterator, wait: float) -> list[int]:
    """Pids of ``iterator``'s workers that exited, waiting up to ``wait`` seconds for one (a killed worker's
    sockets close a moment before its process can be seen to have exited)."""
    import time

    deadline = time.monotonic() + wait
    while True:
        dead = [w.pid for w in getattr(iterator, "_workers", []) if not w.is_alive()]
        if dead or time.monotonic() >= deadline:
            return dead
        time.sleep(0.05)


def _quiet_sigchld(iterator) -> None:
    """Leave a dead worker to the iterator's own check (every few seconds while it waits for a batch),
    which raises inside ``next()``, rather than to the DataLoader's SIGCHLD handler, which raises at
    whatever line the main process is running (a training step, a log call) and cannot be caught cleanly."""
    if getattr(iterator, "_worker_pids_set", False):
        try:
            from torch.utils.data._utils import signal_handling

            signal_handling._remove_worker_pids(id(iterator))
            iterator._worker_pids_set = False
        except Exception:  # noqa: BLE001 - private API: keep the handler where it cannot be removed
            pass


def _register(ring: _MainRing, tensors: dict[str, torch.Tensor]) -> None:
    """Page-lock a slot's tensors for CUDA in place (once per slot); without success they stay pageable."""
    try:
        cudart = torch.cuda.cudart()
        for tensor in tensors.values():
            result = cudart.cudaHostRegister(tensor.data_ptr(), tensor.numel() * tensor.element_size(), 0)
            if int(getattr(result, "value", result)) == 0:  # cudaSuccess (an enum member or an int)
                ring.registered.append(tensor)
    except Exception:  # noqa: BLE001 - a pageable buffer still works, only slower
        pass


def _unregister(ring: _MainRing) -> None:
    if not ring.registered:
        return
    try:
        torch.cuda.synchronize()
        cudart = torch.cuda.cudart()
        for tensor in ring.registered:
            cudart.cudaHostUnregister(tensor.data_ptr())
    except Exception:  # noqa: BLE001
        pass
    ring.registered.clear()


def build_loader(
    dataset: Dataset,
    data_cfg: DataConfig,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
    device: str | torch.device = "cpu",
):
    """A loader over ``dataset`` with an ``EpochSampler``'s keys (``loader.sampler.set_epoch(e)``).

    ``drop_last`` also drops the last incomplete batch. Workers, pinned memory (CUDA only), persistent
    workers and prefetching follow ``data_cfg``. A clip dataset (``PreparedDataset``, ``SourceDataset``)
    gets a ``BatchLoader`` (whole batches per worker in reusable shared memory); any other dataset a
    ``DataLoader``.
    """
    workers = max(int(data_cfg.num_workers), 0)
    sampler = EpochSampler(len(dataset), shuffle, seed, rank, world_size, drop_last)
    pin = bool(data_cfg.pin_memory and torch.device(device).type == "cuda")
    if isinstance(dataset, _ClipDataset) and dataset.fills_batches:
        return BatchLoader(
            dataset,
            EpochBatchSampler(sampler, batch_size, drop_last),
            num_workers=workers,
            pin_memory=pin,
            persistent_workers=bool(data_cfg.persistent_workers and workers > 0),
            prefetch_factor=data_cfg.prefetch_factor if workers > 0 else None,
            device=torch.device(device),
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=bool(data_cfg.persistent_workers and workers > 0),
        prefetch_factor=data_cfg.prefetch_factor if workers > 0 else None,
        drop_last=drop_last,
    )
