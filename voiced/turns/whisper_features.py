"""Whisper's log-mel features (80 bins, 10 ms hop) for 8 s windows of 16 kHz audio, numpy only.

Smart Turn v3 was trained on the features of Hugging Face's ``WhisperFeatureExtractor``
(``chunk_length=8``, ``do_normalize=True``); faster-whisper's extractor does not normalize the
waveform and pads to 30 s, so its numbers differ. This module computes the same numbers as
pipecat's numpy port of the Hugging Face extractor (checked in tests/test_smart_turn.py), for a
whole batch of windows at once.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

RATE = 16000
WINDOW_SECONDS = 8
WINDOW_SAMPLES = RATE * WINDOW_SECONDS
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 80
FRAMES = WINDOW_SAMPLES // HOP  # 800

_VARIANCE_EPS = 1e-7
_POWER_FLOOR = 1e-10
_DYNAMIC_RANGE_LOG10 = 8.0  # Whisper keeps 80 dB below each window's loudest bin


def _hz_to_slaney_mel(hz: np.ndarray) -> np.ndarray:
    # Slaney's scale: linear below 1 kHz, logarithmic above (librosa's htk=False).
    hz = np.asarray(hz, dtype=np.float64)
    linear = 3.0 * hz / 200.0
    log_step = np.log(6.4) / 27.0
    logarithmic = 15.0 + np.log(np.maximum(hz, 1e-12) / 1000.0) / log_step
    return np.where(hz >= 1000.0, logarithmic, linear)


def _slaney_mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = 200.0 * mel / 3.0
    log_step = np.log(6.4) / 27.0
    logarithmic = 1000.0 * np.exp(log_step * (mel - 15.0))
    return np.where(mel >= 15.0, logarithmic, linear)


def mel_filterbank() -> np.ndarray:
    """Triangular filters, area-normalized (Slaney), shape (N_MELS, N_FFT // 2 + 1)."""
    bin_hz = np.linspace(0.0, RATE / 2, N_FFT // 2 + 1)
    edges_hz = _slaney_mel_to_hz(np.linspace(_hz_to_slaney_mel(0.0), _hz_to_slaney_mel(RATE / 2), N_MELS + 2))
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bin_hz[None, :] - lower) / (centre - lower)
    falling = (upper - bin_hz[None, :]) / (upper - centre)
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    return triangles * (2.0 / (upper - lower))


# Periodic Hann (torch.hann_window's default), as the Hugging Face extractor uses.
_WINDOW = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)
_FILTERS = mel_filterbank()


def log_mel(window: np.ndarray) -> np.ndarray:
    """Features of one window of exactly ``WINDOW_SAMPLES`` samples (float, [-1, 1]) -> (80, 800) float32."""
    if window.shape != (WINDOW_SAMPLES,):
        raise ValueError(f"expected a window of {WINDOW_SAMPLES} samples, got shape {window.shape}")
    # Zero mean, unit variance, in float32 as the Hugging Face extractor does it (the zero
    # padding at the start of a short utterance counts towards both).
    x = window.astype(np.float32)
    x = (x - x.mean()) / np.sqrt(x.var() + _VARIANCE_EPS)
    # Centred STFT: reflect-pad half a frame each side -> 801 frames; Whisper drops the last.
    padded = np.pad(x.astype(np.float64), N_FFT // 2, mode="reflect")
    frames = sliding_window_view(padded, N_FFT)[: FRAMES * HOP : HOP]
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=-1)) ** 2  # (800, 201)
    log_spec = np.log10(np.maximum(_POWER_FLOOR, _FILTERS @ power.T))  # (80, 800)
    log_spec = np.maximum(log_spec, log_spec.max() - _DYNAMIC_RANGE_LOG10)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


def log_mel_batch(windows: np.ndarray) -> np.ndarray:
    """Features of B windows, shape (B, WINDOW_SAMPLES) -> (B, 80, 800) float32."""
    # One window at a time: a whole batch's float64 spectra (40 MB at B=16) fall out of the
    # caches and cost three times as much per item as a loop.
    return np.stack([log_mel(window) for window in windows])
