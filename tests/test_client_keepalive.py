"""The client against a server that closes a kept-alive connection just as it is reused (a
poll as long after the previous one as the server's keep-alive): a read is asked again on a new
connection, a write is not (the server may have received it)."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from client.api import Api, Unreachable

ANSWER = json.dumps({"models": [{"name": "htdemucs"}]}).encode()


class ClosingOnReuse:
    """A loopback HTTP server that answers the first request of each connection (keep-alive)
    and closes the connection, unanswered, when a second request arrives on it."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections = 0
        self.closed_unanswered = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._talk, args=(connection,), daemon=True).start()

    def _talk(self, connection: socket.socket) -> None:
        with connection:
            if not _read_request(connection):
                return
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                               b"Content-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER))
            if _read_request(connection):
                self.closed_unanswered += 1  # closed here, as a keep-alive that ran out

    def close(self) -> None:
        self.listener.close()


def _read_request(connection: socket.socket) -> bool:
    """Read one request's head (these requests have no body); False at end of stream."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(4096)
        if not chunk:
            return False
        data += chunk
    return True


@pytest.fixture
def server():
    running = ClosingOnReuse()
    yield running
    running.close()


def test_a_read_on_a_connection_closed_while_reused_is_asked_again(server):
    api = Api(server.url, timeout_s=30)
    for _ in range(3):
        assert api.models() == [{"name": "htdemucs"}]
    api.close()
    assert server.closed_unanswered == 2 and server.connections == 3


def test_a_write_on_a_connection_closed_while_reused_is_not_sent_again(server):
    api = Api(server.url, timeout_s=30)
    assert api.models() == [{"name": "htdemucs"}]
    with pytest.raises(Unreachable, match="cannot reach the server"):
        api.cancel("ab" * 32)
    api.close()
    assert server.closed_unanswered == 1 and server.connections == 1
