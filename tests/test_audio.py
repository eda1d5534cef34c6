"""The log-mel spectrogram: shape, frequency placement, agreement with librosa, the dB floor."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch
from media import write_video

from avcl.data.audio import MelSettings, log_mel, num_frames
from avcl.data.decode import read_audio

SR = 24000


def _tone(hz: float, seconds: float = 1.0, sr: int = SR, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _librosa_log_mel(wave: np.ndarray, s: MelSettings) -> np.ndarray:
    mel = librosa.feature.melspectrogram(
        y=wave,
        sr=s.sample_rate,
        n_fft=s.n_fft,
        hop_length=s.hop_length,
        win_length=s.win_length,
        n_mels=s.n_mels,
        fmin=s.fmin,
        fmax=s.fmax,
        power=2.0,
    )
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=s.top_db)


def test_shape_about_100_frames_per_second():
    for seconds in (1.0, 2.5, 10.0):
        spec = log_mel(_tone(440, seconds))
        assert spec.dtype == np.float32
        assert spec.shape == (256, 1 + int(seconds * SR) // 240) == (256, num_frames(int(seconds * SR)))
    assert log_mel(_tone(440, 10.0)).shape[1] == 1001  # a 10 s clip: about 1000 frames (METHOD.md section 1)


@pytest.mark.parametrize("hz", [300.0, 1000.0, 3000.0, 8000.0])
def test_pure_tone_lands_in_its_mel_band(hz):
    spec = log_mel(_tone(hz))
    centres = librosa.mel_frequencies(n_mels=256 + 2, fmin=0.0, fmax=SR / 2)[1:-1]  # band i peaks at centres[i]
    band = int(spec[:, 5:-5].mean(axis=1).argmax())
    nearest = int(np.abs(centres - hz).argmin())
    # Low bands are narrower than the 23.4 Hz FFT bins: there the loudest band is within one bin of the
    # tone; high bands are wider: there it is the nearest band or its neighbour.
    assert abs(band - nearest) <= 1 or abs(centres[band] - hz) <= SR / 1024, (band, nearest, centres[band])


def test_matches_librosa():
    rng = np.random.default_rng(0)
    wave = _tone(1000.0, 2.0, amplitude=0.3) + (0.05 * rng.standard_normal(2 * SR)).astype(np.float32)
    settings = MelSettings()
    ours, reference = log_mel(wave, settings), _librosa_log_mel(wave, settings)
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() < 0.01  # dB


def test_matches_librosa_with_other_settings():
    settings = MelSettings(
        sample_rate=16000, win_length=400, hop_length=160, n_fft=512, n_mels=64, fmin=50.0, fmax=7000.0, top_db=60.0
    )
    rng = np.random.default_rng(1)
    wave = (0.2 * rng.standard_normal(16000)).astype(np.float32) + _tone(2000.0, sr=16000, amplitude=0.2)
    ours, reference = log_mel(wave, settings), _librosa_log_mel(wave, settings)
    assert ours.shape == (64, 101)
    assert np.abs(ours - reference).max() < 0.01


def test_silence_and_floor():
    silence = log_mel(np.zeros(SR, dtype=np.float32))
    assert np.all(silence == -100.0)  # ref = 1.0, amin = 1e-10: silence is defined, not -inf or NaN
    # Half tone, half silence: nothing lies more than top_db below the loudest value.
    wave = np.concatenate([_tone(440.0), np.zeros(SR, dtype=np.float32)])
    spec = log_mel(wave)
    assert np.isfinite(spec).all()
    assert spec.min() == pytest.approx(spec.max() - 80.0)
    assert np.all(spec[:, -50:] == spec.min())  # the silent second sits on the floor


def test_torch_input_and_bad_shape():
    wave = _tone(440.0)
    assert np.array_equal(log_mel(torch.from_numpy(wave)), log_mel(wave))
    assert np.allclose(log_mel(wave.astype(np.float64)), log_mel(wave))
    with pytest.raises(ValueError, match="mono"):
        log_mel(np.zeros((2, SR), dtype=np.float32))


def test_log_mel_of_a_decoded_video(tmp_path):
    path = write_video(tmp_path / "v.mp4", num_frames=50, audio_seconds=2.0, tone_hz=1000.0)
    spec = log_mel(read_audio(path))
    assert spec.shape[0] == 256 and abs(spec.shape[1] - 201) <= 5
    centres = librosa.mel_frequencies(n_mels=258, fmax=SR / 2)[1:-1]
    assert abs(centres[int(spec[:, 20:-20].mean(axis=1).argmax())] - 1000.0) <= SR / 1024  # 1 kHz: bands ~13 Hz apart
