"""Ensembling several separations of one stem, a block at a time (memory bounded by a block).

The algorithms are those of python-audio-separator 0.47.1 (audio_separator/separator/
ensembler.py, after Ultimate Vocal Remover's uvr_lib_v5/spec_utils.py):

- `avg`: `avg_wave` with equal weights, the sum of the waveforms divided by their count.
- `max_spec` / `min_spec`: `uvr_max_spec` / `uvr_min_spec`: each waveform to a spectrogram
  (librosa.stft: n_fft 2048, hop 1024, periodic Hann window, centred with zero padding), per
  bin the value of the input with the largest (smallest) magnitude, the later input winning
  ties (spec_utils.ensembling's `>=` / `<=`), back with librosa.istft (window-square
  normalised overlap-add, no length given: hop * (len // hop) samples, which spec_utils'
  ensemble_inputs then zero-pads to the input's length; so does this).

Here the spectrogram is made and inverted frame by frame: output block m (hop samples) needs
frames m and m + 1 only, so a song of any length streams through.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

N_FFT = 2048
HOP = N_FFT // 2
WINDOW = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # scipy's hann, fftbins=True
# The window-square sum under each output block: always frames m and m + 1 (both halves).
NORM = WINDOW[HOP:] ** 2 + WINDOW[:HOP] ** 2
FRAMES_PER_BLOCK = 64  # frames transformed at once: about 1.5 s of audio at 44.1 kHz


def average(blocks: list[np.ndarray]) -> np.ndarray:
    """`avg_wave` with equal weights: summed in order, divided by the count."""
    total = np.zeros_like(blocks[0])
    for block in blocks:
        total += block
    return total / len(blocks)


def pick_bins(specs: list[np.ndarray], loudest: bool) -> np.ndarray:
    """spec_utils.ensembling: per bin, the later input wins when its magnitude is >= (<=)."""
    chosen = specs[0]
    for spec in specs[1:]:
        keep = np.abs(spec) >= np.abs(chosen) if loudest else np.abs(spec) <= np.abs(chosen)
        chosen = np.where(keep, spec, chosen)
    return chosen


def _frames(signal: np.ndarray, count: int) -> np.ndarray:
    """`count` frames of N_FFT samples, HOP apart, from `[channels, HOP * (count + 1)]`."""
    index = np.arange(count)[:, None] * HOP + np.arange(N_FFT)[None, :]
    return signal[:, index]  # [channels, count, N_FFT]


class SpecEnsembler:
    """Streams max_spec / min_spec: feed each input's next samples, get the output's."""

    def __init__(self, inputs: int, channels: int, length: int, loudest: bool):
        self.loudest = loudest
        self.frames = 1 + length // HOP  # librosa.stft, centred
        self.done = 0  # frames transformed so far
        # Each input's samples from (next frame - 1) * HOP: the centring's zeros first.
        self.pending = [np.zeros((channels, HOP)) for _ in range(inputs)]
        self.carry: np.ndarray | None = None  # second half of the last frame, inverted

    def feed(self, blocks: list[np.ndarray], last: bool = False) -> np.ndarray:
        """Take the inputs' next samples (`[channels, n]` each, the same n); the output samples
        now complete, `[channels, m]`. With `last` (the inputs' ends), every frame left."""
        self.pending = [np.concatenate([p, b], axis=1) for p, b in zip(self.pending, blocks,
                                                                         strict=True)]
        if last:  # the centring's zeros after the end, and the frames' room
            room = HOP * (self.frames - self.done + 1) - self.pending[0].shape[1]
            self.pending = [np.pad(p, ((0, 0), (0, max(room, 0)))) for p in self.pending]
        ready = min(self.pending[0].shape[1] // HOP - 1, self.frames - self.done)
        out = [np.zeros((self.pending[0].shape[0], 0))]
        while ready > 0:
            count = min(ready, FRAMES_PER_BLOCK)
            out.append(self._transform(count))
            ready -= count
        return np.concatenate(out, axis=1)

    def _transform(self, count: int) -> np.ndarray:
        """Frames `done` .. `done + count - 1` through the spectrogram and back; the output
        blocks they complete (block m: frame m's second half plus frame m + 1's first)."""
        specs = [np.fft.rfft(_frames(p, count) * WINDOW, axis=-1) for p in self.pending]
        waves = np.fft.irfft(pick_bins(specs, self.loudest), n=N_FFT, axis=-1) * WINDOW
        self.pending = [p[:, count * HOP:] for p in self.pending]
        self.done += count
        firsts, seconds = waves[:, :, :HOP], waves[:, :, HOP:]  # [channels, count, HOP]
        if self.carry is None:  # frame 0: no block ends in it
            blocks = seconds[:, :-1] + firsts[:, 1:]
        else:
            blocks = np.concatenate([self.carry[:, None], seconds[:, :-1]], axis=1) + firsts
        self.carry = seconds[:, -1]
        made = blocks / NORM
        return made.reshape(made.shape[0], -1)


def spec_blocks(readers: list, length: int, loudest: bool, block: int) -> Iterator[np.ndarray]:
    """The max_spec/min_spec ensemble of `readers` (`read(n) -> [channels, n]`, zeros past
    their ends), `[channels, n]` at a time, `length` samples in all."""
    first = readers[0].read(0)
    ensembler = SpecEnsembler(len(readers), first.shape[0], length, loudest)
    sent = 0
    while sent < length:
        n = min(block, length - sent)
        blocks = [reader.read(n) for reader in readers]
        sent += n
        made = ensembler.feed(blocks, last=sent >= length)
        if made.shape[1]:
            yield made
    tail = length - HOP * (ensembler.frames - 1)
    if tail > 0:  # spec_utils' to_shape: the samples istft did not give back are zeros
        yield np.zeros((first.shape[0], tail))
