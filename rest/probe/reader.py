"""What every format probe returns or raises, and the helpers they share to read headers."""

from __future__ import annotations

import mmap
from dataclasses import dataclass

# The request body's bytes, or an mmap of an upload spooled to disk: both slice to bytes and find.
Buffer = bytes | bytearray | mmap.mmap


# Chunks, boxes, metadata blocks or tags a probe walks in one file: real files hold a few
# dozen, and a crafted one of tiny pieces would otherwise hold the gateway for seconds.
MAX_PIECES = 1000


class NotAudio(ValueError):
    """The bytes are not audio the service can read; the message says why."""


def too_many(pieces: str) -> NotAudio:
    """The refusal of a file made of more than MAX_PIECES `pieces`."""
    return NotAudio(f"the file holds more than {MAX_PIECES} {pieces}, which no audio file "
                    "needs: it is malformed or crafted")


@dataclass(frozen=True)
class AudioInfo:
    """A recognised upload: its format (also the object's extension) and length."""

    format: str
    duration_s: float
    sample_rate: int
    channels: int = 0  # 0: not stated in a header the probe reads


def u16le(data: Buffer, pos: int) -> int:
    return int.from_bytes(data[pos:pos + 2], "little")


def u32le(data: Buffer, pos: int) -> int:
    return int.from_bytes(data[pos:pos + 4], "little")


def u32be(data: Buffer, pos: int) -> int:
    return int.from_bytes(data[pos:pos + 4], "big")


def u64be(data: Buffer, pos: int) -> int:
    return int.from_bytes(data[pos:pos + 8], "big")


def skip_id3v2(data: Buffer, pos: int) -> int:
    """Position after any ID3v2 tags starting at `pos` (they may precede MP3, AAC and FLAC)."""
    for _ in range(MAX_PIECES + 1):
        if data[pos:pos + 3] != b"ID3" or len(data) < pos + 10:
            return pos
        size = 0
        for byte in data[pos + 6:pos + 10]:
            size = (size << 7) | (byte & 0x7F)
        footer = 10 if data[pos + 5] & 0x10 else 0
        pos += 10 + size + footer
    raise too_many("ID3 tags")
