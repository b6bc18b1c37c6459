"""Whole stems and tracks in memory, for tests: lossless stems written and read in the format
the separation worker stores (common/flac.py), tracks rendered from them as the render worker
renders (worker/render/encode.py), and an audio file's whole waveform decoded as the
separation worker decodes it."""

from __future__ import annotations

import io
import tempfile

import numpy as np
import soundfile
import torch

from common import flac
from worker.render.encode import BLOCK, render_to
from worker.runtime.errors import DecodeFailed
from worker.separation.audio import blocks


def write_lossless(wav: np.ndarray, samplerate: int) -> bytes:
    """A `[channels, samples]` float stem as the separation worker stores it."""
    out = io.BytesIO()
    with flac.writer(out, samplerate, wav.shape[0]) as stem:
        flac.write_block(stem, np.array(wav.T, dtype=np.float32))
    return out.getvalue()


def read_lossless(data: bytes) -> tuple[np.ndarray, int]:
    """A lossless stem as `[channels, samples]` float32 at its true level, and its rate."""
    with soundfile.SoundFile(io.BytesIO(data)) as stem:
        return np.ascontiguousarray(flac.read_block(stem, stem.frames)), stem.samplerate


def render_track(sources: list[bytes], fmt: str, quality: int, block: int = BLOCK) -> bytes:
    """A track rendered from lossless stems in memory, to bytes."""
    out = io.BytesIO()
    render_to([io.BytesIO(data) for data in sources], fmt, quality, out, block)
    return out.getvalue()


def decode(data: bytes, samplerate: int, channels: int) -> torch.Tensor:
    """The whole `[channels, samples]` waveform of an audio file's bytes."""
    with tempfile.NamedTemporaryFile() as handle:
        handle.write(data)
        handle.flush()
        parts = list(blocks(handle.name, samplerate, channels))
    if not parts:
        raise DecodeFailed("the file decodes to no audio at all")
    return torch.cat(parts, dim=1)
