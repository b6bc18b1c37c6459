"""AAC from an M4A, rewritten as ADTS frames, which the worker's decoder reads (it reads no MP4
container). Nothing is decoded: each AAC frame of the sample table is copied behind a 7-byte
ADTS header built from the track's AudioSpecificConfig."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from rest.probe import mp4
from rest.probe.common import Buffer, NotAudio, u32be, u64be

_MAX_FRAME = 8191 - 7  # the 13-bit frame length of an ADTS header covers the header too


def _descriptor(data: Buffer, pos: int) -> tuple[int, int, int]:
    """(tag, payload position, payload length) of an MPEG-4 descriptor at `pos`."""
    tag, length = data[pos], 0
    pos += 1
    for _ in range(4):  # up to four bytes of 7 bits, the high bit saying "more"
        byte = data[pos]
        pos += 1
        length = (length << 7) | (byte & 0x7F)
        if not byte & 0x80:
            break
    return tag, pos, length


def _audio_config(data: Buffer, entry: int, end: int) -> tuple[int, int, int]:
    """(object type, sampling frequency index, channel configuration) of an mp4a entry."""
    esds = mp4.child(data, entry + 36, end, b"esds")  # the boxes after the 36-byte entry
    if not esds:
        raise NotAudio("the M4A's AAC track has no decoder configuration (esds box)")
    tag, pos, _ = _descriptor(data, esds[0] + 4)  # ES_Descriptor, after version and flags
    if tag != 3:
        raise NotAudio("the M4A's decoder configuration is malformed")
    flags = data[pos + 2]
    pos += 3 + (2 if flags & 0x80 else 0) + (2 if flags & 0x20 else 0)
    if flags & 0x40:
        pos += 1 + data[pos]  # a URL
    tag, pos, _ = _descriptor(data, pos)  # DecoderConfigDescriptor
    tag, pos, length = _descriptor(data, pos + 13) if tag == 4 else (0, 0, 0)
    if tag != 5 or length < 2:
        raise NotAudio("the M4A's AAC track lacks its AudioSpecificConfig")
    config = int.from_bytes(data[pos:pos + 2], "big")
    object_type, frequency, channels = config >> 11, (config >> 7) & 0xF, (config >> 3) & 0xF
    if object_type not in (1, 2, 3, 4) or frequency > 12 or not 1 <= channels <= 7:
        raise NotAudio(f"the M4A holds AAC of object type {object_type} (channels "
                       f"{channels}); only AAC-LC-like profiles with a standard rate and "
                       "channel layout are read")
    return object_type, frequency, channels


def _samples(data: Buffer, stbl: tuple[int, int]) -> Iterator[tuple[int, int]]:
    """(position, size) of every sample, in order, from stsz, stsc and stco/co64."""
    stsz, stsc = mp4.child(data, *stbl, b"stsz"), mp4.child(data, *stbl, b"stsc")
    stco, co64 = mp4.child(data, *stbl, b"stco"), mp4.child(data, *stbl, b"co64")
    if not (stsz and stsc and (stco or co64)):
        raise NotAudio("the M4A sound track's sample table is incomplete")
    fixed, count = u32be(data, stsz[0] + 4), u32be(data, stsz[0] + 8)
    sizes = (fixed if fixed else u32be(data, stsz[0] + 12 + 4 * n) for n in range(count))
    table, width = (stco, 4) if stco else (co64, 8)
    chunks = u32be(data, table[0] + 4)
    runs = [(u32be(data, stsc[0] + 8 + 12 * n), u32be(data, stsc[0] + 12 + 12 * n))
            for n in range(u32be(data, stsc[0] + 4))]
    left = count
    for index in range(chunks):
        at = table[0] + 8 + width * index
        pos = u64be(data, at) if width == 8 else u32be(data, at)
        per_chunk = next((n for first, n in reversed(runs) if first <= index + 1), 0)
        for _ in range(min(per_chunk, left)):
            size = next(sizes)
            yield pos, size
            pos += size
        left -= min(per_chunk, left)


def to_adts(data: Buffer, out: BinaryIO) -> int:
    """Write the M4A's AAC track to `out` as ADTS frames; returns the bytes written."""
    stbl = mp4.sample_table(data, mp4.sound_track(data))
    codec, entry, end = mp4.sample_entry(data, stbl)
    if codec != b"mp4a":
        raise NotAudio(f"the M4A holds {codec.decode(errors='replace')}, which this service's "
                       "decoder does not read; send FLAC or WAV")
    object_type, frequency, channels = _audio_config(data, entry, end)
    head = bytes([0xFF, 0xF1, ((object_type - 1) << 6) | (frequency << 2) | (channels >> 2)])
    written = 0
    for pos, size in _samples(data, stbl):
        if size > _MAX_FRAME or pos + size > len(data):
            raise NotAudio("an AAC frame of the M4A lies outside the file or is too large")
        length = size + 7
        out.write(head + bytes([((channels & 3) << 6) | (length >> 11), (length >> 3) & 0xFF,
                                ((length & 7) << 5) | 0x1F, 0xFC]))
        out.write(data[pos:pos + size])
        written += length
    if not written:
        raise NotAudio("the M4A's sound track holds no AAC frames")
    return written
