"""M4A (MPEG-4 audio): the sound track's media header states its length, in its own timescale.

Only boxes are read (ftyp, moov/trak/mdia/{mdhd,hdlr,minf/stbl/stsd}, mdat), never the audio.
"""

from __future__ import annotations

from collections.abc import Iterator

from rest.probe.common import AudioInfo, Buffer, NotAudio, u32be, u64be

_CODECS = {b"mp4a": "AAC", b"alac": "ALAC"}


def _boxes(data: Buffer, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of each box between `start` and `end`."""
    pos = start
    while pos + 8 <= end:
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


def _child(data: Buffer, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    for found, body, stop in _boxes(data, start, end):
        if found == kind:
            return body, stop
    return None


def _media_header(data: Buffer, body: int) -> tuple[int, int]:
    """(timescale, duration) of an mdhd box whose payload starts at `body`."""
    if data[body] == 1:  # version 1: 64-bit times
        return u32be(data, body + 20), u64be(data, body + 24)
    return u32be(data, body + 12), u32be(data, body + 16)


def _sample_table(data: Buffer, mdia: tuple[int, int]) -> tuple[int, int]:
    """The sample table (stbl box) of a track's media box."""
    box: tuple[int, int] | None = mdia
    for kind in (b"minf", b"stbl"):
        box = box and _child(data, *box, kind)
    if not box:
        raise NotAudio("the M4A sound track lacks its sample table")
    return box


def _sample_entry(data: Buffer, stbl: tuple[int, int]) -> tuple[bytes, int, int]:
    """(codec, position, end) of the first sample description of a sample table."""
    stsd = _child(data, *stbl, b"stsd")
    if not stsd:
        raise NotAudio("the M4A sound track lacks its sample description")
    entry = stsd[0] + 8  # after version, flags and the entry count
    return bytes(data[entry + 4:entry + 8]), entry, entry + u32be(data, entry)


def _sound_track(data: Buffer) -> tuple[int, int]:
    """The media box (mdia) of the movie's first sound track, once the file is seen to hold
    audio data too."""
    top = {kind: (body, end) for kind, body, end in _boxes(data, 0, len(data))}
    if b"moov" not in top:
        raise NotAudio("the MP4 file has no movie header (moov box): it is truncated")
    if b"mdat" not in top:
        raise NotAudio("the MP4 file holds no media data (mdat box)")
    for kind, body, end in _boxes(data, *top[b"moov"]):
        mdia = _child(data, body, end, b"mdia") if kind == b"trak" else None
        hdlr = mdia and _child(data, *mdia, b"hdlr")
        if mdia and hdlr and data[hdlr[0] + 8:hdlr[0] + 12] == b"soun":
            return mdia
    raise NotAudio("the MP4 file holds no sound track")


def probe(data: Buffer) -> AudioInfo:
    """The codec and length of the first sound track."""
    mdia = _sound_track(data)
    mdhd = _child(data, *mdia, b"mdhd")
    if not mdhd:
        raise NotAudio("the M4A sound track lacks its media header")
    codec, entry, _ = _sample_entry(data, _sample_table(data, mdia))
    if codec not in _CODECS:
        raise NotAudio(f"the M4A sound track holds {codec!r}, not AAC or ALAC")
    channels, rate = u32be(data, entry + 24) >> 16, u32be(data, entry + 32) >> 16
    timescale, duration = _media_header(data, mdhd[0])
    if timescale == 0 or duration == 0:
        raise NotAudio("the M4A file does not state its length (a fragmented MP4?); "
                       "send a plain M4A")
    return AudioInfo("m4a", duration / timescale, rate, channels)
