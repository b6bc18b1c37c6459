"""Ogg Vorbis or Opus: the first page's identification header gives the rate (Opus: always
48 kHz, less the decoder's pre-skip); the granule position of the stream's last page gives the
number of samples."""

from __future__ import annotations

from rest.probe.reader import AudioInfo, Buffer, NotAudio, u16le, u32le

_TAIL = 128 * 1024  # a page is at most 65,307 bytes: the last complete one lies in here
_NO_GRANULE = 2**64 - 1


def _page(data: Buffer, pos: int) -> tuple[int, int, int]:
    """(granule position, serial number, position of the payload) of the page at `pos`."""
    if data[pos:pos + 5] != b"OggS\x00" or pos + 27 > len(data):
        raise NotAudio("the Ogg stream is corrupt: a page header is broken")
    segments = data[pos + 26]
    payload = pos + 27 + segments
    if payload > len(data):
        raise NotAudio("the Ogg stream is truncated inside a page header")
    granule = int.from_bytes(data[pos + 6:pos + 14], "little")
    return granule, u32le(data, pos + 14), payload


def _last_granule(data: Buffer, serial: int) -> int:
    """The granule position of the last page of the first logical stream that has one."""
    floor = max(0, len(data) - _TAIL)
    pos = len(data)
    while (pos := data.rfind(b"OggS", floor, pos)) >= 0:
        try:
            granule, page_serial, _ = _page(data, pos)
        except NotAudio:
            continue  # "OggS" inside a packet, or a page cut short
        if page_serial != serial:
            raise NotAudio("the Ogg file chains several streams; send a single stream")
        if granule != _NO_GRANULE:
            return granule
    raise NotAudio("the Ogg stream has no page that states its length")


def _opus(data: Buffer, head: Buffer, serial: int) -> AudioInfo:
    """Opus plays at 48 kHz; its first `pre-skip` samples are the encoder's, not the song's."""
    if len(head) < 19 or head[9] == 0:
        raise NotAudio("the Opus header is cut short or states no channels")
    played = _last_granule(data, serial) - u16le(head, 10)
    return AudioInfo("ogg", max(played, 0) / 48000, 48000, head[9])


def probe(data: Buffer) -> AudioInfo:
    """Read the Vorbis or Opus identification header, then the last page's granule position."""
    _, serial, payload = _page(data, 0)
    head = data[payload:payload + 30]
    if head[:8] == b"OpusHead":
        return _opus(data, head, serial)
    if head[:7] != b"\x01vorbis" or len(head) < 30:
        raise NotAudio("the Ogg file does not hold a Vorbis stream")
    channels, rate = head[11], u32le(head, 12)
    if channels == 0 or rate == 0:
        raise NotAudio("the Vorbis header states no channels or a sample rate of 0")
    return AudioInfo("ogg", _last_granule(data, serial) / rate, rate, channels)
