"""Sound synthesis: the timbres of the impacts, distractor sounds, background noise and the texture
that follows the motion, mixed into one clip's audio."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from avcl.data.synth.events import _schedule_at
from avcl.data.synth.tables import PATTERN_OF_TEXTURE, TEXTURE_PHASE, TEXTURE_WIDTH, TIMBRE_CENTRE_HZ

# Sounds. Each returns (L,) float32 with its attack at sample 0 and a peak of about 1.


def _bell(rng: np.random.Generator, f0: float, sr: int, decay: float) -> np.ndarray:
    """Inharmonic partials of a struck bar (1 : 2.76 : 5.40 : 8.93) with a long ring."""
    t = np.arange(int(1.2 * sr), dtype=np.float64) / sr
    out = np.zeros_like(t)
    for ratio, amp, tau in ((1.0, 1.0, 0.8), (2.756, 0.5, 0.4), (5.404, 0.3, 0.2), (8.933, 0.15, 0.1)):
        if f0 * ratio < 0.45 * sr:
            out += amp * np.exp(-t / (tau * decay)) * np.sin(2 * np.pi * f0 * ratio * t)
    return out


def _drum(rng: np.random.Generator, f0: float, sr: int, decay: float) -> np.ndarray:
    """A membrane: a low sine whose pitch drops from 2.5 f0 to f0, plus a short noise click."""
    n = int(0.5 * sr)
    t = np.arange(n, dtype=np.float64) / sr
    freq = f0 * (1 + 1.5 * np.exp(-t / 0.015))
    body = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t / (0.15 * decay))
    click = rng.standard_normal(n).astype(np.float32) * np.exp(-t / 0.006)
    click = np.convolve(click, np.ones(4, np.float32) / 4, mode="same")  # a little lowpass
    return (body + 0.4 * click).astype(np.float32)


def _pluck(rng: np.random.Generator, f0: float, sr: int, decay: float) -> np.ndarray:
    """A plucked string: harmonics shaped by the pluck position, upper harmonics dying faster."""
    t = np.arange(int(1.0 * sr), dtype=np.float64) / sr
    where = rng.uniform(0.12, 0.3)
    harmonics = np.arange(1, int(min(20, 0.45 * sr / f0)) + 1, dtype=np.float32)
    amps = np.abs(np.sin(np.pi * harmonics * where)) / harmonics
    taus = 0.45 * decay / (1 + 0.35 * (harmonics - 1))
    parts = amps[:, None] * np.exp(-t[None] / taus[:, None]) * np.sin(2 * np.pi * f0 * harmonics[:, None] * t[None])
    out = parts.sum(0)
    return out / max(float(np.abs(out).max()), 1e-6)


def _band_noise(rng: np.random.Generator, n: int, sr: int, fc: float, octaves: float) -> np.ndarray:
    """(n,) float32 unit-variance noise band-passed around ``fc`` Hz (a Gaussian in log frequency whose
    standard deviation is ``octaves``)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    spectrum *= np.exp(-0.5 * (np.log2(np.maximum(freqs, 1.0) / fc) / octaves) ** 2)
    band = np.fft.irfft(spectrum, n)
    return (band / max(float(band.std()), 1e-9)).astype(np.float32)


def _clap(rng: np.random.Generator, fc: float, sr: int, decay: float) -> np.ndarray:
    """A hand clap: three or four quick noise bursts and a short tail, band-passed around ``fc``."""
    n = int(0.35 * sr)
    t = np.arange(n, dtype=np.float64) / sr
    env = np.exp(-t / (0.06 * decay)) * 0.5
    for k in range(int(rng.integers(3, 5))):
        start = k * rng.uniform(0.005, 0.011)
        env += np.where(t >= start, np.exp(-(t - start) / 0.004), 0.0)
    out = _band_noise(rng, n, sr, fc, 0.8) * env
    return (out / max(float(np.abs(out).max()), 1e-6)).astype(np.float32)


# timbre -> the sound of one impact, ``(rng, pitch or band centre in Hz, sample rate, decay factor)``;
# the centres are in TIMBRE_CENTRE_HZ.
_TIMBRES: dict[str, Callable[..., np.ndarray]] = {"bell": _bell, "drum": _drum, "pluck": _pluck, "clap": _clap}


def _coloured_noise(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """(n,) float32 unit-variance noise with a random spectral slope between white and brown."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / sr), 30.0)
    spectrum *= freqs ** (-rng.uniform(0.0, 1.0))
    noise = np.fft.irfft(spectrum, n)
    return (noise / max(float(noise.std()), 1e-9)).astype(np.float32)


def _distractor_sound(rng: np.random.Generator, sr: int) -> np.ndarray:
    """A sound with no visual event: a smooth pitch glide or a short sine knock, at a random pitch."""
    if rng.random() < 0.5:
        n = int(rng.uniform(0.15, 0.6) * sr)
        f_start, f_end = np.exp(rng.uniform(np.log(150), np.log(4000), 2))
        freq = np.geomspace(f_start, f_end, n)
        env = np.sin(np.pi * np.arange(n) / n) ** 2  # no sharp onset
        return (np.sin(2 * np.pi * np.cumsum(freq) / sr) * env).astype(np.float32)
    n = int(0.3 * sr)
    t = np.arange(n) / sr
    return (np.sin(2 * np.pi * np.exp(rng.uniform(np.log(200), np.log(3000))) * t) * np.exp(-t / 0.05)).astype(
        np.float32
    )


def motion_envelope(pattern: str, starts: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(N,) float64 in [0, 1]: how loud the shared texture is at the instants ``t`` (in frames) when it
    follows the motion of ``pattern`` with the impacts ``starts``.

    One burst per motion cycle (a raised cosine lasting 30 % of the cycle), centred on the phase
    :data:`TEXTURE_PHASE` of ``pattern``: 0.2 of the way from one impact to the next for ``bounce`` (the
    ball rising), 0.4 for ``slide`` (the block near the middle), 0.6 for ``swing`` (the bob swinging
    back) and 0.8 for ``pulse`` (the object relaxed, before the next swell). The bursts have the same
    shape, length and loudness for every pattern, so the texture's spectrum and loudness statistics are
    the same; only *when* it sounds relative to the impacts, i.e. to the visible motion, tells the pattern.
    """
    phase, _, _ = _schedule_at(starts, t)
    distance = np.abs((phase - TEXTURE_PHASE[pattern] + 0.5) % 1.0 - 0.5)  # circular, in cycles
    return np.where(distance < TEXTURE_WIDTH / 2, 0.5 + 0.5 * np.cos(2 * np.pi * distance / TEXTURE_WIDTH), 0.0)


def _timing_texture(
    rng: np.random.Generator, texture: str, starts: np.ndarray, num_samples: int, fps: int, sr: int
) -> np.ndarray:
    """(S,) float32: the shared texture (band noise, 1-2 kHz centre, one octave) whose loudness follows the
    motion of the pattern of ``texture`` (:func:`motion_envelope`); unit RMS. Same draws for every texture."""
    carrier = _band_noise(rng, num_samples, sr, 1400 * 2 ** rng.uniform(-0.5, 0.5), 0.5)
    t = np.arange(num_samples) * (fps / sr)
    return (carrier * motion_envelope(PATTERN_OF_TEXTURE[texture], starts, t)).astype(np.float32)


def _texture(
    rng: np.random.Generator, texture: str, starts: np.ndarray, num_samples: int, fps: int, sr: int
) -> np.ndarray:
    """(S,) float32: the sound ``texture`` that the motion of its pattern makes between the impacts ``starts``.

    A unit-RMS carrier times an envelope in [0, 1] that follows the pattern's motion, computed from the
    impact schedule alone, so a texture fits any video (a slide's scrape in a bounce video follows the
    block that would slide there). In a video of its own pattern it follows the object on screen
    (:data:`_TEXTURE_SOUNDS` has one function per texture).
    """
    t = np.arange(num_samples) * (fps / sr)  # sample instants in frames
    phase, interval, _ = _schedule_at(starts, t)
    carrier, envelope = _TEXTURE_SOUNDS[texture](rng, t, phase, interval, fps, sr)
    return (carrier * envelope).astype(np.float32)


# Each texture: (rng, sample instants in frames, phase and interval of the impact schedule at them, fps,
# sample rate) -> (carrier, envelope), both (S,).


def _whistle(rng, t, phase, interval, fps, sr):
    """Bounce: a tone whose pitch rises with the ball and falls with it (up to 1.5 octaves for the
    highest bounce), fading out at each impact."""
    height = (interval / interval.max()) ** 2 * 4 * phase * (1 - phase)  # as the ball in scene._bounce
    freq = rng.uniform(300, 500) * 2 ** (1.5 * height)
    carrier = math.sqrt(2) * np.sin(2 * np.pi * np.cumsum(freq) / sr)
    return carrier, np.sqrt(np.sin(np.pi * phase))


def _scrape(rng, t, phase, interval, fps, sr):
    """Slide: high band noise (2.5-4.5 kHz) as loud as the block is fast, silent at the walls."""
    carrier = _band_noise(rng, len(t), sr, rng.uniform(2500, 4500), 0.4)
    frames_from_wall = np.minimum(phase, 1 - phase) * interval
    return carrier, interval.min() / interval * np.clip(frames_from_wall / 1.5, 0, 1)


def _whoosh(rng, t, phase, interval, fps, sr):
    """Swing: low band noise (250-500 Hz) as loud as the pendulum is fast, loudest as it sweeps down
    onto the post, silent where it turns."""
    carrier = _band_noise(rng, len(t), sr, rng.uniform(250, 500), 0.7)
    return carrier, np.abs(1 - 2 * phase)  # the angular speed of the swing in scene._swing, normalised


def _hum(rng, t, phase, interval, fps, sr):
    """Pulse: a low buzz (55-90 Hz and its harmonics) that swells with the object at each beat."""
    f0, harmonics = rng.uniform(55, 90), np.arange(1, 7)
    offsets = rng.uniform(0, 2 * np.pi, len(harmonics))
    carrier = sum(np.sin(2 * np.pi * k * f0 * t / fps + o) / k for k, o in zip(harmonics, offsets))
    carrier /= math.sqrt(float(np.sum(1 / harmonics**2)) / 2)
    return carrier, 0.3 + 0.7 * np.exp(-phase * interval / 3.0)  # relaxes over a few frames, as the swell


_TEXTURE_SOUNDS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "whistle": _whistle,
    "scrape": _scrape,
    "whoosh": _whoosh,
    "hum": _hum,
}


def _add_at(audio: np.ndarray, sound: np.ndarray, start: int) -> None:
    """Mix ``sound`` into ``audio`` from sample ``start`` on, cut at the end of the clip."""
    if 0 <= start < len(audio):
        n = min(len(sound), len(audio) - start)
        audio[start : start + n] += sound[:n]


def _render_audio(
    rng: np.random.Generator,
    sound: str,
    texture: str,
    events: list[int],
    starts: np.ndarray,
    num_samples: int,
    fps: int,
    sr: int,
    difficulty: float,
    distractors: int = 0,
    ambient: float = 0.05,
    sound_code: str = "timing",
) -> np.ndarray:
    """(S,) float32: the class sound at every impact frame of ``events`` (onset at ``frame * sr / fps``),
    distractor sounds at random times, background noise, and the motion ``texture`` over the impact
    schedule ``starts``. ``sound_code`` "timing": the shared texture of :func:`_timing_texture` at -10 dB
    (RMS) from the impacts' peak level; "spectrum": the pattern's own texture (:func:`_texture`), 12 dB
    (difficulty 0) to 20 dB (difficulty 1) below. ``ambient``: the background noise's RMS relative to the
    impacts' peak level. ``distractors``: sounds without a visual event, ``distractors / 2`` a second."""
    d = difficulty
    func, centre = _TIMBRES[sound], TIMBRE_CENTRE_HZ[sound]
    spread = 0.3 + 0.5 * d  # octaves either side of the timbre's centre
    f0 = centre * 2 ** rng.uniform(-spread, spread)
    decay = rng.uniform(0.7, 1.3)
    loudness = rng.uniform(0.35, 0.7)
    audio = np.zeros(num_samples, np.float32)
    for e in events:
        hit = func(rng, f0 * 2 ** rng.normal(0, 0.02), sr, decay)
        _add_at(audio, loudness * rng.uniform(0.7, 1.0) * hit, round(e * sr / fps))
    seconds = num_samples / sr
    for _ in range(int(rng.poisson(0.5 * distractors * seconds))):
        gain = loudness * rng.uniform(0.15, 0.45)
        _add_at(audio, gain * _distractor_sound(rng, sr), int(rng.integers(0, num_samples)))
    audio += loudness * ambient * _coloured_noise(rng, num_samples, sr)
    # Drawn last, so that the texture a video gets leaves every other part of it unchanged.
    if sound_code == "timing":
        audio += loudness * 10 ** (-10 / 20) * _timing_texture(rng, texture, starts, num_samples, fps, sr)
    else:
        audio += loudness * 10 ** (-(12 + 8 * d) / 20) * _texture(rng, texture, starts, num_samples, fps, sr)
    peak = float(np.abs(audio).max())
    if peak > 0.95:  # scale rather than clip, so the waveform keeps its shape
        audio *= 0.95 / peak
    return audio
