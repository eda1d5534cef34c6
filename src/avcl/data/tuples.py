"""TCGL's training samples: VCOP tuples of three shuffled snippets and their order label (METHOD.md section 5).

A tuple is 3 snippets of ``data.clip_len`` consecutive frames separated by ``tcgl.gap`` frames
(``3 * clip_len + 2 * gap`` frames in all: 64 at clip_len 16 and gap 8), its first frame drawn
uniformly over the video. The snippets are shuffled by one of the 6 permutations of
``itertools.permutations(range(3))``; the permutation's index is the order label, and shuffled
position ``k`` holds true snippet ``PERMUTATIONS[label][k]`` (VCOP's convention). One crop (and one
flip, when ``data.hflip``) for every frame of every snippet.

Videos shorter than a tuple are dropped (``tcgl.short_videos=skip``, the default) or read with their
frame indices wrapping around (``loop``); the dataset counts them in ``short_videos`` and says so in
``report``. Determinism as ``avcl.data.datasets``: all randomness of a sample comes from its key.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np
import torch

from avcl.config import DataConfig
from avcl.data import transforms as T
from avcl.data.cache import PreparedCache
from avcl.data.datasets import PreparedDataset
from avcl.errors import UserError

if TYPE_CHECKING:  # TCGL's options, declared beside the method (avcl.methods.tcgl.TCGLOptions)
    from avcl.config import TCGLConfig

SNIPPETS = 3
PERMUTATIONS: tuple[tuple[int, ...], ...] = tuple(itertools.permutations(range(SNIPPETS)))
SHORT_VIDEOS = ("skip", "loop")  # a video shorter than a tuple is dropped, or read with its frame ids wrapped


def tuple_length(clip_len: int, gap: int, snippets: int = SNIPPETS) -> int:
    """Frames spanned by a tuple: ``snippets * clip_len + (snippets - 1) * gap``."""
    return snippets * clip_len + (snippets - 1) * gap


def tuple_frame_ids(start: int, clip_len: int, gap: int, num_frames: int, loop: bool = False) -> np.ndarray:
    """(3, clip_len) int64 frame indices of the snippets in true temporal order.

    ``loop`` wraps indices past the end of the video (``tcgl.short_videos=loop``); without it a tuple that
    does not fit is an error.
    """
    ids = start + np.arange(SNIPPETS)[:, None] * (clip_len + gap) + np.arange(clip_len)[None, :]
    if loop:
        return (ids % num_frames).astype(np.int64)
    if start < 0 or ids.max() >= num_frames:
        raise ValueError(
            f"a tuple of {tuple_length(clip_len, gap)} frames from frame {start} does not fit "
            f"in a video of {num_frames} frames"
        )
    return ids.astype(np.int64)


def random_tuple(
    num_frames: int, clip_len: int, gap: int, rng: np.random.Generator, loop: bool = False
) -> tuple[np.ndarray, int]:
    """``(ids, label)``: (3, clip_len) frame indices of the shuffled snippets and the permutation's index.

    The start is uniform over the ``num_frames - length + 1`` possible ones (0 for a looped short video).
    """
    length = tuple_length(clip_len, gap)
    start = int(rng.integers(0, max(num_frames - length, 0) + 1))
    label = int(rng.integers(len(PERMUTATIONS)))
    ids = tuple_frame_ids(start, clip_len, gap, num_frames, loop=loop)
    return ids[list(PERMUTATIONS[label])], label


class TupleDataset(PreparedDataset):
    """The videos of one split as VCOP tuples: ``tuple`` (3, 3, clip_len, crop, crop) uint8 (float32 when
    ``data.normalize_on_device=false``; shuffled snippet-major), ``order`` (the label, int64 in 0..5),
    ``label`` (the class, unused by TCGL) and ``index``. Videos without audio are kept (TCGL is video only)."""

    fills_batches = False  # its samples are tuples (``tuple``, ``order``): the DataLoader collates them

    def __init__(
        self, root: str | PreparedCache, split: str | None, data_cfg: DataConfig, tcgl_cfg: TCGLConfig, seed: int = 0
    ) -> None:
        super().__init__(root, split, data_cfg, mode="train", require_audio=False, seed=seed)
        if tcgl_cfg.gap < 0:
            raise UserError(f"tcgl.gap must be >= 0 (got {tcgl_cfg.gap})")
        if tcgl_cfg.short_videos not in SHORT_VIDEOS:
            raise UserError(f"tcgl.short_videos is {tcgl_cfg.short_videos!r}; choose one of {', '.join(SHORT_VIDEOS)}")
        self.gap = int(tcgl_cfg.gap)
        self.loop = tcgl_cfg.short_videos == "loop"
        self.length = tuple_length(data_cfg.clip_len, self.gap)
        short = self.cache.entries.num_frames[self.rows] < self.length
        self.short_videos = int(short.sum())
        total = len(self.rows)
        if not self.loop:
            self.rows = self.rows[~short]
        what = "looped (frame indices wrap around)" if self.loop else "skipped"
        self.report = (
            f"TCGL tuples of {self.length} frames (3 x {data_cfg.clip_len} + 2 x {self.gap}): "
            f"{self.short_videos} of {total} videos are shorter, {what}"
        )
        if len(self.rows) == 0:
            raise UserError(
                f"{self.cache.root}: no video of split '{split}' holds a TCGL tuple of {self.length} "
                f"frames ({total} shorter); lower data.clip_len or tcgl.gap, or set tcgl.short_videos=loop"
            )

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        pos, rng = self._key(key)
        cfg = self.cfg
        video = self._video(pos)
        ids, label = random_tuple(video.num_frames, cfg.clip_len, self.gap, rng, loop=self.loop)
        unique, inverse = np.unique(ids, return_inverse=True)
        frames = self.cache.read_frames(video.row, unique)[inverse.reshape(ids.shape)]  # (3, clip_len, H, W, 3)
        height, width = frames.shape[2:4]
        y, x = T.random_crop_box(height, width, cfg.crop_size, rng)
        flip = bool(cfg.hflip and rng.random() < 0.5)
        clips = torch.stack([T.crop_clip(f, y, x, cfg.crop_size, flip) for f in frames])  # one crop for all
        if not cfg.normalize_on_device:
            clips = T.normalize_video(clips, cfg)
        return {
            "tuple": clips,
            "order": torch.tensor(label, dtype=torch.int64),
            "label": torch.tensor(video.label, dtype=torch.int64),
            "index": torch.tensor(video.row, dtype=torch.int64),
        }
