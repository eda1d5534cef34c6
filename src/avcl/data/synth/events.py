"""The impact schedule of a video: when the object hits, which both the frames and the sound follow."""

from __future__ import annotations

import numpy as np


def _event_schedule(
    rng: np.random.Generator, num_frames: int, fps: int, difficulty: float, event_rate: float = 0.8
) -> np.ndarray:
    """Impact frames that recur over the whole clip, one interval apart (``1 / event_rate`` seconds times
    0.8-1.25 per video, jittered per impact by 10 % (difficulty 0) to 35 % (difficulty 1)), at least 3
    frames apart.

    Returns ``(N,)`` increasing frames: a virtual impact before the clip (frame -1 or earlier), the
    impacts inside it, and a virtual one at or after its end, so every instant of the clip lies between
    two impacts (see :func:`_schedule_at`).
    """
    base = rng.uniform(0.8, 1.25) * fps / event_rate
    jitter = 0.1 + 0.25 * difficulty
    first = int(rng.integers(1, max(2, min(round(base), num_frames // 2)) + 1))
    starts = [min(-1, first - max(3, round(base * rng.uniform(1 - jitter, 1 + jitter))))]
    starts.append(first)
    while starts[-1] <= num_frames:
        starts.append(starts[-1] + max(3, round(base * rng.uniform(1 - jitter, 1 + jitter))))
    return np.asarray(starts)


def _schedule_at(starts: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the instants ``t`` (N,) (in frames, fractional for audio samples) lie among the impacts ``starts``.

    Returns ``(phase, interval, count)``, each (N,): the phase in [0, 1) since the last impact, the
    length in frames of the current interval, and the number of impacts since the virtual one before
    the clip (whose parity gives a direction).
    """
    count = np.searchsorted(starts, t, side="right") - 1
    interval = (starts[count + 1] - starts[count]).astype(np.float64)
    phase = (t - starts[count]) / interval
    return phase, interval, count
