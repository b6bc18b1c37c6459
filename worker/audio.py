"""Decoding mp3 bytes into the waveform tensor Demucs takes."""

from __future__ import annotations

import tempfile

import numpy as np
import sphn
import torch
from demucs.audio import convert_audio

from worker.errors import DecodeFailed


def decode(mp3: bytes, samplerate: int, channels: int) -> torch.Tensor:
    """A `[channels, samples]` float tensor at the model's rate; DecodeFailed if unreadable."""
    # sphn reads from a path; the scratch file lives in the temp folder (an emptyDir in pods).
    with tempfile.NamedTemporaryFile(suffix=".mp3") as handle:
        handle.write(mp3)
        handle.flush()
        try:
            data, rate = sphn.read(handle.name)
        except (ValueError, OSError) as error:
            message = str(error).replace(f'"{handle.name}": ', "")
            raise DecodeFailed(f"the mp3 could not be decoded ({message})") from None
    if data.size == 0:
        raise DecodeFailed("the mp3 decodes to no audio at all")
    wav = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
    return convert_audio(wav, int(rate), samplerate, channels)
