"""A separation job's work: the upload in, one lossless FLAC stem per source in the store.

The song streams through: decoded a window at a time (twice: the first pass takes the mix's
mean and deviation), separated segment batch by batch, each finished stretch FLAC-encoded and
uploaded in multipart parts as the stem grows. Memory holds a few segments and parts, whatever
the length; an upload is completed only once every stem is whole.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from common import flac
from common.storage import (
    NotFound,
    PartUpload,
    Storage,
    StorageError,
    job_prefix,
)
from worker.runtime.errors import InputMissing
from worker.runtime.progress import Progress
from worker.separation.audio import blocks, summarise
from worker.separation.separator import Separator

log = logging.getLogger("worker")
# Frames waiting per stem before the separation waits for its encoder (about 24 s at 44.1 kHz:
# four strides of htdemucs, one of a model with long segments), and frames encoded at a time.
QUEUED_FRAMES = 2**20
ENCODE_FRAMES = 2**16


class Parts:
    """A write-only file whose bytes go to the store in parts as they come.

    libsndfile writes FLAC front to back, then goes back to fill in the header (length, MD5):
    so the first part stays here until `close` and is sent last, under part number 1.
    """

    def __init__(self, upload: PartUpload):
        self.upload = upload
        self.size = PartUpload.PART_SIZE
        self.head = bytearray()  # bytes [0, size)
        self.tail = bytearray()  # bytes [sent, ...)
        self.sent = self.size  # where `tail` starts: all before it (past the head) is sent
        self.position = self.end = 0
        self.number = 1
        self.discard = False  # after an abort, libsndfile's last flush goes nowhere

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = {0: offset, 1: self.position + offset, 2: self.end + offset}[whence]
        return self.position

    def tell(self) -> int:
        return self.position

    def write(self, data: bytes) -> int:
        data = bytes(data)
        count, end = len(data), self.position + len(data)
        if self.discard:
            return count
        if self.position < self.size:  # into the head, which is kept
            cut = min(end, self.size) - self.position
            self.head[self.position:self.position + cut] = data[:cut]
            data, self.position = data[cut:], self.position + cut
        if data:
            at = self.position - self.sent
            if at < 0 or at > len(self.tail):
                raise OSError(f"cannot write at byte {self.position}: already sent")
            self.tail[at:at + len(data)] = data
            while len(self.tail) > self.size:  # a full part, and more behind it
                self.number += 1
                self.upload.put_part(self.number, bytes(self.tail[:self.size]))
                del self.tail[:self.size]
                self.sent += self.size
        self.position, self.end = end, max(self.end, end)
        return count

    @property
    def single(self) -> bool:
        """Whether the whole file fits in the head: then it is sent in one PUT."""
        return self.number == 1 and not self.tail

    def finish(self) -> None:
        """Send the head and what is left; the object stays invisible until `complete`."""
        if self.single:
            return
        self.upload.put_part(1, bytes(self.head))
        if self.tail:
            self.number += 1
            self.upload.put_part(self.number, bytes(self.tail))

    def complete(self) -> None:
        """Make the object visible, whole."""
        if self.single:
            self.upload.put_whole(bytes(self.head))
        else:
            self.upload.complete()


class StemSink:
    """One stem on its way to the store: FLAC-encoded and uploaded on a thread of its own, so
    that the model does not wait for the encoder or the network."""

    def __init__(self, upload: PartUpload, samplerate: int, channels: int):
        self.upload = upload
        self.file = Parts(upload)
        self.flac = flac.writer(self.file, samplerate, channels)
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="stem")
        self.queued: deque[tuple[Future, int]] = deque()  # (encoding, its frames)
        self.clipped = 0

    def write(self, stem: np.ndarray) -> None:
        """Queue a `[channels, n]` stretch; raises what an earlier write or upload raised.

        The sink keeps a copy of its own, frames first as libsndfile takes them, so that the
        separation's whole stretch (every stem of it) is freed as soon as it is handed out.
        """
        frames = np.array(stem.T, dtype=np.float32, order="C")
        while self.queued and sum(n for _, n in self.queued) + len(frames) > QUEUED_FRAMES:
            self.queued.popleft()[0].result()
        self.queued.append((self.thread.submit(self._encode, frames), len(frames)))

    def _encode(self, frames: np.ndarray) -> None:
        # In place and a block at a time: the encoder's scratch stays small whatever the stride.
        for start in range(0, len(frames), ENCODE_FRAMES):
            self.clipped += flac.write_block(self.flac, frames[start:start + ENCODE_FRAMES])

    def finish(self) -> None:
        """Encode what is queued and send every part; the stem is not visible yet."""
        while self.queued:
            self.queued.popleft()[0].result()
        self.thread.shutdown()
        self.flac.close()
        self.file.finish()

    def abort(self) -> None:
        """Drop everything sent of this stem."""
        for future, _ in self.queued:
            future.cancel()
        self.thread.shutdown(wait=True)
        self.file.discard = True
        try:
            self.flac.close()
        finally:
            self.upload.abort()


def separate_to_store(separator: Separator, storage: Storage, song_hash: str, input_object: str,
                      model: str, *, max_seconds: float, progress: Progress) -> dict[str, float]:
    """Separate upload `input_object` and store its stems; timings in seconds.

    Raises TooLong past `max_seconds` (decoding stops there), InputMissing, DecodeFailed,
    SeparationFailed, StorageError. `progress` is called after each segment and may raise to
    stop; whatever the exception, nothing of this call stays in the store.
    """
    timings: dict[str, float] = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        timings[name] = round(time.monotonic() - clock, 3)
        clock = time.monotonic()

    rate, channels = separator.samplerate, separator.audio_channels
    # The upload is spooled to the temp folder (an emptyDir in pods): FFmpeg needs to seek.
    with tempfile.TemporaryDirectory(prefix="song-") as folder:
        path = str(Path(folder) / "upload")
        try:
            storage.download_input(input_object, path)
        except NotFound:
            raise InputMissing("the upload is no longer in the object store; submit the song "
                               "again") from None
        lap("fetch")
        summary = summarise(path, rate, channels, max_seconds)
        lap("decode")
        # An earlier attempt that died mid-upload (its worker restarted before any reaper saw
        # it dead) left its parts open: they go before this attempt sends its own.
        if leftovers := storage.abort_uploads(job_prefix(song_hash, model)):
            log.warning("song %s: %d open upload(s) of an earlier attempt aborted", song_hash,
                        leftovers)
        sinks = {name: StemSink(storage.lossless_upload(song_hash, model, name), rate, channels)
                 for name in separator.sources}
        try:
            for stretch in separator.stream(blocks(path, rate, channels, max_seconds), summary,
                                              progress):
                for index, sink in enumerate(sinks.values()):
                    sink.write(stretch[index].numpy())
                del stretch  # the sinks hold copies: free it before the next segments run
            for sink in sinks.values():
                sink.finish()
            lap("separate")
            _complete(storage, song_hash, model, sinks)
        except BaseException:
            _abort(sinks, song_hash)
            raise
    lap("store")
    for name, sink in sinks.items():
        if sink.clipped:
            log.warning("song %s: %d samples of %s beyond %g x full scale were clipped",
                        song_hash, sink.clipped, name, flac.LOSSLESS_HEADROOM)
    timings["audio_seconds"] = round(summary.seconds, 3)
    return timings


def _abort(sinks: dict[str, StemSink], song_hash: str) -> None:
    """Abandon every stem's upload: a separation that failed leaves nothing in the store."""
    for sink in sinks.values():
        try:
            sink.abort()
        except StorageError as error:  # the parts are invisible; a lifecycle rule ends them
            log.warning("could not abort an upload of %s (%s)", song_hash, error)


def _complete(storage: Storage, song_hash: str, model: str, sinks: dict[str, StemSink]) -> None:
    """Make every stem visible, or none: a failure removes those already completed."""
    done: list[str] = []
    try:
        for name, sink in sinks.items():
            sink.file.complete()
            done.append(name)
    except BaseException:
        for name in done:
            try:
                storage.remove_lossless(song_hash, model, name)
            except StorageError as error:
                log.warning("song %s: could not remove the stem %s (%s)", song_hash, name, error)
        raise
