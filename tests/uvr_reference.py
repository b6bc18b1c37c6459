"""Reference ensembling, whole-array, as python-audio-separator 0.47.1 computes it, for the
tests to compare the streaming code against (audio-separator needs librosa, which the test
environment does not install; these are faithful copies of the code paths it runs).

- `ensembling`: audio_separator/separator/uvr_lib_v5/spec_utils.py `ensembling` (MIN_SPEC /
  MAX_SPEC branches), verbatim but for names.
- `avg_wave`: audio_separator/separator/ensembler.py `Ensembler.ensemble`, algorithm
  "avg_wave", weights None (np.ones).
- `uvr_spec`: `Ensembler._ensemble_uvr` = spec_utils.wave_to_spectrogram_no_mp (librosa.stft
  n_fft=2048, hop_length=1024, defaults: window "hann" periodic, center=True,
  pad_mode="constant") -> ensembling -> spectrogram_to_wave_no_mp (librosa.istft, no length),
  then spec_utils.to_shape (zero-pad to the input's shape), as ensemble_inputs does.
- `stft` / `istft`: librosa 0.10's definitions for those arguments: frames of the zero-padded
  signal times the window, rfft; irfft times the window, overlap-added, divided by the
  window's square sum where it exceeds tiny, the centring trimmed.
"""

from __future__ import annotations

import numpy as np

MAX_SPEC, MIN_SPEC = "Max Spec", "Min Spec"
N_FFT, HOP = 2048, 1024


def _window() -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)


def stft(wave: np.ndarray) -> np.ndarray:
    """librosa.stft(wave, n_fft=2048, hop_length=1024): `[channels, 1025, frames]`."""
    padded = np.pad(wave, ((0, 0), (N_FFT // 2, N_FFT // 2)), mode="constant")
    frames = 1 + (padded.shape[-1] - N_FFT) // HOP
    index = np.arange(frames)[:, None] * HOP + np.arange(N_FFT)[None, :]
    return np.fft.rfft(padded[:, index] * _window(), axis=-1).astype(np.complex64).transpose(
        0, 2, 1)


def istft(spec: np.ndarray) -> np.ndarray:
    """librosa.istft(spec, n_fft=2048, hop_length=1024), no length: `[channels, hop*(n-1)]`."""
    frames = spec.shape[-1]
    window = _window()
    waves = np.fft.irfft(spec.transpose(0, 2, 1), n=N_FFT, axis=-1) * window
    length = N_FFT + HOP * (frames - 1)
    out = np.zeros((spec.shape[0], length))
    norm = np.zeros(length)
    for t in range(frames):
        out[:, t * HOP:t * HOP + N_FFT] += waves[:, t]
        norm[t * HOP:t * HOP + N_FFT] += window ** 2
    nonzero = norm > np.finfo(np.float32).tiny
    out[:, nonzero] /= norm[nonzero]
    return out[:, N_FFT // 2:length - N_FFT // 2]


def ensembling(a: str, inputs: list[np.ndarray]) -> np.ndarray:
    """spec_utils.ensembling, spectrogram inputs."""
    for i in range(1, len(inputs)):
        if i == 1:
            input = inputs[0]  # noqa: A001 (the original's name)
        ln = min([input.shape[2], inputs[i].shape[2]])
        input = input[:, :, :ln]  # noqa: A001
        inputs[i] = inputs[i][:, :, :ln]
        if MIN_SPEC == a:
            input = np.where(np.abs(inputs[i]) <= np.abs(input), inputs[i], input)  # noqa: A001
        if MAX_SPEC == a:
            input = np.where(np.abs(inputs[i]) >= np.abs(input), inputs[i], input)  # noqa: A001
    return input


def uvr_spec(waves: list[np.ndarray], loudest: bool) -> np.ndarray:
    """Ensembler(algorithm="uvr_max_spec" / "uvr_min_spec"), zero-padded to the input length."""
    out = istft(ensembling(MAX_SPEC if loudest else MIN_SPEC, [stft(w) for w in waves]))
    return np.pad(out, ((0, 0), (0, waves[0].shape[1] - out.shape[1])))


def avg_wave(waves: list[np.ndarray]) -> np.ndarray:
    """Ensembler(algorithm="avg_wave") with weights None."""
    weights = np.ones(len(waves))
    ensembled = np.zeros_like(waves[0])
    for w, weight in zip(waves, weights, strict=True):
        ensembled += w * weight
    return ensembled / np.sum(weights)
