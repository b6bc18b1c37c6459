"""The upload of a song: multipart/form-data with the options as fields and the audio in a part
named `file`, read from disk while it is sent, never held in memory whole."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


class Upload:
    """A file-like body: `read(n)` and `len()`, so requests sends it with a Content-Length.

    `progress(sent, total)` counts the song's own bytes as they are read for the socket.
    """

    def __init__(self, song: Path, options: dict[str, str],
                 progress: Callable[[int, int], None]):
        boundary = uuid.uuid4().hex
        self.content_type = f"multipart/form-data; boundary={boundary}"
        fields = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'
                         f"\r\n\r\n{value}\r\n" for name, value in options.items())
        head = (f'{fields}--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f"filename={json.dumps(song.name)}\r\n"  # quoted, inner quotes escaped
                "Content-Type: application/octet-stream\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        self._size = song.stat().st_size
        self._length = len(head) + self._size + len(tail)
        self._song: BinaryIO = open(song, "rb")  # closed by close()
        self._parts: list[BinaryIO] = [io.BytesIO(head), self._song, io.BytesIO(tail)]
        self._progress = progress

    def __len__(self) -> int:
        return self._length

    def read(self, size: int = -1) -> bytes:
        out = b""
        while self._parts and (size < 0 or len(out) < size):
            part = self._parts[0]
            data = part.read(-1 if size < 0 else size - len(out))
            if not data:
                self._parts.pop(0)
                continue
            out += data
            if part is self._song:
                self._progress(self._song.tell(), self._size)
        return out

    def close(self) -> None:
        self._song.close()

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
