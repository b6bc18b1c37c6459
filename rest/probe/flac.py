"""Native FLAC: the STREAMINFO block states the sample rate and the total number of samples."""

from __future__ import annotations

from rest.probe.reader import MAX_PIECES, AudioInfo, Buffer, NotAudio, too_many, u64be

_STREAMINFO, _LAST = 0, 0x80


def probe(data: Buffer, start: int = 0) -> AudioInfo:
    """Read STREAMINFO, walk the other metadata blocks, and check that a frame follows them."""
    pos = start + 4  # after "fLaC"
    if len(data) < pos + 4 + 34 or data[pos] & 0x7F != _STREAMINFO:
        raise NotAudio("the FLAC stream does not begin with its STREAMINFO block")
    info = u64be(data, pos + 4 + 10)  # rate (20 bits), channels-1 (3), bits-1 (5), samples (36)
    rate, channels, total = info >> 44, ((info >> 41) & 7) + 1, info & (2**36 - 1)
    if rate == 0:
        raise NotAudio("the FLAC STREAMINFO states a sample rate of 0")
    if total == 0:
        raise NotAudio("the FLAC stream does not state its length (0 samples in STREAMINFO); "
                       "re-encode it with a FLAC encoder that writes it")
    for _ in range(MAX_PIECES):
        header = data[pos]
        pos += 4 + int.from_bytes(data[pos + 1:pos + 4], "big")
        if header & _LAST:
            break
        if pos + 4 > len(data):
            raise NotAudio("the FLAC metadata runs past the end of the file")
    else:
        raise too_many("FLAC metadata blocks")
    if data[pos:pos + 2] not in (b"\xff\xf8", b"\xff\xf9"):
        raise NotAudio("no FLAC audio frame follows the metadata: the file is truncated "
                       "or not FLAC")
    return AudioInfo("flac", total / rate, rate, channels)
