"""The lossless stems' format, the one place it is written and read: 24-bit FLAC (libsndfile)
holding each stem divided by LOSSLESS_HEADROOM. Used by the workers (the separation writes
stems, the render reads them); numpy and soundfile only, no torch.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import soundfile

# Stems are stored divided by this gain, so that a stem up to 18 dB above full scale keeps its
# shape in 24-bit FLAC (21 bits left, about 126 dB): readers multiply it back before any clip
# rescaling of their own.
LOSSLESS_HEADROOM = 8.0
SUBTYPE = "PCM_24"


class Seekable(Protocol):
    """A file libsndfile can write FLAC into: it goes back to fill in the header at the end."""

    def write(self, data: bytes, /) -> int: ...
    def seek(self, offset: int, whence: int = 0, /) -> int: ...
    def tell(self) -> int: ...


def writer(file: str | Seekable, samplerate: int, channels: int) -> soundfile.SoundFile:
    """A stem's FLAC file (a path or a writable, seekable file object), open for writing."""
    return soundfile.SoundFile(file, "w", samplerate, channels, SUBTYPE, format="FLAC")


def write_block(flac: soundfile.SoundFile, frames: np.ndarray) -> int:
    """Write `[frames, channels]` float32 at the stem's true level (scaled in place, so the
    caller's scratch is the only copy); the number of samples clipped at the headroom."""
    frames /= np.float32(LOSSLESS_HEADROOM)
    clipped = int(np.count_nonzero(np.abs(frames) > 1))
    flac.write(np.clip(frames, -1, 1, out=frames))
    return clipped


def read_block(flac: soundfile.SoundFile, frames: int, gain: float = 1.0) -> np.ndarray:
    """The next `frames` of a stem as `[channels, n]` float32 at its true level times `gain`
    (fewer at its end, none past it)."""
    block: np.ndarray = flac.read(frames, dtype="float32", always_2d=True)
    return block.T * np.float32(gain * LOSSLESS_HEADROOM)
