"""Servers the fault and callback tests put beside the stack: a callback receiver that records
what it is sent, and a TCP proxy that can slow down or cut the object store."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


# -- a callback receiver --------------------------------------------------------------------
class CallbackReceiver:
    """An HTTP server on loopback that records every POST.

    `answer` is the status it replies with (a list: one per request, the last repeated);
    `hang` makes it hold each request until `release()`; `redirect` answers 302 with that
    Location.
    """

    def __init__(self, answer: int | list[int] = 200, hang: bool = False, redirect: str = ""):
        self.answers = answer if isinstance(answer, list) else [answer]
        self.hang, self.redirect = hang, redirect
        self.requests: list[dict] = []
        self.released = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    answer = receiver.answers[min(len(receiver.requests),
                                                  len(receiver.answers) - 1)]
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers),
                                              "body": body, "at": time.monotonic()})
                if receiver.hang:
                    receiver.released.wait(60)
                self.send_response(302 if receiver.redirect else answer)
                if receiver.redirect:
                    self.send_header("Location", receiver.redirect)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # Polled for shutdown every 10 ms rather than 0.5 s: tests end without waiting.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,),
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def bodies(self) -> list:
        with self.lock:
            return [json.loads(item["body"]) for item in self.requests]

    def release(self) -> None:
        self.released.set()

    def __enter__(self) -> CallbackReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


# -- a TCP proxy in front of the object store -----------------------------------------------
class TcpProxy:
    """Forwards loopback connections to `upstream_port`.

    `delay_s` holds back every chunk of every reply, so that a worker's uploads are slow
    enough to act between two of them; `cut()` resets every connection and refuses new ones
    (the store is down) until `restore()`.
    """

    def __init__(self, upstream_port: int, delay_s: float = 0.0):
        self.upstream_port = upstream_port
        self.delay_s = delay_s
        self.down = threading.Event()
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down.is_set():
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                _reset(client)
                continue
            with self.lock:
                self.sockets.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, 0.0), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, self.delay_s),
                             daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, delay_s: float) -> None:
        try:
            while chunk := source.recv(65536):
                if delay_s:
                    time.sleep(delay_s)
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                _reset(sock)
            with self.lock:
                self.sockets.difference_update((source, target))

    def cut(self) -> None:
        self.down.set()
        with self.lock:
            for sock in list(self.sockets):
                _reset(sock)

    def restore(self) -> None:
        self.down.clear()

    def close(self) -> None:
        self.closed = True
        self.cut()
        _reset(self.listener)


def _reset(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
