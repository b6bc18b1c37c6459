"""Multipart uploads, streamed: the file part goes to a temporary file while its hash is taken.

The song's hash is the SHA-256 of the standard base64 text of its bytes, as for the JSON field,
so it is computed on the fly: base64 of 3-byte-aligned pieces concatenates exactly, and only
the (at most 2) bytes left over wait for the next piece. The file is never held in memory.
"""

from __future__ import annotations

import base64
import hashlib
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from flask import Request, current_app
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

from rest.errors import ApiError, too_large, unavailable

# A burst of small uploads waits this long for a slot rather than being refused at once.
UPLOAD_SLOT_WAIT_S = 5


@contextmanager
def upload_slot() -> Iterator[None]:
    """Hold one of the process's MAX_CONCURRENT_UPLOADS slots while a body is received.

    gevent gives every connection its own greenlet, so without a bound the uploads a process
    holds at once (each a few times MAX_UPLOAD_MB at worst) would have no ceiling; its memory
    limit in k8s/ is sized from this one.
    """
    slots: threading.BoundedSemaphore = current_app.extensions["upload_slots"]
    if not slots.acquire(timeout=UPLOAD_SLOT_WAIT_S):
        raise unavailable("the gateway is receiving as many uploads as it may at once; "
                          "retry in a few seconds")
    try:
        yield
    finally:
        slots.release()


class Base64Hash:
    """SHA-256 of the standard base64 text of the bytes fed to `update`, piece by piece."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._left = b""

    def update(self, data: bytes) -> None:
        if self._left:
            data = self._left + data
        whole = len(data) - len(data) % 3
        self._sha.update(base64.b64encode(data[:whole]))
        self._left = data[whole:]

    def hexdigest(self) -> str:
        sha = self._sha.copy()
        sha.update(base64.b64encode(self._left))  # the padded end of the text
        return sha.hexdigest()


class HashingFile:
    """A temporary file that hashes and counts what is written to it, up to `limit` bytes."""

    def __init__(self, limit: int):
        self.file = tempfile.TemporaryFile()
        self.hash = Base64Hash()
        self.size = 0
        self.limit = limit

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > self.limit:
            self.file.close()  # refused: nothing of it stays on disk
            raise too_large(self.limit)
        self.hash.update(data)
        return self.file.write(data)

    def __getattr__(self, name: str):
        return getattr(self.file, name)  # read, seek, fileno, close... of the file itself


class _CountingStream:
    """The body as the multipart parser reads it, counting the parts' delimiters as they pass,
    and noting whether the body itself passed its length limit."""

    def __init__(self, stream: IO[bytes], delimiter: bytes):
        self.stream, self.delimiter = stream, delimiter
        self.delimiters, self.over_length = 0, False
        self._tail = b""

    def read(self, size: int = -1) -> bytes:
        try:
            data = self.stream.read(size)
        except RequestEntityTooLarge:
            self.over_length = True
            raise
        # The tail is shorter than a delimiter: one split between two reads is counted once.
        seen = self._tail + data
        self.delimiters += seen.count(self.delimiter)
        self._tail = seen[-(len(self.delimiter) - 1):]
        return data


class _FormParser(FormDataParser):
    """Werkzeug's form parser, whose refusals say which of its limits a form passed."""

    def _parse_multipart(self, stream, mimetype, content_length, options):
        counted = _CountingStream(stream, b"--" + options.get("boundary", "").encode("ascii"))
        try:
            return super()._parse_multipart(counted, mimetype, content_length, options)
        except RequestEntityTooLarge:
            parts = counted.delimiters - 1  # the last delimiter closes the form
            if self.max_form_parts is not None and parts > self.max_form_parts:
                raise ApiError(413, f"the form has more than {self.max_form_parts} parts; send "
                                    "the file and only the fields the API names (callback, "
                                    "model, two_stems, format, bits, bitrate)") from None
            if not counted.over_length and self.max_form_memory_size is not None:
                raise ApiError(413, f"a form field is larger than {self.max_form_memory_size} "
                                    "bytes; only the part named file may be large") from None
            raise


class UploadRequest(Request):
    """Flask's request, whose multipart file parts are written to hashing temporary files,
    and whose form refusals say what is wrong."""

    form_data_parser_class = _FormParser

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None,
                         content_length: int | None = None) -> IO[bytes]:
        return HashingFile(current_app.config["SETTINGS"].max_upload_bytes)  # type: ignore
