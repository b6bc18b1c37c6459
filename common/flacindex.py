"""A seek index of a FLAC file: where its frames start, so that a player can fetch any stretch
of a stem by byte range and decode it alone (the header, then whole frames).

One streamed pass over the file: the metadata blocks give the format and the header's length;
then each frame header (sync code, UTF-8 coded frame or sample number, CRC-8) is found and
checked, and one frame every INTERVAL_S is kept as (first sample, byte offset). A false sync in
the audio data is rejected by its CRC-8 and by its number, which must be the one expected next.
Pure Python and numpy; memory bounded by the read chunk whatever the file's length.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO

import numpy as np

INTERVAL_S = 1.5  # seconds between the frames kept
CHUNK = 1 << 20  # bytes read at a time
_MAX_HEADER = 16  # a frame header's longest: 2 sync, 2 codes, 7 number, 2 + 2 extras, 1 CRC


class FlacIndexError(ValueError):
    """A file that is not FLAC, or whose frames do not follow one another."""


@dataclass
class FlacIndex:
    """A stem's format and its seek points: `frames` holds [first sample, byte offset] pairs,
    the first at the first frame (`header_bytes`), in order."""

    sample_rate: int
    channels: int
    bits: int
    total_samples: int
    header_bytes: int
    bytes: int = 0
    frames: list[list[int]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _crc8_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        table.append(crc)
    return table


_CRC8 = _crc8_table()


def crc8(data: bytes) -> int:
    """FLAC's frame header CRC: polynomial x^8 + x^2 + x + 1, initial 0."""
    crc = 0
    for byte in data:
        crc = _CRC8[crc ^ byte]
    return crc


def _utf8_number(data: bytes, at: int) -> tuple[int, int] | None:
    """The UTF-8 coded number at `at` (up to 36 bits, 7 bytes) and its length; None if malformed."""
    first = data[at]
    if first < 0x80:
        return first, 1
    extra = next((n for n in range(1, 7) if not first & (0x40 >> n)), None)
    if extra is None or first & 0xC0 != 0xC0:
        return None
    value = first & (0x3F >> extra)
    for byte in data[at + 1:at + 1 + extra]:
        if byte & 0xC0 != 0x80:
            return None
        value = (value << 6) | (byte & 0x3F)
    return value, 1 + extra


def _block_size(code: int, data: bytes, at: int) -> tuple[int, int] | None:
    """A frame's block size from its 4-bit code (reading the 8 or 16 bits after the number for
    codes 6 and 7) and the bytes those took; None for the reserved code 0."""
    if code == 1:
        return 192, 0
    if 2 <= code <= 5:
        return 576 << (code - 2), 0
    if code == 6:
        return data[at] + 1, 1
    if code == 7:
        return (data[at] << 8 | data[at + 1]) + 1, 2
    if code >= 8:
        return 256 << (code - 8), 0
    return None


def frame_header(data: bytes, at: int, channels: int) -> tuple[bool, int, int] | None:
    """(variable block size, frame or sample number, block size) of the frame header at `at`
    when it is one (sync, reserved bits, channels, CRC-8 all as they must be); None if not."""
    head = data[at:at + _MAX_HEADER]
    if len(head) < 6 or head[0] != 0xFF or head[1] & 0xFE != 0xF8:
        return None
    size_code, rate_code = head[2] >> 4, head[2] & 0x0F
    layout, depth = head[3] >> 4, (head[3] >> 1) & 0x07
    if rate_code == 15 or layout > 10 or depth == 3 or head[3] & 1:
        return None
    if (layout + 1 if layout < 8 else 2) != channels:
        return None
    number = _utf8_number(head, 4)
    if number is None:
        return None
    end = 4 + number[1]
    if end + 4 > len(head):
        return None
    size = _block_size(size_code, head, end)
    if size is None:
        return None
    end += size[1] + (1 if rate_code == 12 else 2 if rate_code in (13, 14) else 0)
    if end >= len(head) or crc8(head[:end]) != head[end]:
        return None
    return bool(head[1] & 1), number[0], size[0]


def read_metadata(file: BinaryIO) -> FlacIndex:
    """The format from STREAMINFO, and where the first frame starts; the file is left there."""
    if file.read(4) != b"fLaC":
        raise FlacIndexError("not a FLAC file (no fLaC marker)")
    offset, info = 4, None
    while True:
        head = file.read(4)
        if len(head) < 4:
            raise FlacIndexError("the FLAC metadata ends early")
        last, kind, length = head[0] & 0x80, head[0] & 0x7F, int.from_bytes(head[1:], "big")
        body = file.read(length)
        offset += 4 + length
        if kind == 0:
            info = body
        if last:
            break
    if info is None or len(info) < 18:
        raise FlacIndexError("the FLAC file has no STREAMINFO")
    packed = int.from_bytes(info[10:18], "big")
    return FlacIndex(sample_rate=packed >> 44, channels=((packed >> 41) & 0x7) + 1,
                     bits=((packed >> 36) & 0x1F) + 1, total_samples=packed & ((1 << 36) - 1),
                     header_bytes=offset)


def build_index(file: BinaryIO, interval_s: float = INTERVAL_S) -> FlacIndex:
    """The seek index of the FLAC `file` (open for binary reading, at its start)."""
    index = read_metadata(file)
    step = max(1, round(index.sample_rate * interval_s))
    expected_frame, expected_sample, next_kept = 0, 0, 0
    offset, carry = index.header_bytes, b""
    while True:
        chunk = file.read(CHUNK)
        data = carry + chunk
        base = offset - len(carry)
        # Headers that begin here; the last bytes wait for the next chunk unless it is the end.
        limit = len(data) - _MAX_HEADER if chunk else len(data)
        marks = np.flatnonzero((np.frombuffer(data, np.uint8)[:-1] == 0xFF)
                               & (np.frombuffer(data, np.uint8)[1:] & 0xFE == 0xF8))
        for at in marks[marks < limit].tolist():
            header = frame_header(data, at, index.channels)
            if header is None:
                continue
            variable, number, size = header
            if number != (expected_sample if variable else expected_frame):
                continue  # a false sync in the audio data
            if expected_sample >= next_kept:
                index.frames.append([expected_sample, base + at])
                next_kept = expected_sample + step
            expected_frame, expected_sample = expected_frame + 1, expected_sample + size
        if not chunk:
            break
        keep = max(0, limit)
        carry, offset = data[keep:], offset + len(chunk)
    index.bytes = offset
    if index.total_samples and expected_sample != index.total_samples:
        raise FlacIndexError(f"the frames found hold {expected_sample} samples, STREAMINFO "
                             f"says {index.total_samples}")
    if not index.total_samples:
        index.total_samples = expected_sample
    return index


__all__ = ["FlacIndex", "FlacIndexError", "build_index", "crc8", "frame_header",
           "read_metadata"]
