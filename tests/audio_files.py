"""Real audio files of every format the gateway accepts, encoded by real encoders.

WAV, FLAC and Ogg Vorbis by libsndfile (soundfile), AAC (ADTS and M4A) by FFmpeg's encoder
(PyAV), MP3 by the worker's LAME encoder; all of the same synthetic song.
"""

from __future__ import annotations

import io

import av
import numpy as np
import soundfile

from scripts.make_samples import song_mp3, synthesize

FORMATS = ("mp3", "wav", "flac", "ogg", "aac", "m4a")
_SNDFILE = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS")}
_FFMPEG = {"aac": ("adts", "aac"), "m4a": ("ipod", "aac")}


def alac_m4a(seconds: float = 1, rate: int = 44100) -> bytes:
    """Lossless ALAC in an M4A, which the service recognises and refuses."""
    return _ffmpeg(synthesize(seconds, rate).astype(np.float32), rate, "ipod", "alac", "s16p")


def _ffmpeg(audio: np.ndarray, rate: int, container: str, codec: str,
            sample_format: str = "fltp") -> bytes:
    buffer = io.BytesIO()
    layout = "stereo" if audio.shape[0] == 2 else "mono"
    with av.open(buffer, "w", format=container) as output:
        stream = output.add_stream(codec, rate=rate, layout=layout)
        samples = audio if sample_format == "fltp" else (audio * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format=sample_format,
                                           layout=layout)
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            output.mux(packet)
    return buffer.getvalue()


def audio_file(fmt: str, seconds: float, seed: int = 0, rate: int = 44100,
               channels: int = 2, subtype: str = "") -> bytes:
    """`seconds` of the synthetic song as a file of format `fmt` (one of FORMATS)."""
    if fmt == "mp3":
        return song_mp3(seconds, seed=seed, samplerate=rate, channels=channels)
    audio = synthesize(seconds, rate, seed)[:channels].astype(np.float32)
    if fmt in _FFMPEG:
        return _ffmpeg(audio, rate, *_FFMPEG[fmt])
    container, default_subtype = _SNDFILE[fmt]
    buffer = io.BytesIO()
    soundfile.write(buffer, audio.T, rate, format=container, subtype=subtype or default_subtype)
    return buffer.getvalue()
