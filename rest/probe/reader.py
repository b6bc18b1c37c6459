"""What every format probe returns or raises, and the helpers they share."""

from __future__ import annotations

from dataclasses import dataclass

from rest.mp3probe import Buffer, skip_id3v2  # noqa: F401 (ID3v2 may precede AAC, FLAC)


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


