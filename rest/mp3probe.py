"""Tell whether bytes are an MP3 stream, and how long it plays, by walking its frame headers.

Reading headers only (no decoding) is cheap enough for the request path, and catches files
that merely start like an MP3, as well as tiny low-bitrate files that would play for hours.
"""

from __future__ import annotations

from dataclasses import dataclass

# bitrate tables in kbps, indexed [version_is_mpeg1][layer][index]
_BITRATES = {
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_SAMPLE_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_LAYERS = {3: 1, 2: 2, 1: 3}  # header bits -> layer number
_RESYNC_WINDOW = 64 * 1024  # junk tolerated before the first frame or between frames


class NotAnMp3(ValueError):
    """The bytes are not a playable MP3 stream; the message says why."""


@dataclass(frozen=True)
class Frame:
    length: int
    samples: int
    sample_rate: int


@dataclass(frozen=True)
class Mp3Info:
    frames: int
    duration_s: float
    sample_rate: int


def parse_header(data: bytes, pos: int) -> Frame | None:
    """The MPEG audio frame starting at `pos`, or None if there is no valid header there."""
    if pos + 4 > len(data) or data[pos] != 0xFF or data[pos + 1] & 0xE0 != 0xE0:
        return None
    version_bits = (data[pos + 1] >> 3) & 3
    layer = _LAYERS.get((data[pos + 1] >> 1) & 3)
    bitrate_index = data[pos + 2] >> 4
    rate_index = (data[pos + 2] >> 2) & 3
    if version_bits == 1 or layer is None or bitrate_index in (0, 15) or rate_index == 3:
        return None  # reserved values, or free format, which few decoders play
    mpeg1 = version_bits == 3
    bitrate = _BITRATES[(mpeg1, layer)][bitrate_index] * 1000
    sample_rate = _SAMPLE_RATES[version_bits][rate_index]
    padding = (data[pos + 2] >> 1) & 1
    if layer == 1:
        return Frame((12 * bitrate // sample_rate + padding) * 4, 384, sample_rate)
    samples = 1152 if layer == 2 or mpeg1 else 576
    return Frame(samples // 8 * bitrate // sample_rate + padding, samples, sample_rate)


def _skip_id3v2(data: bytes, pos: int) -> int:
    """Position after any ID3v2 tags starting at `pos`."""
    while data[pos:pos + 3] == b"ID3" and len(data) >= pos + 10:
        size = 0
        for byte in data[pos + 6:pos + 10]:
            size = (size << 7) | (byte & 0x7F)
        footer = 10 if data[pos + 5] & 0x10 else 0
        pos += 10 + size + footer
    return pos


def _confirmed(data: bytes, pos: int) -> Frame | None:
    """A frame at `pos` whose successor also starts where it should (or that ends the data)."""
    frame = parse_header(data, pos)
    if frame is None:
        return None
    following = pos + frame.length
    if following >= len(data) - 4 or parse_header(data, following) is not None:
        return frame
    if data[following:following + 3] in (b"TAG", b"APE", b"ID3", b"LYR"):
        return frame  # trailing tag
    return None


def _resync(data: bytes, pos: int) -> int | None:
    """The next position within the window where a confirmed frame starts."""
    end = min(len(data), pos + _RESYNC_WINDOW)
    while True:
        pos = data.find(b"\xff", pos, end)
        if pos < 0:
            return None
        if _confirmed(data, pos) is not None:
            return pos
        pos += 1


def probe(data: bytes) -> Mp3Info:
    """Walk every frame; raise NotAnMp3 unless most of the bytes are MPEG audio frames."""
    start = _skip_id3v2(data, 0)
    if start >= len(data):
        raise NotAnMp3("the file holds an ID3 tag but no audio frames")
    pos = _resync(data, start)
    if pos is None:
        raise NotAnMp3("no MPEG audio frame header found: the data is not an MP3 file")
    frames = audio_bytes = 0
    duration = 0.0
    sample_rate = 0
    while pos is not None and pos < len(data):
        frame = parse_header(data, pos)
        if frame is None or pos + frame.length > len(data) + frame.length // 2:
            if data[pos:pos + 3] in (b"TAG", b"APE", b"LYR"):
                break  # trailing tags end the stream
            pos = _resync(data, pos + 1)
            continue
        frames += 1
        audio_bytes += min(frame.length, len(data) - pos)
        duration += frame.samples / frame.sample_rate
        sample_rate = frame.sample_rate
        pos += frame.length
    if frames < 2 or audio_bytes < 0.5 * (len(data) - start):
        raise NotAnMp3(
            f"only {frames} MPEG audio frame(s) covering {audio_bytes} of {len(data)} bytes: "
            "the MP3 stream is corrupt or truncated")
    return Mp3Info(frames=frames, duration_s=duration, sample_rate=sample_rate)
