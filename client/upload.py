"""Request bodies that stream a song from disk, with a known length and a progress callback.

Two encodings of the same upload: JSON `{"mp3": "<base64>", <options>}` (the original API) and
multipart/form-data with the song in a part named `file`. Neither holds the song in memory.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

READ_SIZE = 3 * (1 << 16)  # a multiple of 3, so that base64 chunks concatenate cleanly


class Body:
    """A file-like body for requests: `read(n)` and `len()`, so it is sent with a length.

    `progress(sent, total)` counts bytes of the song itself as they are handed to the socket.
    """

    def __init__(self, pieces: Iterator[tuple[bytes, int]], length: int, song_size: int,
                 content_type: str, progress: Callable[[int, int], None]):
        self._pieces, self._length, self._size = pieces, length, song_size
        self.content_type, self._progress = content_type, progress
        self._buffer, self._sent = b"", 0

    def __len__(self) -> int:
        return self._length

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            piece = next(self._pieces, None)
            if piece is None:
                break
            data, song_bytes = piece
            self._buffer += data
            if song_bytes:
                self._sent += song_bytes
                self._progress(self._sent, self._size)
        cut = len(self._buffer) if size < 0 else size
        out, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return out


def _chunks(song: Path, encode: Callable[[bytes], bytes]) -> Iterator[tuple[bytes, int]]:
    with open(song, "rb") as source:
        while chunk := source.read(READ_SIZE):
            yield encode(chunk), len(chunk)


def json_body(song: Path, options: dict[str, str],
              progress: Callable[[int, int], None]) -> Body:
    """`{"mp3": "<base64 of the song>", ...options}`, the base64 made while sending."""
    size = song.stat().st_size
    head = b'{"mp3": "'
    tail = b'"' + b"".join(f", {json.dumps(k)}: {json.dumps(v)}".encode()
                           for k, v in options.items()) + b"}"

    def pieces() -> Iterator[tuple[bytes, int]]:
        yield head, 0
        yield from _chunks(song, base64.b64encode)
        yield tail, 0

    length = len(head) + 4 * ((size + 2) // 3) + len(tail)
    return Body(pieces(), length, size, "application/json", progress)


def multipart_body(song: Path, options: dict[str, str],
                   progress: Callable[[int, int], None]) -> Body:
    """multipart/form-data: each option a field, then the song in the part `file`."""
    size = song.stat().st_size
    boundary = uuid.uuid4().hex
    fields = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        .encode() for name, value in options.items())
    filename = json.dumps(song.name)  # quoted, with any quote inside escaped
    head = fields + (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                     f"filename={filename}\r\nContent-Type: application/octet-stream\r\n\r\n"
                     ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def pieces() -> Iterator[tuple[bytes, int]]:
        yield head, 0
        yield from _chunks(song, bytes)
        yield tail, 0

    return Body(pieces(), len(head) + size + len(tail), size,
                f"multipart/form-data; boundary={boundary}", progress)
