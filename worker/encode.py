"""Encoding stems to mp3 in parallel, in a pool of processes (LAME holds the GIL).

The work sent to the pool is this module's functions on int16 PCM. (Spawned processes also
import the parent's main module, unless it is a package's `__main__`: hence `python -m worker`.)
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

import lameenc
import numpy as np

from worker.cores import usable_cores
from worker.errors import EncodeFailed


def prevent_clip(wav: np.ndarray) -> np.ndarray:
    """Scale down a stem that would clip, as the Demucs CLI does (`--clip-mode rescale`)."""
    peak = float(np.abs(wav).max(initial=0.0))
    return wav / max(1.01 * peak, 1.0)


def to_pcm16(wav: np.ndarray) -> np.ndarray:
    """Interleaved `[samples, channels]` int16 of a `[channels, samples]` float stem.

    The same arithmetic as the Demucs CLI (rescale, clamp, times 2**15 - 1, truncate), done in
    one scratch buffer; the pool gets half the bytes a float32 stem would take to pickle.
    """
    scratch = prevent_clip(wav).astype(np.float32, copy=False)
    np.clip(scratch, -1, 1, out=scratch)
    np.multiply(scratch, 2**15 - 1, out=scratch)
    pcm = np.empty(scratch.shape[::-1], dtype="<i2")
    pcm[...] = scratch.T  # float to int16 casts truncate toward zero, as astype does
    return pcm


def encode_pcm(pcm: np.ndarray, samplerate: int, bitrate: int) -> bytes:
    """Encode interleaved int16 `[samples, channels]` PCM as the Demucs CLI does (LAME -q 2)."""
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(bitrate)
    encoder.set_in_sample_rate(samplerate)
    encoder.set_channels(pcm.shape[1])
    encoder.set_quality(2)
    encoder.silence()
    return bytes(encoder.encode(pcm.tobytes()) + encoder.flush())


def encode_mp3(wav: np.ndarray, samplerate: int, bitrate: int) -> bytes:
    """Encode a `[channels, samples]` float array as the Demucs CLI does (LAME preset 2)."""
    return encode_pcm(to_pcm16(wav), samplerate, bitrate)


def _ready() -> None:
    """A no-op the pool runs once per process, so that processes start before the first song."""


def _exit_with(parent: int) -> None:
    """Pool initializer: leave when the worker is gone (a SIGKILLed worker orphans its pool)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


class StemEncoder:
    """A process pool that turns `{stem: float array}` into `(stem, mp3 bytes)` pairs."""

    def __init__(self, processes: int, samplerate: int, bitrate: int):
        self.processes = processes or min(4, usable_cores())
        self.samplerate = samplerate
        self.bitrate = bitrate
        self.pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: the parent holds torch threads and open sockets.
        pool = ProcessPoolExecutor(self.processes, multiprocessing.get_context("spawn"),
                                   initializer=_exit_with, initargs=(os.getpid(),))
        for _ in range(self.processes):
            pool.submit(_ready)  # start the interpreters now, not during the first song
        return pool

    def encode_each(self, stems: dict[str, np.ndarray]) -> Iterator[tuple[str, bytes]]:
        """`(stem, mp3 bytes)` for `{stem: [channels, samples] float32}`, encoded in parallel
        and given out as each finishes, so that one can be stored while the others encode."""
        try:
            futures = {self.pool.submit(encode_pcm, to_pcm16(wav), self.samplerate,
                                        self.bitrate): name for name, wav in stems.items()}
        except BrokenProcessPool as error:
            self.pool = self._new_pool()
            raise EncodeFailed(f"an encoding process died: {error}") from None
        for future in as_completed(futures):
            yield futures[future], self._result(future)

    def _result(self, future: Future) -> bytes:
        try:
            return future.result()
        except BrokenProcessPool as error:
            self.pool = self._new_pool()  # a pool process died; the next job gets a fresh pool
            raise EncodeFailed(f"an encoding process died: {error}") from None
        except Exception as error:
            raise EncodeFailed(f"mp3 encoding failed: {error}") from None

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
