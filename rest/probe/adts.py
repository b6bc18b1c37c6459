"""AAC in ADTS frames (.aac files): each frame header states its length and sample rate, so
the whole stream is walked, as for MP3, to count the audio the decoder would play."""

from __future__ import annotations

import math
import re

from rest.probe.reader import MAX_PIECES, AudioInfo, Buffer, NotAudio

_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000,
          7350)
_TAGS = (b"TAG", b"APE", b"ID3", b"LYR")
_SYNC = re.compile(rb"\xff[\xf0\xf1\xf8\xf9]")  # the sync word and layer 0 of a frame header


def _frame(data: Buffer, pos: int) -> tuple[int, int, int, int] | None:
    """(frame length, samples, sample rate, channels) of an ADTS frame at `pos`, or None."""
    header = data[pos:pos + 7]
    if len(header) < 7 or header[0] != 0xFF or header[1] & 0xF6 != 0xF0:
        return None  # no sync word, or a layer other than 0 (then it is MPEG audio)
    rate_index = (header[2] >> 2) & 0xF
    length = ((header[3] & 3) << 11) | (header[4] << 3) | (header[5] >> 5)
    if rate_index >= len(_RATES) or length < 7:
        return None
    channels = ((header[2] & 1) << 2) | (header[3] >> 6)
    blocks = (header[6] & 3) + 1
    return length, 1024 * blocks, _RATES[rate_index], channels


def starts_here(data: Buffer, pos: int) -> bool:
    """Whether an ADTS frame starts at `pos` and another one right after it."""
    frame = _frame(data, pos)
    return frame is not None and (pos + frame[0] >= len(data)
                                  or _frame(data, pos + frame[0]) is not None)


def _frames_after(data: Buffer, pos: int) -> bool:
    """Whether ADTS frames resume after a tag: a decoder would play them, so they count.
    Past MAX_PIECES places that start like a frame the answer is yes: the stream is then
    refused as broken (cover art holds a few such byte pairs at most)."""
    for number, found in enumerate(_SYNC.finditer(data, pos + 1)):
        if number == MAX_PIECES or starts_here(data, found.start()):
            return True
    return False


def probe(data: Buffer, start: int, stop_after_s: float = math.inf) -> AudioInfo:
    """Walk every frame from `start`; only trailing tags may follow the last one."""
    pos, frames, duration = start, 0, 0.0
    rate = channels = 0
    while pos < len(data) and duration <= stop_after_s:
        frame = _frame(data, pos)
        if frame is None:
            if data[pos:pos + 3] in _TAGS and not _frames_after(data, pos):
                break
            raise NotAudio(f"the AAC stream is broken after {frames} frames, at byte {pos}")
        length, samples, rate, channels = frame
        frames += 1
        duration += samples / rate
        pos += length
    return AudioInfo("aac", duration, rate, channels)
