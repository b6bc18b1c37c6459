"""One track from lossless stems: the Demucs CLI's clip rescaling and PCM arithmetic, then
WAV or FLAC (libsndfile) or MP3 (LAME, as the CLI encodes).

These functions run in the render pool's processes: this module never imports torch.
"""

from __future__ import annotations

import io

import lameenc
import numpy as np
import soundfile

from common.storage import LOSSLESS_HEADROOM

BITS = {16: ("PCM_16", "<i2"), 24: ("PCM_24", "<i4")}
CONTAINERS = {"wav": "WAV", "flac": "FLAC"}


def write_lossless(wav: np.ndarray, samplerate: int) -> bytes:
    """A `[channels, samples]` float stem as the separation worker stores it: FLAC 24-bit,
    divided by LOSSLESS_HEADROOM (stems may exceed full scale before the CLI's rescaling)."""
    out = io.BytesIO()
    scaled = np.clip(wav.T / np.float32(LOSSLESS_HEADROOM), -1, 1)
    soundfile.write(out, scaled, samplerate, "PCM_24", format="FLAC")
    return out.getvalue()


def read_lossless(data: bytes) -> tuple[np.ndarray, int]:
    """A lossless stem as `[channels, samples]` float32 at its true level, and its rate."""
    wav, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return np.ascontiguousarray(wav.T) * np.float32(LOSSLESS_HEADROOM), rate


def prevent_clip(wav: np.ndarray) -> np.ndarray:
    """Scale down a track that would clip, as the Demucs CLI does (`--clip-mode rescale`)."""
    # float32 throughout, as torch computes `1.01 * wav.abs().max()`.
    peak = np.float32(1.01) * np.abs(wav).max(initial=np.float32(0))
    return wav / max(peak, np.float32(1))


def to_pcm(wav: np.ndarray, bits: int = 16) -> np.ndarray:
    """Interleaved `[samples, channels]` integer PCM of a `[channels, samples]` float track.

    The Demucs CLI's arithmetic (rescale, clamp, times 2**(bits-1) - 1, truncate), in one
    scratch buffer; 24-bit samples are int32 holding the 24-bit value.
    """
    scratch = prevent_clip(wav).astype(np.float32, copy=False)
    np.clip(scratch, -1, 1, out=scratch)
    np.multiply(scratch, 2 ** (bits - 1) - 1, out=scratch)
    pcm = np.empty(scratch.shape[::-1], dtype=BITS[bits][1])
    pcm[...] = scratch.T  # float to int casts truncate toward zero, as astype does
    return pcm


def encode_pcm(pcm: np.ndarray, samplerate: int, fmt: str, quality: int) -> bytes:
    """Encode interleaved PCM: `fmt` mp3 (`quality` = kbps; int16 PCM) or wav/flac (bits)."""
    if fmt == "mp3":
        return mp3_from_pcm(pcm, samplerate, quality)
    # libsndfile takes 24-bit samples from the top bits of an int32.
    frames = pcm << 8 if quality == 24 else pcm
    out = io.BytesIO()
    soundfile.write(out, frames, samplerate, BITS[quality][0], format=CONTAINERS[fmt])
    return out.getvalue()


def encode_mp3(wav: np.ndarray, samplerate: int, bitrate: int) -> bytes:
    """Encode a `[channels, samples]` float track as the Demucs CLI does."""
    return mp3_from_pcm(to_pcm(wav), samplerate, bitrate)


def mp3_from_pcm(pcm: np.ndarray, samplerate: int, bitrate: int) -> bytes:
    """Encode interleaved int16 `[samples, channels]` PCM as the Demucs CLI does (LAME -q 2)."""
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(bitrate)
    encoder.set_in_sample_rate(samplerate)
    encoder.set_channels(pcm.shape[1])
    encoder.set_quality(2)
    encoder.silence()
    return bytes(encoder.encode(pcm.tobytes()) + encoder.flush())


def render_track(sources: list[bytes], fmt: str, quality: int) -> bytes:
    """The track that is the sum of the lossless stems `sources`, in `fmt` at `quality`.

    One source is a stem's own track; several make a `no_<stem>` track, summed before the
    clip rescaling exactly as the Demucs CLI's `--two-stems` does.
    """
    total, samplerate = read_lossless(sources[0])
    for data in sources[1:]:
        wav, rate = read_lossless(data)
        if rate != samplerate or wav.shape != total.shape:
            raise ValueError("the stems of one song differ in rate or length")
        total += wav
    bits = 16 if fmt == "mp3" else quality
    return encode_pcm(to_pcm(total, bits), samplerate, fmt, quality)
