"""Decoding an upload a window at a time into the waveform Demucs takes, never past the cap.

FFmpeg's decoders and resampler (PyAV) read the file progressively, so memory does not grow
with the song; they are what the Demucs CLI decodes and resamples with (`ffmpeg -ar -ac`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import av
import numpy as np
import torch

from worker.runtime.errors import DecodeFailed, TooLong

BLOCK = 2**16  # samples per block handed on: about 1.5 s at 44.1 kHz


@dataclass(frozen=True)
class Summary:
    """What the first pass learns: the length at the model's rate and the mix's statistics."""

    length: int
    mean: float  # of the channels' average, as demucs.api normalises
    std: float  # unbiased, as torch.std
    seconds: float  # of audio


def blocks(path: str, samplerate: int, channels: int,
           max_seconds: float = math.inf) -> Iterator[torch.Tensor]:
    """`[channels, n]` float32 blocks at `samplerate`, in order.

    Raises TooLong as soon as more than `max_seconds` of audio were decoded (the decoder stops
    there), DecodeFailed when the file cannot be decoded.
    """
    layout = {1: "mono", 2: "stereo"}[channels]
    pending: list[np.ndarray] = []
    held = 0
    try:
        with av.open(path) as container:
            if not container.streams.audio:
                raise DecodeFailed("the file holds no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=samplerate)
            decoded = 0
            for frame in _frames(container, stream):
                decoded += frame.samples
                if decoded > max_seconds * frame.sample_rate:
                    raise TooLong(f"the song plays for more than {max_seconds:.0f} s, the "
                                  f"limit; it was not decoded further")
                for chunk in resampler.resample(frame):
                    pending.append(chunk.to_ndarray())
                    held += chunk.samples
                if held >= BLOCK:
                    yield torch.from_numpy(np.concatenate(pending, axis=1))
                    pending, held = [], 0
            pending.extend(chunk.to_ndarray() for chunk in resampler.resample(None))
    except av.FFmpegError as error:
        raise DecodeFailed(f"the audio could not be decoded ({error.strerror or error})") from None
    if pending:
        yield torch.from_numpy(np.concatenate(pending, axis=1))


def _frames(container, stream) -> Iterator[av.AudioFrame]:
    """The stream's decoded frames; a packet the decoder refuses is skipped, as the ffmpeg
    command does, so junk between frames neither fails the song nor hides what follows."""
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.InvalidDataError:
            continue
        yield from frames


def summarise(path: str, samplerate: int, channels: int, max_seconds: float) -> Summary:
    """The first pass over the audio: its length and the mean and deviation of its mix."""
    count, mean, squares = 0, 0.0, 0.0  # Chan et al.'s pairwise update, in float64
    for block in blocks(path, samplerate, channels, max_seconds):
        reference = block.double().mean(0)
        n, block_mean = reference.numel(), reference.mean().item()
        block_squares = (reference - block_mean).square().sum().item()
        delta, total = block_mean - mean, count + n
        mean += delta * n / total
        squares += block_squares + delta * delta * count * n / total
        count = total
    if count == 0:
        raise DecodeFailed("the file decodes to no audio at all")
    std = math.sqrt(squares / (count - 1)) if count > 1 else math.nan
    return Summary(count, mean, std, count / samplerate)
