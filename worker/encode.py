"""Encoding separated stems to mp3 in the worker itself, in the render pool's processes.

What renders from lossless stems lives in worker/render/; this is the separation worker's own
mp3 path, kept while it still writes mp3s.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, as_completed
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from worker.cores import usable_cores
from worker.errors import EncodeFailed
from worker.render.encode import mp3_from_pcm, to_pcm
from worker.render.pool import spawn_pool


class StemEncoder:
    """A process pool that turns `{stem: float array}` into `(stem, mp3 bytes)` pairs."""

    def __init__(self, processes: int, samplerate: int, bitrate: int):
        self.processes = processes or min(4, usable_cores())
        self.samplerate = samplerate
        self.bitrate = bitrate
        self.pool = spawn_pool(self.processes)

    def encode_each(self, stems: dict[str, np.ndarray]) -> Iterator[tuple[str, bytes]]:
        """`(stem, mp3 bytes)` for `{stem: [channels, samples] float32}`, encoded in parallel
        and given out as each finishes, so that one can be stored while the others encode."""
        try:
            futures = {self.pool.submit(mp3_from_pcm, to_pcm(wav), self.samplerate,
                                        self.bitrate): name for name, wav in stems.items()}
        except BrokenProcessPool as error:
            self.pool = spawn_pool(self.processes)
            raise EncodeFailed(f"an encoding process died: {error}") from None
        for future in as_completed(futures):
            yield futures[future], self._result(future)

    def _result(self, future: Future) -> bytes:
        try:
            return future.result()
        except BrokenProcessPool as error:
            self.pool = spawn_pool(self.processes)  # the next job gets a fresh pool
            raise EncodeFailed(f"an encoding process died: {error}") from None
        except Exception as error:
            raise EncodeFailed(f"mp3 encoding failed: {error}") from None

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
