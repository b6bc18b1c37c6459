"""Real audio files of every format the gateway accepts, encoded by real encoders.

WAV, FLAC and Ogg Vorbis by libsndfile (soundfile), AAC (ADTS and M4A) and ALAC by FFmpeg's
encoders (PyAV), MP3 by the worker's LAME encoder; all of the same synthetic song.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import av
import numpy as np
import soundfile

from scripts.local.make_samples import song_mp3, synthesize

FORMATS = ("mp3", "wav", "flac", "ogg", "aac", "m4a")
_SNDFILE = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS")}
_FFMPEG = {"aac": ("adts", "aac"), "m4a": ("ipod", "aac")}


def _ffmpeg(audio: np.ndarray, rate: int, container: str, codec: str,
            options: dict[str, str]) -> bytes:
    layout = "stereo" if audio.shape[0] == 2 else "mono"
    # A file, not a buffer: FFmpeg reads it back to move the movie header before the data.
    with tempfile.NamedTemporaryFile() as handle:
        with av.open(handle.name, "w", format=container, options=options) as output:
            stream = output.add_stream(codec, rate=rate, layout=layout)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio, dtype=np.float32),
                                               format="fltp", layout=layout)
            frame.sample_rate = rate
            for packet in [*stream.encode(frame), *stream.encode(None)]:
                output.mux(packet)
        return Path(handle.name).read_bytes()


def audio_file(fmt: str, seconds: float, seed: int = 0, rate: int = 44100,
               channels: int = 2, subtype: str = "", faststart: bool = False) -> bytes:
    """`seconds` of the synthetic song as a file of format `fmt` (one of FORMATS).

    `subtype`: libsndfile's sample format, or FFmpeg's codec (`alac` in an M4A); `faststart`:
    an M4A's movie header before its media data (FFmpeg writes it after by default)."""
    if fmt == "mp3":
        return song_mp3(seconds, seed=seed, samplerate=rate, channels=channels)
    audio = synthesize(seconds, rate, seed)[:channels].astype(np.float32)
    if fmt in _FFMPEG:
        container, codec = _FFMPEG[fmt]
        options = {"movflags": "faststart"} if faststart else {}
        return _ffmpeg(audio, rate, container, subtype or codec, options)
    container, default_subtype = _SNDFILE[fmt]
    buffer = io.BytesIO()
    soundfile.write(buffer, audio.T, rate, format=container, subtype=subtype or default_subtype)
    return buffer.getvalue()
