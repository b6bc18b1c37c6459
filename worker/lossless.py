"""A separation job's work: the upload in, one lossless FLAC stem per source in the store."""

from __future__ import annotations

import io
import time
from collections.abc import Callable

import numpy as np
import soundfile

from common.storage import LOSSLESS_HEADROOM, NotFound, Storage, StorageError
from worker.audio import decode
from worker.errors import InputMissing, TooLong
from worker.separator import Separator

Progress = Callable[[float], None]


def flac_24(stem: np.ndarray, samplerate: int) -> bytes:
    """A `[channels, samples]` stem as 24-bit FLAC, divided by LOSSLESS_HEADROOM."""
    scaled = np.clip(stem.T / LOSSLESS_HEADROOM, -1.0, 1.0)
    out = io.BytesIO()
    soundfile.write(out, scaled, samplerate, format="FLAC", subtype="PCM_24")
    return out.getvalue()


def separate_to_store(separator: Separator, storage: Storage, song_hash: str, input_object: str,
                      model: str, *, max_seconds: float, progress: Progress) -> dict[str, float]:
    """Separate upload `input_object` and store its stems; timings in seconds.

    `progress` may raise to stop the separation; whatever the exception, no stem of this call
    stays in the store.
    """
    timings: dict[str, float] = {}
    started = time.monotonic()
    try:
        data = storage.get_input(input_object)
    except NotFound:
        raise InputMissing("the upload is no longer in the object store; submit the song "
                           "again") from None
    timings["fetch"] = time.monotonic() - started
    started = time.monotonic()
    wav = decode(data, separator.samplerate, separator.audio_channels)
    del data
    duration = wav.shape[-1] / separator.samplerate
    if duration > max_seconds:
        raise TooLong(f"the song plays for {duration:.0f} s; the limit is {max_seconds:.0f} s")
    timings["decode"] = time.monotonic() - started
    started = time.monotonic()
    stems = separator.separate(wav, progress)
    timings["separate"] = time.monotonic() - started
    started = time.monotonic()
    stored: list[str] = []
    try:
        for name, stem in stems.items():
            flac = flac_24(stem.numpy(), separator.samplerate)
            storage.put_lossless(song_hash, model, name, flac)
            stored.append(name)
    except BaseException:
        for name in stored:
            try:
                storage.remove_lossless(song_hash, model, name)
            except StorageError:
                pass  # the caller's own clean-up (delete, retry) removes it later
        raise
    timings["store"] = time.monotonic() - started
    timings["audio_seconds"] = duration
    return {key: round(value, 3) for key, value in timings.items()}
