"""M4A (MPEG-4 audio): the sound track's media header states its length, in its own timescale.

Only boxes are read (ftyp, moov/trak/mdia/{mdhd,hdlr,minf/stbl/stsd}, mdat), never the audio,
and at most MAX_PIECES of them in all.
"""

from __future__ import annotations

from collections.abc import Iterator

from rest.probe.reader import MAX_PIECES, AudioInfo, Buffer, NotAudio, too_many, u32be, u64be

_CODECS = {b"mp4a": "AAC", b"alac": "ALAC"}
_MDHD_SIZES = {0: 20, 1: 32}  # payload bytes up to the duration, by the box's version
Box = tuple[int, int]  # payload start, payload end


class _Boxes:
    """The boxes of one file, walked with one budget of MAX_PIECES boxes."""

    def __init__(self, data: Buffer):
        self.data = data
        self.left = MAX_PIECES

    def walk(self, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
        """(type, payload start, payload end) of each box between `start` and `end`."""
        data, pos = self.data, start
        while pos + 8 <= end:
            self.left -= 1
            if self.left < 0:
                raise too_many("MP4 boxes")
            size, kind, header = u32be(data, pos), bytes(data[pos + 4:pos + 8]), 8
            if size == 1:  # 64-bit size follows the type
                size, header = u64be(data, pos + 8), 16
            elif size == 0:  # to the end of the enclosing box
                size = end - pos
            if size < header or pos + size > end:
                raise NotAudio(f"the M4A box {kind!r} runs past the end of the file: it is "
                               "truncated or corrupt")
            yield kind, pos + header, pos + size
            pos += size

    def child(self, box: Box | None, kind: bytes) -> Box | None:
        """The first box of type `kind` inside `box`'s payload."""
        if box is None:
            return None
        for found, body, stop in self.walk(*box):
            if found == kind:
                return body, stop
        return None


def _media_header(data: Buffer, mdhd: Box) -> tuple[int, int]:
    """(timescale, duration) of an mdhd box; NotAudio when it is too short to state them."""
    body, end = mdhd
    needed = _MDHD_SIZES.get(data[body] if body < end else -1)
    if needed is None or end - body < needed:
        raise NotAudio("the M4A media header (mdhd box) is cut short or of an unknown "
                       "version: the file is malformed")
    if data[body] == 1:  # version 1: 64-bit times
        return u32be(data, body + 20), u64be(data, body + 24)
    return u32be(data, body + 12), u32be(data, body + 16)


def _sample_entry(boxes: _Boxes, mdia: Box) -> tuple[bytes, int, int]:
    """(codec, position, end) of the first sample description of a track's media box."""
    stbl = boxes.child(boxes.child(mdia, b"minf"), b"stbl")
    if not stbl:
        raise NotAudio("the M4A sound track lacks its sample table")
    stsd = boxes.child(stbl, b"stsd")
    if not stsd or stsd[1] - stsd[0] < 8 + 36:
        raise NotAudio("the M4A sound track lacks its sample description")
    entry = stsd[0] + 8  # after version, flags and the entry count
    data = boxes.data
    return bytes(data[entry + 4:entry + 8]), entry, entry + u32be(data, entry)


def _sound_track(boxes: _Boxes) -> Box:
    """The media box (mdia) of the movie's first sound track, once the file is seen to hold
    audio data too."""
    data = boxes.data
    top = {kind: (body, end) for kind, body, end in boxes.walk(0, len(data))}
    if b"moov" not in top:
        raise NotAudio("the MP4 file has no movie header (moov box): it is truncated")
    if b"mdat" not in top:
        raise NotAudio("the MP4 file holds no media data (mdat box)")
    for kind, body, end in boxes.walk(*top[b"moov"]):
        mdia = boxes.child((body, end), b"mdia") if kind == b"trak" else None
        hdlr = boxes.child(mdia, b"hdlr")
        if mdia and hdlr and data[hdlr[0] + 8:hdlr[0] + 12] == b"soun":
            return mdia
    raise NotAudio("the MP4 file holds no sound track")


def probe(data: Buffer) -> AudioInfo:
    """The codec and length of the first sound track."""
    boxes = _Boxes(data)
    mdia = _sound_track(boxes)
    mdhd = boxes.child(mdia, b"mdhd")
    if not mdhd:
        raise NotAudio("the M4A sound track lacks its media header")
    codec, entry, _ = _sample_entry(boxes, mdia)
    if codec not in _CODECS:
        raise NotAudio(f"the M4A sound track holds {codec!r}, not AAC or ALAC")
    channels, rate = u32be(data, entry + 24) >> 16, u32be(data, entry + 32) >> 16
    timescale, duration = _media_header(data, mdhd)
    if timescale == 0 or duration == 0:
        raise NotAudio("the M4A file does not state its length (a fragmented MP4?); "
                       "send a plain M4A")
    return AudioInfo("m4a", duration / timescale, rate, channels)
