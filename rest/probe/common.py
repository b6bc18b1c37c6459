"""What every format probe returns or raises, and the helpers they share."""

from __future__ import annotations

from dataclasses import dataclass

from rest.mp3probe import Buffer


class NotAudio(ValueError):
    """The bytes are not audio the service can read; the message says why."""


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
    while data[pos:pos + 3] == b"ID3" and len(data) >= pos + 10:
        size = 0
        for byte in data[pos + 6:pos + 10]:
            size = (size << 7) | (byte & 0x7F)
        footer = 10 if data[pos + 5] & 0x10 else 0
        pos += 10 + size + footer
    return pos
