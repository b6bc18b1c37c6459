"""The render pool: tracks encoded in parallel, in processes of their own (LAME holds the GIL).

Spawned processes import the parent's main module unless it is a package's `__main__`:
started as `python -m worker.render` they import worker/render/encode.py and what it needs,
never torch.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from common.tracks import Rendition
from worker.render.encode import render_file
from worker.runtime.cores import usable_cores
from worker.runtime.errors import EncodeFailed

T = TypeVar("T")


def _ready() -> None:
    """A no-op the pool runs once per process, so that processes start before the first job."""


def _exit_with(parent: int) -> None:
    """Pool initializer: leave when the parent is gone (a SIGKILLed worker orphans its pool)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def track_sources(rendition: Rendition, stems: list[str]) -> dict[str, list[str]]:
    """`{track name: [stems summed into it]}`: a stem on its own, or for `no_<stem>` the
    others."""
    rendition.check(stems)
    return {track.name: [s for s in stems if s != track.stem] if track.without else [track.stem]
            for track in rendition.tracks(stems)}


def spawn_pool(processes: int) -> ProcessPoolExecutor:
    """A pool of `processes` spawned processes, started now, that leave when this one dies."""
    # spawn, not fork: the parent holds threads and open sockets.
    pool = ProcessPoolExecutor(processes, multiprocessing.get_context("spawn"),
                               initializer=_exit_with, initargs=(os.getpid(),))
    for _ in range(processes):
        pool.submit(_ready)  # start the interpreters now, not during the first job
    return pool


class Renderer:
    """A process pool that turns a song's lossless stems into the tracks of a rendition."""

    def __init__(self, processes: int = 0):
        self.processes = processes or usable_cores()
        self.pool = spawn_pool(self.processes)

    def render(self, stems: dict[str, str], rendition: Rendition,
               folder: str) -> Generator[tuple[str, str], None, None]:
        """`(track name, file)` for each track of `rendition` made from `{stem: lossless FLAC
        file}` (in the model's order), written into `folder` and given out as each finishes,
        so that one can be stored while the others encode."""
        tracks = track_sources(rendition, list(stems))
        try:
            futures = {self.pool.submit(render_file, [stems[s] for s in sources],
                                        rendition.format, rendition.quality,
                                        os.path.join(folder, name)): name
                       for name, sources in tracks.items()}
        except BrokenProcessPool as error:
            self.pool = spawn_pool(self.processes)
            raise EncodeFailed(f"a render process died: {error}") from error
        try:
            for future in as_completed(futures):
                self._result(future)
                yield futures[future], os.path.join(folder, futures[future])
        finally:  # closed early (the job was dropped): the tracks not begun are not made
            for future in futures:
                future.cancel()

    def map(self, function: Callable[..., T], calls: list[tuple]) -> list[T]:
        """`function(*args)` for each of `calls`, run in parallel in the pool; the results in
        the order of `calls`."""
        try:
            futures = [self.pool.submit(function, *args) for args in calls]
        except BrokenProcessPool as error:
            self.pool = spawn_pool(self.processes)
            raise EncodeFailed(f"a render process died: {error}") from error
        try:
            for future in futures:
                self._result(future)
            return [future.result() for future in futures]
        finally:
            for future in futures:
                future.cancel()

    def _result(self, future: Future) -> None:
        try:
            future.result()
        except BrokenProcessPool as error:
            self.pool = spawn_pool(self.processes)  # the next job gets a fresh pool
            raise EncodeFailed(f"a render process died: {error}") from error
        except (RuntimeError, ValueError, OSError) as error:  # what the encoders raise; a bug
            raise EncodeFailed(f"rendering failed: {error}") from error  # goes on as itself

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
