"""What gunicorn itself answers, before the app sees a request (a request line over the limit,
bad chunked framing, malformed headers): JSON like every other answer, and no Server header
naming the software. Applied in each gunicorn worker by `post_fork` in rest/gunicorn.conf.py.
"""

from __future__ import annotations

import json

from gunicorn import util
from gunicorn.http import wsgi

_HINTS = {
    400: "the request is malformed (request line, headers or chunked framing)",
    414: "the URL is too long",
    431: "the request headers are too large",
}


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn.util.write_error's contract, answered as JSON `{"error": ...}`."""
    hint = _HINTS.get(status_int, reason.lower())
    body = json.dumps({"error": f"{hint}: {mesg}" if mesg else hint}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            "Content-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    util.write_nonblock(sock, head + body)


_GUNICORN_HEADERS = wsgi.Response.default_headers


def _headers_without_server(response: wsgi.Response) -> list[str]:
    return [line for line in _GUNICORN_HEADERS(response) if not line.startswith("Server:")]


def apply() -> None:
    """Patch this worker process's gunicorn (once, after the fork): JSON errors, no Server."""
    util.write_error = write_json_error
    # A patch of gunicorn's class, which mypy cannot follow.
    wsgi.Response.default_headers = _headers_without_server  # type: ignore[method-assign,assignment]
