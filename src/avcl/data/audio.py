"""The log-mel spectrogram of a whole audio track (METHOD.md section 1).

Mono audio at 24 kHz; a 10 ms Hann window (240 samples) every 10 ms, zero-padded to a 1024-point FFT
(a 240-point FFT has only 121 bins, fewer than 256 mel bands); power spectrum; 256 Slaney mel filters
from ``librosa.filters.mel``; power to dB. The result is what ``librosa.feature.melspectrogram`` followed
by ``librosa.power_to_db(ref=1.0, amin=1e-10, top_db=80)`` gives with the same settings, computed with
``torch.stft``.

dB reference: ``ref=1.0`` (absolute, not the spectrogram's maximum), so the same sound gives the same
values in every video and silence is well defined: a power below ``amin = 1e-10`` reads as -100 dB, and
nothing is lower than the spectrogram's maximum minus ``top_db``. With these settings the mel bands
below about 1 kHz are narrower than the 23.4 Hz FFT bins: each sees one or two bins, so neighbouring low
bands repeat each other.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

AMIN = 1e-10  # power floor before the logarithm: -100 dB


@dataclass(frozen=True)
class MelSettings:
    """Log-mel spectrogram parameters; the defaults are the paper's."""

    sample_rate: int = 24000
    win_length: int = 240  # 10 ms
    hop_length: int = 240  # 10 ms: about 100 frames per second
    n_fft: int = 1024  # the window is zero-padded (centred) to this length
    n_mels: int = 256
    fmin: float = 0.0
    fmax: float | None = None  # None: sample_rate / 2
    top_db: float = 80.0


@functools.lru_cache(maxsize=8)
def _mel_basis(settings: MelSettings) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) float32 Slaney mel filter bank."""
    import librosa  # loaded where it is used: avcl imports without it (GPU machines' own image)

    basis = librosa.filters.mel(
        sr=settings.sample_rate, n_fft=settings.n_fft, n_mels=settings.n_mels, fmin=settings.fmin, fmax=settings.fmax
    )
    return torch.from_numpy(basis.astype(np.float32))


def num_frames(num_samples: int, settings: MelSettings = MelSettings()) -> int:
    """Number of spectrogram frames for ``num_samples`` samples (centred frames: 1 + S // hop)."""
    return 1 + num_samples // settings.hop_length


def log_mel(wave: np.ndarray | torch.Tensor, settings: MelSettings = MelSettings()) -> np.ndarray:
    """(n_mels, 1 + S // hop_length) float32 log-mel spectrogram in dB of a mono wave (S,) in [-1, 1].

    Frames are centred on multiples of the hop (the signal is zero-padded by n_fft / 2 at both ends,
    as librosa does), so one second at 24 kHz gives 101 frames. See the module docstring for the dB scale.
    """
    wave = torch.as_tensor(wave, dtype=torch.float32)
    if wave.ndim != 1:
        raise ValueError(f"log_mel expects a mono wave of shape (S,), got shape {tuple(wave.shape)}")
    window = torch.hann_window(settings.win_length, periodic=True)  # scipy's 'hann' with fftbins=True, as librosa
    spectrum = torch.stft(
        wave,
        n_fft=settings.n_fft,
        hop_length=settings.hop_length,
        win_length=settings.win_length,
        window=window,
        center=True,
        pad_mode="constant",  # librosa >= 0.10 pads with zeros
        return_complex=True,
    )
    power = spectrum.real.square() + spectrum.imag.square()  # (n_fft // 2 + 1, frames)
    mel = _mel_basis(settings) @ power
    db = 10.0 * torch.log10(mel.clamp_min(AMIN))
    db = torch.maximum(db, db.max() - settings.top_db)
    return db.numpy().astype(np.float32, copy=False)
