"""The `analysis` operation: tempo (BPM), key and integrated loudness of the mix and each stem.

All three come from one streamed pass over the audio, a block at a time:
- loudness: ITU-R BS.1770-4 (EBU R 128) integrated loudness, with pyloudnorm's K-weighting
  filters run block by block (their state carried over), mean squares per 100 ms, then the
  standard's 400 ms gating blocks with the -70 LUFS absolute and -10 LU relative gates;
- tempo: the autocorrelation of a spectral-flux onset envelope, weighted by a log-normal prior
  around 120 BPM (as librosa's beat tracker does), the peak refined by parabolic interpolation;
- key: a chroma profile summed over the song, correlated with the Krumhansl-Kessler major and
  minor profiles in the 12 transpositions; the best of the 24 names the key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator, Mapping

import numpy as np
import scipy.signal
from pyloudnorm.iirfilter import IIRfilter

from worker.render.encode import BLOCK
from worker.render.mix import mixed_blocks, stem_format
from worker.render.operations import OperationInput, Output

FRAME, HOP = 2048, 512  # STFT for onsets and chroma
MIN_BPM, MAX_BPM, PRIOR_BPM = 40.0, 240.0, 120.0
NOTES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
ABSOLUTE_GATE, RELATIVE_GATE = -70.0, -10.0
MIN_FLUX = 0.01  # onsets under this share of the spectrum's level are no beat


class Loudness:
    """BS.1770 integrated loudness of a signal given a block at a time."""

    def __init__(self, rate: int, channels: int):
        # pyloudnorm's K-weighting: a high shelf then a high pass, as Meter(rate) builds them.
        self.stages = [IIRfilter(4.0, 1 / np.sqrt(2), 1500.0, rate, "high_shelf"),
                       IIRfilter(0.0, 0.5, 38.0, rate, "high_pass")]
        self.coefficients = [(stage.b, stage.a, stage.passband_gain) for stage in self.stages]
        self.state = [np.zeros((channels, 2)) for _ in self.stages]
        self.step = round(0.1 * rate)  # 100 ms: the 400 ms blocks overlap by 75 %
        self.carry = np.zeros((channels, 0))
        self.energies: list[np.ndarray] = []  # [steps, channels] sums of squares per 100 ms

    def add(self, wav: np.ndarray) -> None:
        """Filter one `[channels, frames]` block and keep its 100 ms energies."""
        weighted = wav.astype(np.float64)
        for n, (b, a, gain) in enumerate(self.coefficients):
            weighted, self.state[n] = scipy.signal.lfilter(b, a, weighted, axis=1,
                                                           zi=self.state[n])
            weighted = weighted * gain
        weighted = np.concatenate([self.carry, weighted], axis=1)
        whole = weighted.shape[1] // self.step * self.step
        squares = np.square(weighted[:, :whole]).reshape(weighted.shape[0], -1, self.step)
        # One array per block, not one per 100 ms: 16 bytes of figures each, not 130.
        self.energies.append(squares.sum(axis=2).T)
        self.carry = weighted[:, whole:]

    def integrated(self) -> float | None:
        """The integrated loudness in LUFS; None for silence or under 400 ms."""
        steps = np.concatenate(self.energies) if self.energies else np.zeros((0, 1))
        if len(steps) < 4:
            return None
        blocks = (steps[:-3] + steps[1:-2] + steps[2:-1] + steps[3:]) / (4 * self.step)
        power = blocks.sum(axis=1)  # channel weights are 1 for left and right
        with np.errstate(divide="ignore"):
            loudness = -0.691 + 10 * np.log10(power)
        gated = loudness > ABSOLUTE_GATE
        if not gated.any():
            return None
        relative = -0.691 + 10 * np.log10(power[gated].mean()) + RELATIVE_GATE
        gated &= loudness > relative
        return round(float(-0.691 + 10 * np.log10(power[gated].mean())), 2)


class Autocorrelation:
    """The autocorrelation of a signal less its mean, at lags 0 to `lags`, of a signal given a
    block at a time. It keeps the sums of lagged products and the signal's first and last
    `lags` values, never the signal: its memory does not grow with the song."""

    def __init__(self, lags: int):
        self.lags = lags
        self.products = np.zeros(lags + 1)  # [k]: the sum of x[i] * x[i + k]
        self.head = np.zeros(0)  # the first `lags` values
        self.tail = np.zeros(lags)  # the last `lags` values (zeros before the first)
        self.count, self.total = 0, 0.0

    def add(self, values: np.ndarray) -> None:
        """Take `values`, the signal's next samples."""
        values = values.astype(np.float64)
        seen = np.concatenate([self.tail, values])
        # Row r holds seen[r : r + lags + 1], ending at the new value values[r].
        windows = np.lib.stride_tricks.sliding_window_view(seen, self.lags + 1)
        self.products += windows[:, ::-1].T @ values
        self.head = np.concatenate([self.head, values[:self.lags - len(self.head)]])
        self.tail = seen[len(values):].copy()
        self.count += len(values)
        self.total += float(values.sum())

    def correlation(self) -> np.ndarray:
        """`[lags + 1]`: the sum over i of (x[i] - mean) * (x[i + k] - mean), for each lag k."""
        mean, lag = self.total / max(self.count, 1), np.arange(self.lags + 1)
        first = np.concatenate([[0.0], np.cumsum(self.head)])  # [k]: sum of the first k
        last = np.concatenate([[0.0], np.cumsum(self.tail[::-1])])  # [k]: of the last k
        # sum (x[i] - m)(x[i+k] - m) = products - m (sum of x[i] + sum of x[i+k]) + (N - k) m^2
        return (self.products - mean * (2 * self.total - first - last)
                + (self.count - lag) * mean * mean)


class Spectrum:
    """Onset envelope and chroma of a mono signal given a block at a time."""

    def __init__(self, rate: int):
        self.rate = rate
        self.window = np.hanning(FRAME).astype(np.float32)
        frequencies = np.fft.rfftfreq(FRAME, 1 / rate)
        audible = (frequencies >= 55) & (frequencies <= 5000)
        self.bins = np.flatnonzero(audible)
        midi = 69 + 12 * np.log2(frequencies[self.bins] / 440)
        self.pitch_class = np.round(midi).astype(int) % 12
        self.carry = np.zeros(0, np.float32)
        self.previous: np.ndarray | None = None
        # Onsets as an autocorrelation over the tempi looked for: none slower than MIN_BPM.
        self.onsets = Autocorrelation(int(rate / HOP * 60 / MIN_BPM) + 2)
        self.level = 0.0  # the compressed spectra summed: what onsets are measured against
        self.chroma = np.zeros(12)

    def add(self, mono: np.ndarray) -> None:
        """Take the whole frames of one more block (the rest waits for the next)."""
        signal = np.concatenate([self.carry, mono])
        count = max(0, (len(signal) - FRAME) // HOP + 1)
        if not count:
            self.carry = signal
            return
        frames = np.lib.stride_tricks.sliding_window_view(signal, FRAME)[::HOP][:count]
        magnitude = np.abs(np.fft.rfft(frames * self.window, axis=1))
        self.chroma += np.bincount(self.pitch_class, np.square(magnitude[:, self.bins]).sum(0),
                                   minlength=12)
        compressed = np.log1p(100 * magnitude)
        previous = compressed[:1] if self.previous is None else self.previous
        flux = np.diff(np.concatenate([previous, compressed]), axis=0)
        self.onsets.add(np.maximum(flux, 0).sum(axis=1))
        self.level += float(compressed.sum())
        self.previous = compressed[-1:]
        self.carry = signal[count * HOP:]

    def tempo(self) -> float | None:
        """The tempo in BPM; None when there is no beat to find."""
        fps, onsets = self.rate / HOP, self.onsets
        # A steady sound (a held tone) changes by a fraction of a percent a frame: no beat.
        if onsets.count < 2 * onsets.lags or onsets.total < MIN_FLUX * self.level:
            return None
        correlation = onsets.correlation()
        lags = np.arange(len(correlation), dtype=float)
        bpm = np.divide(60 * fps, lags, out=np.zeros_like(lags), where=lags > 0)
        prior = np.exp(-0.5 * np.square(np.log2(np.maximum(bpm, 1e-9) / PRIOR_BPM)))
        weighted = np.where((bpm >= MIN_BPM) & (bpm <= MAX_BPM), correlation * prior, -np.inf)
        best = int(np.argmax(weighted))
        if correlation[best] < 0.1 * correlation[0]:  # no periodicity worth the name
            return None
        left, middle, right = correlation[best - 1:best + 2]
        curvature = left - 2 * middle + right
        shift = 0.5 * (left - right) / curvature if curvature < 0 else 0.0
        return round(float(60 * fps / (best + shift)), 1)

    def key(self) -> str | None:
        """`C major`, `A minor`...; None for silence."""
        if not self.chroma.any():
            return None
        scores = [(np.corrcoef(np.roll(profile, tonic), self.chroma)[0, 1], tonic, mode)
                  for mode, profile in (("major", MAJOR), ("minor", MINOR))
                  for tonic in range(12)]
        _, tonic, mode = max(scores)
        return f"{NOTES[tonic]} {mode}"


def analyse(sources: Mapping[str, str], gains: Mapping[str, float],
            block: int = BLOCK) -> dict:
    """Tempo, key, loudness and duration of the sum of `sources` times `gains`."""
    rate, frames, channels = stem_format(sources)
    loudness, spectrum = Loudness(rate, channels), Spectrum(rate)
    for wav in mixed_blocks(sources, gains, block=block):
        loudness.add(wav)
        spectrum.add(wav.mean(axis=0))
    return {"tempo_bpm": spectrum.tempo(), "key": spectrum.key(),
            "loudness_lufs": loudness.integrated(), "duration_s": round(frames / rate, 3)}


def analysis(job: OperationInput) -> Generator[Output, None, None]:
    """`analysis.json`: the mix's figures and each stem's, computed in parallel by the pool."""
    calls = [({stem: path}, {stem: 1.0}) for stem, path in job.stems.items()]
    calls.append((job.stems, dict.fromkeys(job.stems, 1.0)))
    *stems, mix = job.renderer.map(analyse, calls)
    path = os.path.join(job.folder, "analysis.json")
    with open(path, "w") as out:
        json.dump({"mix": mix, "stems": dict(zip(job.stems, stems, strict=True))}, out,
                  indent=None)
    yield "analysis.json", path, "application/json"
    job.progress(1.0)
