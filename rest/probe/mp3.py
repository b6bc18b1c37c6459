"""Tell whether bytes are an MP3 stream, and how long it plays, by walking its frame headers.

Reading headers only (no decoding) is cheap enough for the request path, and catches files
that merely start like an MP3, as well as tiny low-bitrate files that would play for hours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rest.probe.reader import Buffer, skip_id3v2

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
_JUNK_LIMIT = 64 * 1024  # bytes outside frames and tags tolerated in a whole file
_TAG_LIMIT = 1024 * 1024  # largest tail of tags (cover art) walked without counting it as junk


class NotAnMp3(ValueError):
    """The bytes are not a playable MP3 stream; the message says why."""


@dataclass(frozen=True)
class Frame:
    """One MPEG audio frame's header: its length in bytes, its samples and their rate."""

    length: int
    samples: int
    sample_rate: int


@dataclass(frozen=True)
class Mp3Info:
    """What the probe counted: frames, the playing time they make, and the sample rate."""

    frames: int
    duration_s: float
    sample_rate: int


def parse_header(data: Buffer, pos: int) -> Frame | None:
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


def _trailing_tags_start(data: Buffer, start: int) -> int:
    """Where the tags at the end of the file (Lyrics3, APE, ID3v1) begin, within _TAG_LIMIT."""
    end = len(data)
    if data[end - 128:end - 125] == b"TAG":
        end -= 128
    if data[end - 9:end] == b"LYRICS200" and data[end - 15:end - 9].isdigit():
        end -= int(data[end - 15:end - 9]) + 15
    if data[end - 32:end - 24] == b"APETAGEX":
        size = int.from_bytes(data[end - 20:end - 16], "little")
        has_header = data[end - 9] & 0x80
        end -= size + (32 if has_header else 0)
    return max(end, start, len(data) - _TAG_LIMIT)


def _confirmed(data: Buffer, pos: int) -> Frame | None:
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


def probe(data: Buffer, stop_after_s: float = math.inf) -> Mp3Info:
    """Count every frame the decoder would play; raise NotAnMp3 unless the bytes are MPEG audio.

    Like the decoder, the walk resynchronises after anything that is not a frame (a tag in the
    middle, junk) and goes on to the end, so no audio hides behind a marker. The first frame
    must be followed by another; after it any valid header counts, as the decoder plays it.
    Bytes outside frames, other than the tags at either end, may not exceed _JUNK_LIMIT nor a
    tenth of the file. The walk stops once `stop_after_s` of audio is counted.
    """
    start = skip_id3v2(data, 0)
    if start >= len(data):
        raise NotAnMp3("the file holds an ID3 tag but no audio frames")
    tags_start = _trailing_tags_start(data, start)
    junk_limit = min(_JUNK_LIMIT, len(data) // 10)
    frames = junk = 0
    duration = 0.0
    sample_rate = 0
    pos = start
    while pos < len(data) and duration <= stop_after_s:
        frame = parse_header(data, pos) if frames else _confirmed(data, pos)
        if frame is not None:
            frames += 1
            duration += frame.samples / frame.sample_rate
            sample_rate = frame.sample_rate
            pos += frame.length
            continue
        following = data.find(b"\xff", pos + 1)
        following = len(data) if following < 0 else following
        junk += max(0, min(following, tags_start) - pos)
        if junk > junk_limit:
            break
        pos = following
    if frames == 0:
        raise NotAnMp3("no MPEG audio frame header found: the data is not an MP3 file")
    if frames < 2 or junk > junk_limit:
        raise NotAnMp3(f"{junk} bytes between {frames} MPEG audio frame(s) are not audio: "
                       "the MP3 stream is corrupt or truncated")
    return Mp3Info(frames=frames, duration_s=duration, sample_rate=sample_rate)
