"""One track from lossless stems: the Demucs CLI's clip rescaling and PCM arithmetic, then
WAV or FLAC (libsndfile) or MP3 (LAME, as the CLI encodes).

These functions run in the render pool's processes, so this module imports numpy, soundfile
and LAME only, never torch.
"""

from __future__ import annotations

import io

import lameenc
import numpy as np
import soundfile

# Stems may exceed full scale (the CLI rescales each track only when it writes it), so a
# lossless stem may be stored divided by a gain, written in the FLAC's comment as `gain=<g>`.
GAIN_TAG = "gain="
BITS = {16: ("PCM_16", "<i2"), 24: ("PCM_24", "<i4")}
CONTAINERS = {"wav": "WAV", "flac": "FLAC"}


def write_lossless(wav: np.ndarray, samplerate: int, gain: float = 1.0) -> bytes:
    """FLAC 24-bit of a `[channels, samples]` float stem divided by `gain` (>= its peak)."""
    out = io.BytesIO()
    with soundfile.SoundFile(out, "w", samplerate, wav.shape[0], "PCM_24", format="FLAC") as f:
        if gain != 1.0:
            f.comment = f"{GAIN_TAG}{gain!r}"
        f.write((wav / np.float32(gain)).T)
    return out.getvalue()


def read_lossless(data: bytes) -> tuple[np.ndarray, int]:
    """A lossless stem as `[channels, samples]` float32 at its true level, and its rate."""
    with soundfile.SoundFile(io.BytesIO(data)) as f:
        wav = f.read(dtype="float32", always_2d=True).T
        comment = f.comment or ""
        rate = f.samplerate
    if comment.startswith(GAIN_TAG):
        wav *= np.float32(float(comment.removeprefix(GAIN_TAG)))
    return wav, rate


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
