"""Tell which audio format some bytes hold, and how long they play, from headers alone.

Each format has its own small module; `probe` picks one by the bytes' content (never by a file
name) and returns what the gateway checks before it stores anything. `data` is any buffer that
slices to bytes: the request body's bytes, or an mmap of an upload spooled to disk, so that a
large upload is read from the page cache rather than copied.
"""

from __future__ import annotations

import math

from common.storage import UPLOAD_TYPES
from rest.probe import adts, flac, mp3, mp4, ogg, wav
from rest.probe.reader import AudioInfo, Buffer, NotAudio, skip_id3v2

__all__ = ["AudioInfo", "NotAudio", "probe", "FORMATS", "DECODED"]

# What the gateway accepts, as the names a client reads in errors and docs.
FORMATS = "MP3, WAV, FLAC, Ogg Vorbis or Opus, M4A (AAC or ALAC) or AAC in ADTS (.aac)"
# The formats (upload extensions) the worker's decoder reads, each recognised here: the one
# list of them is the store's, with their content types.
DECODED = tuple(UPLOAD_TYPES)


def probe(data: Buffer, stop_after_s: float = math.inf) -> AudioInfo:
    """The format and length of an audio file; raises NotAudio saying why it is not one.

    Formats whose frames are walked (MP3, ADTS) stop counting past `stop_after_s`: the file is
    too long by then, whatever follows."""
    if len(data) < 12:
        raise NotAudio(f"{len(data)} bytes are too few to hold any audio")
    if data[0:4] == b"RIFF" and data[8:12] == b"WAVE":
        return wav.probe(data)
    if data[0:4] == b"OggS":
        return ogg.probe(data)
    if data[4:8] == b"ftyp":
        return mp4.probe(data)
    start = skip_id3v2(data, 0)
    if data[start:start + 4] == b"fLaC":
        return flac.probe(data, start)
    if adts.starts_here(data, start):
        return adts.probe(data, start, stop_after_s)
    try:
        info = mp3.probe(data, stop_after_s)
    except mp3.NotAnMp3 as error:
        raise NotAudio(f"it is not {FORMATS} ({error})") from None
    return AudioInfo("mp3", info.duration_s, info.sample_rate)
