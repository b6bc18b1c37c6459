"""RIFF WAVE: the `fmt ` chunk says how samples are laid out, the `data` chunk how many."""

from __future__ import annotations

from rest.probe.reader import MAX_PIECES, AudioInfo, Buffer, NotAudio, too_many, u16le, u32le

# Format tags the decoder reads: integer PCM, IEEE float, A-law, mu-law, and the extensible
# header, whose sub-format is one of these.
_TAGS = {1: "PCM", 3: "float", 6: "A-law", 7: "mu-law", 0xFFFE: "extensible"}
_UNSTATED = (0, 0xFFFFFFFF)  # data sizes that streaming writers leave for "to the end"


def _fmt(data: Buffer, pos: int, size: int) -> tuple[int, int, int]:
    """(channels, sample rate, bytes per frame) from a `fmt ` chunk's payload at `pos`."""
    if size < 16:
        raise NotAudio("the WAV fmt chunk is too short")
    tag, channels, rate = u16le(data, pos), u16le(data, pos + 2), u32le(data, pos + 4)
    block_align, bits = u16le(data, pos + 12), u16le(data, pos + 14)
    if tag == 0xFFFE and size >= 40:
        tag = u16le(data, pos + 24)  # the first two bytes of the sub-format GUID
    if tag not in _TAGS or tag == 0xFFFE:
        raise NotAudio(f"the WAV holds format tag {tag:#06x}, which is not PCM, float, "
                       "A-law or mu-law; convert it to PCM")
    if not 1 <= channels <= 32 or not 1000 <= rate <= 768_000 or bits not in (8, 16, 24, 32, 64):
        raise NotAudio(f"the WAV header states {channels} channels of {bits}-bit samples at "
                       f"{rate} Hz, which no decoder plays")
    if block_align != channels * bits // 8:
        raise NotAudio("the WAV header's block size disagrees with its channels and bits")
    return channels, rate, block_align


def probe(data: Buffer) -> AudioInfo:
    """Walk the RIFF chunks up to `data`; the length is what the decoder would read of it."""
    pos = 12
    layout = None
    for _ in range(MAX_PIECES):
        if pos + 8 > len(data):
            break
        name, size = data[pos:pos + 4], u32le(data, pos + 4)
        if name == b"fmt ":
            layout = _fmt(data, pos + 8, size)
        elif name == b"data":
            if layout is None:
                raise NotAudio("the WAV has its data chunk before its fmt chunk")
            channels, rate, frame_bytes = layout
            available = len(data) - pos - 8
            stated = available if size in _UNSTATED else min(size, available)
            frames = stated // frame_bytes
            return AudioInfo("wav", frames / rate, rate, channels)
        pos += 8 + size + (size & 1)  # chunks are padded to even sizes
    else:
        raise too_many("RIFF chunks before its audio")
    raise NotAudio("the WAV has no data chunk" if layout else "the WAV has no fmt chunk")
