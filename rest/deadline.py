"""A deadline on reading the request body, so a client that trickles it cannot hold a
connection (and what it has sent so far) for ever: 408 once it passes. Broken chunked
framing found while reading is the client's error: 400."""

from __future__ import annotations

import socket
import time

from gunicorn.http.errors import ParseException
from werkzeug.exceptions import BadRequest, RequestTimeout


class _DeadlineInput:
    """wsgi.input whose reads fail with 408 once the deadline has passed."""

    def __init__(self, stream, sock: socket.socket, deadline: float):
        self.stream, self.sock, self.deadline = stream, sock, deadline

    def _within_deadline(self, read, *args):
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise RequestTimeout()
        previous = self.sock.gettimeout()
        self.sock.settimeout(remaining)
        try:
            return read(*args)
        except TimeoutError:
            raise RequestTimeout() from None
        except ParseException as error:
            raise BadRequest(f"the request body's framing is broken: {error}") from None
        finally:
            self.sock.settimeout(previous)  # the response is not bound by the body's deadline

    def read(self, size: int = -1) -> bytes:
        return self._within_deadline(self.stream.read, size)

    def readline(self, size: int = -1) -> bytes:
        return self._within_deadline(self.stream.readline, size)

    def __iter__(self):
        return iter(self.readline, b"")


class BodyDeadline:
    """WSGI middleware: the body must arrive within `seconds` of the request's start.

    Works on the socket gunicorn hands over (`gunicorn.socket`); other servers are left as is.
    """

    def __init__(self, app, seconds: float):
        self.app, self.seconds = app, seconds

    def __call__(self, environ, start_response):
        sock = environ.get("gunicorn.socket")
        if sock is not None and self.seconds > 0:
            environ["wsgi.input"] = _DeadlineInput(environ["wsgi.input"], sock,
                                                   time.monotonic() + self.seconds)
        return self.app(environ, start_response)
