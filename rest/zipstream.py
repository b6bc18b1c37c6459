"""A zip written while it is sent: stdlib zipfile into a sink that the response drains.

Audio does not compress, so entries are stored (ZIP_STORED); sizes are known from the store,
so each entry's header is complete and the archive is never held whole in memory.
"""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator


class _Sink(io.RawIOBase):
    """A write-only, unseekable file whose written bytes are taken out as they come."""

    def __init__(self) -> None:
        self._pending: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._pending.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._pending)
        self._pending.clear()
        return data


Entry = tuple[str, int, Callable[[], Iterator[bytes]]]


def stream_zip(entries: Iterable[Entry]) -> Iterator[bytes]:
    """The bytes of a zip of `(name, size, open)` entries, yielded as they are written;
    `open()` gives an entry's chunks when its turn comes."""
    sink = _Sink()
    stamp = time.localtime()[:6]
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, size, open_chunks in entries:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.file_size = size
            with archive.open(info, "w", force_zip64=size >= zipfile.ZIP64_LIMIT) as entry:
                for chunk in open_chunks():
                    entry.write(chunk)
                    yield sink.take()
            yield sink.take()
    yield sink.take()
