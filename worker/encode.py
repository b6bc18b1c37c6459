"""Encoding stems to mp3 in parallel, in a pool of processes (LAME holds the GIL).

Pool processes import only this module, numpy and lameenc: no torch, so they start fast.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import lameenc
import numpy as np

from worker.cores import usable_cores
from worker.errors import EncodeFailed


def prevent_clip(wav: np.ndarray) -> np.ndarray:
    """Scale down a stem that would clip, as the Demucs CLI does (`--clip-mode rescale`)."""
    peak = float(np.abs(wav).max(initial=0.0))
    return wav / max(1.01 * peak, 1.0)


def encode_mp3(wav: np.ndarray, samplerate: int, bitrate: int) -> bytes:
    """Encode a `[channels, samples]` float array as the Demucs CLI does (LAME preset 2)."""
    pcm = (np.clip(prevent_clip(wav), -1, 1) * (2**15 - 1)).astype("<i2").T.copy()
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(bitrate)
    encoder.set_in_sample_rate(samplerate)
    encoder.set_channels(wav.shape[0])
    encoder.set_quality(2)
    encoder.silence()
    return bytes(encoder.encode(pcm.tobytes()) + encoder.flush())


class StemEncoder:
    """A process pool that turns `{stem: float array}` into `{stem: mp3 bytes}`."""

    def __init__(self, processes: int, samplerate: int, bitrate: int):
        self.processes = processes or min(4, usable_cores())
        self.samplerate = samplerate
        self.bitrate = bitrate
        self.pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: the parent holds torch threads and open sockets.
        return ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"))

    def encode(self, stems: dict[str, np.ndarray]) -> dict[str, bytes]:
        futures = {name: self.pool.submit(encode_mp3, wav, self.samplerate, self.bitrate)
                   for name, wav in stems.items()}
        try:
            return {name: future.result() for name, future in futures.items()}
        except BrokenProcessPool as error:
            self.pool = self._new_pool()  # a pool process died; the next job gets a fresh pool
            raise EncodeFailed(f"an encoding process died: {error}") from None
        except Exception as error:
            raise EncodeFailed(f"mp3 encoding failed: {error}") from None

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
