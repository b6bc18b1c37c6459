"""One track from lossless stems: the Demucs CLI's clip rescaling and PCM arithmetic, then
WAV or FLAC (libsndfile) or MP3 (LAME, as the CLI encodes).

A track is made a block of frames at a time, in two passes over the stems (the clip rescaling
needs the whole track's peak first), so its memory does not grow with the song. These
functions run in the render pool's processes: this module never imports torch.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import BinaryIO

import lameenc
import numpy as np
import soundfile

from common import flac

BITS = {16: ("PCM_16", "<i2"), 24: ("PCM_24", "<i4")}
CONTAINERS = {"wav": "WAV", "flac": "FLAC"}
BLOCK = 2**16  # frames read, summed and encoded at a time: 512 KiB of float32 stereo
Source = str | BinaryIO  # a lossless stem: a path or a seekable file object


def clip_scale(peak: np.float32) -> np.float32:
    """The divisor of a track whose largest magnitude is `peak`: the Demucs CLI's
    `--clip-mode rescale`, in float32 as torch computes `1.01 * wav.abs().max()`."""
    return max(np.float32(1.01) * np.float32(peak), np.float32(1))


def quantize(wav: np.ndarray, scale: np.float32, bits: int = 16) -> np.ndarray:
    """Interleaved `[samples, channels]` integer PCM of a `[channels, samples]` float block.

    The Demucs CLI's arithmetic (rescale, clamp, times 2**(bits-1) - 1, truncate), in one
    scratch buffer; 24-bit samples are int32 holding the 24-bit value.
    """
    scratch = (wav / scale).astype(np.float32, copy=False)
    np.clip(scratch, -1, 1, out=scratch)
    np.multiply(scratch, 2 ** (bits - 1) - 1, out=scratch)
    pcm = np.empty(scratch.shape[::-1], dtype=BITS[bits][1])
    pcm[...] = scratch.T  # float to int casts truncate toward zero, as astype does
    return pcm


def to_pcm(wav: np.ndarray, bits: int = 16) -> np.ndarray:
    """A whole `[channels, samples]` float track as the CLI's interleaved integer PCM."""
    return quantize(wav, clip_scale(np.abs(wav).max(initial=np.float32(0))), bits)


@contextmanager
def _mp3_writer(out: BinaryIO, samplerate: int, channels: int,
                bitrate: int) -> Iterator[Callable[[np.ndarray], object]]:
    """`write(int16 pcm)` encoding into `out` as the Demucs CLI does (LAME -q 2)."""
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(bitrate)
    encoder.set_in_sample_rate(samplerate)
    encoder.set_channels(channels)
    encoder.set_quality(2)
    encoder.silence()
    # LAME's bitstream does not depend on how its input is cut into calls.
    yield lambda pcm: out.write(encoder.encode(pcm.tobytes()))
    out.write(encoder.flush())


@contextmanager
def _pcm_writer(out: BinaryIO, samplerate: int, channels: int, fmt: str,
                bits: int) -> Iterator[Callable[[np.ndarray], object]]:
    """`write(pcm)` into a WAV or FLAC file (libsndfile writes its header on closing)."""
    with soundfile.SoundFile(out, "w", samplerate, channels, BITS[bits][0],
                             format=CONTAINERS[fmt]) as sound:
        # libsndfile takes 24-bit samples from the top bits of an int32.
        yield lambda pcm: sound.write(pcm << 8 if bits == 24 else pcm)


def encode_mp3(wav: np.ndarray, samplerate: int, bitrate: int) -> bytes:
    """Encode a whole `[channels, samples]` float track as the Demucs CLI does."""
    out = io.BytesIO()
    with _mp3_writer(out, samplerate, wav.shape[0], bitrate) as write:
        write(to_pcm(wav))
    return out.getvalue()


def _summed(stems: list[soundfile.SoundFile], block: int) -> Iterator[np.ndarray]:
    """`[channels, frames]` float32 blocks of the sum of the stems at their true level, from
    the start; added in the stems' order, exactly as whole arrays would be."""
    for stem in stems:
        stem.seek(0)
    while True:
        total = flac.read_block(stems[0], block)
        for stem in stems[1:]:
            np.add(total, flac.read_block(stem, block), out=total)
        if not total.shape[1]:
            return
        yield total


def render_to(sources: Sequence[Source], fmt: str, quality: int, out: BinaryIO,
              block: int = BLOCK) -> None:
    """Write into `out` the track that is the sum of the lossless stems `sources`, in `fmt`
    at `quality` (mp3: kbps; wav, flac: bits), `block` frames at a time.

    One source is a stem's own track; several make a `no_<stem>` track, summed before the
    clip rescaling exactly as the Demucs CLI's `--two-stems` does.
    """
    with ExitStack() as files:
        stems = [files.enter_context(soundfile.SoundFile(source)) for source in sources]
        shapes = {(stem.samplerate, stem.frames, stem.channels) for stem in stems}
        if len(shapes) != 1:
            raise ValueError("the stems of one song differ in rate or length")
        rate, _, channels = shapes.pop()
        peak = max((np.abs(wav).max() for wav in _summed(stems, block)),
                   default=np.float32(0))
        scale, bits = clip_scale(peak), 16 if fmt == "mp3" else quality
        with open_writer(out, rate, channels, fmt, quality) as write:
            for wav in _summed(stems, block):
                write(quantize(wav, scale, bits))


def open_writer(out: BinaryIO, samplerate: int, channels: int, fmt: str,
                quality: int) -> AbstractContextManager[Callable[[np.ndarray], object]]:
    """`write(pcm)` into `out` in `fmt` at `quality` (mp3: kbps of int16 pcm; wav, flac: bits,
    pcm as `quantize` makes it)."""
    if fmt == "mp3":
        return _mp3_writer(out, samplerate, channels, quality)
    return _pcm_writer(out, samplerate, channels, fmt, quality)


def render_file(sources: list[str], fmt: str, quality: int, path: str) -> None:
    """`render_to` from lossless stem files into the file `path`."""
    with open(path, "wb") as out:
        render_to(sources, fmt, quality, out)
