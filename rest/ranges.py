"""Stored files streamed whole or by byte range (RFC 9110 `Range: bytes=`), so that a player
(the page's, a lossless stem a few seconds at a time) starts a long track anywhere without
fetching what comes before."""

from __future__ import annotations

import re
from collections.abc import Iterable

from flask import Response

from common.storage import NotFound, Storage
from rest.errors import ApiError

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def requested(header: str | None, size: int) -> tuple[int, int] | None:
    """The first byte and the byte after the last of a single `Range: bytes=` header, or None
    for the whole file (no header, or one this server does not serve ranges for)."""
    match = _RANGE.fullmatch((header or "").strip())
    if not match or not any(match.groups()):
        return None  # absent, several ranges or another unit: the whole file, as RFC 9110 lets
    first, last = match.groups()
    if not first:  # the last `last` bytes
        start, end = max(0, size - int(last)), size
    else:
        start, end = int(first), min(size, int(last) + 1) if last else size
    if start >= size or start >= end:
        raise ApiError(416, f"the range {header} lies outside the file's {size} bytes",
                       headers={"Content-Range": f"bytes */{size}"})
    return start, end


def stream_stored(storage: Storage, name: str, mime: str, range_header: str | None,
                  headers: dict[str, str] | None = None) -> Response:
    """The object `name` of the output bucket as a response: 206 with the range asked for,
    else 200 with all of it; NotFound if it is not stored."""
    size = storage.output_size(name)
    span = requested(range_header, size)
    start, end = span or (0, size)
    chunks: Iterable[bytes] = ()
    if size:
        _, chunks = storage.stream_output(name, start, end - start)
    response = Response(chunks, status=206 if span else 200, mimetype=mime,
                        headers={**(headers or {}), "Accept-Ranges": "bytes",
                                 "Content-Length": str(end - start)})
    if span:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    return response


__all__ = ["NotFound", "requested", "stream_stored"]
