"""The command-line client against a server that misbehaves: a loopback HTTP server answering
hostile track names, endless 202s, endless or trickled bodies. The client must write only
inside `-o DIR` and give up within its limits."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from client.api import ApiError, transient
from tests.test_cli import call

SONG = "ab" * 32
Handler = Callable[[BaseHTTPRequestHandler], None]


class BadServer:
    """A loopback HTTP server whose answer to each path prefix is a function of the test's."""

    def __init__(self, routes: dict[str, Handler]):
        self.routes = routes
        self.requests: list[str] = []
        server = self

        class Handle(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.requests.append(self.path)
                for prefix, answer in server.routes.items():
                    if self.path.startswith(prefix):
                        try:
                            answer(self)
                        except (BrokenPipeError, ConnectionResetError):
                            pass  # the client gave up, as it should
                        return
                send_json(self, {"error": "no such route"}, 404)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handle)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> BadServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def send_json(handler: BaseHTTPRequestHandler, body: dict, code: int = 200,
              headers: dict | None = None) -> None:
    data = json.dumps(body).encode()
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


def done_with(tracks: list[str]) -> Handler:
    return lambda handler: send_json(handler, {"hash": SONG, "status": "done", "tracks": tracks})


def files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.mark.parametrize("tracks", [
    ["../../../escaped.mp3"], ["/tmp/absolute.mp3"], ["vocals.mp3", "../x/../../y.mp3"],
    ["..\\..\\win.mp3"], ["vocals.mp3", "bass/../../../z.mp3"]])
def test_track_names_from_the_server_never_leave_the_output_folder(tmp_path, tracks):
    out = tmp_path / "deep" / "out"
    song_track = {"/apiv1/track/": lambda h: h.send_error(500)}
    with BadServer({"/apiv1/status/": done_with(tracks), **song_track}) as server:
        code, stdout, stderr = call("download", SONG, "-o", str(out), "--server", server.url)
    assert code == 1, stdout + stderr
    assert "not a plain stem name; nothing was saved" in stdout + stderr
    assert files_under(tmp_path) == []  # not even the output folder was made
    assert not any(path.startswith("/apiv1/track/") for path in server.requests)


def test_stem_names_from_the_models_route_are_checked_too(tmp_path):
    models = {"models": [{"name": "m", "default": True, "stems": ["vocals", "../../up"]}]}
    routes = {"/apiv1/status/": done_with(["no_vocals.mp3", "vocals.mp3"]),
              "/apiv1/models": lambda h: send_json(h, models)}
    with BadServer(routes) as server:
        code, stdout, stderr = call("download", SONG, "-o", str(tmp_path / "out"),
                                    "--server", server.url)
    assert code == 1 and "'../../up'" in stdout + stderr, stdout + stderr
    assert files_under(tmp_path) == []


def test_a_link_in_the_song_folder_is_not_followed_out(tmp_path):
    song_folder = tmp_path / "out" / SONG
    song_folder.mkdir(parents=True)
    (song_folder / "vocals.mp3").symlink_to(tmp_path / "elsewhere.mp3")
    with BadServer({"/apiv1/status/": done_with(["vocals.mp3"])}) as server:
        code, stdout, stderr = call("download", SONG, "-o", str(tmp_path / "out"),
                                    "--server", server.url)
    assert code == 1 and "leads out of" in stdout + stderr, stdout + stderr
    assert not (tmp_path / "elsewhere.mp3").exists()


def test_a_server_that_always_says_retry_now_is_polled_gently_until_the_deadline(tmp_path):
    def pending(handler: BaseHTTPRequestHandler) -> None:
        send_json(handler, {"reason": "being made"}, 202, {"Retry-After": "0"})

    routes = {"/apiv1/status/": done_with(["vocals.mp3"]), "/apiv1/track/": pending}
    started = time.monotonic()
    with BadServer(routes) as server:
        code, stdout, stderr = call("download", SONG, "-o", str(tmp_path), "--timeout", "3",
                                    "--server", server.url)
    elapsed = time.monotonic() - started
    assert code == 1 and "gave up after 3 s (--timeout)" in stderr, stdout + stderr
    polls = [path for path in server.requests if path.startswith("/apiv1/track/")]
    assert 3 <= len(polls) <= 8, len(polls)  # at least 0.5 s apart
    assert elapsed < 15


def _endless(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "audio/mpeg")
    handler.send_header("Connection", "close")  # the body ends when the connection does
    handler.end_headers()
    block = b"\0" * 65536
    while True:
        handler.wfile.write(block)


def test_an_endless_track_is_cut_at_the_byte_limit_and_nothing_is_kept(tmp_path):
    routes = {"/apiv1/status/": done_with(["vocals.mp3"]), "/apiv1/track/": _endless}
    with BadServer(routes) as server:
        code, stdout, stderr = call("download", SONG, "-o", str(tmp_path / "out"),
                                    "--max-track-mb", "2", "--server", server.url)
    assert code == 1 and f"more than {2 << 20} bytes of download of vocals.mp3" in stderr, \
        stdout + stderr
    assert files_under(tmp_path / "out") == [SONG]  # no track, no partial file


def test_a_stated_length_over_the_limit_is_refused_before_anything_is_written(tmp_path):
    def huge(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(50 << 30))
        handler.end_headers()

    routes = {"/apiv1/status/": done_with(["vocals.mp3"]), "/apiv1/track/": huge}
    with BadServer(routes) as server:
        code, stdout, stderr = call("download", SONG, "-o", str(tmp_path / "out"),
                                    "--max-track-mb", "10", "--server", server.url)
    assert code == 1 and "more than --max-track-mb allows" in stderr, stdout + stderr
    assert files_under(tmp_path / "out") == []


def test_a_trickled_track_is_given_up_at_the_deadline(tmp_path):
    def trickle(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(1 << 20))
        handler.end_headers()
        for _ in range(1 << 20):
            handler.wfile.write(b"\0")
            handler.wfile.flush()
            time.sleep(0.05)

    routes = {"/apiv1/status/": done_with(["vocals.mp3"]), "/apiv1/track/": trickle}
    started = time.monotonic()
    with BadServer(routes) as server:
        code, stdout, stderr = call("download", SONG, "-o", str(tmp_path / "out"),
                                    "--timeout", "2", "--server", server.url)
    assert code == 1 and "gave up after 2 s (--timeout)" in stderr, stdout + stderr
    assert time.monotonic() - started < 15
    assert files_under(tmp_path / "out") == [SONG]


def test_a_hash_that_is_not_one_is_a_usage_error(tmp_path):
    for args in (["wait", "../../etc"], ["download", "/" + "a" * 63], ["status", "x"]):
        code, _, stderr = call(*args, "--server", "http://127.0.0.1:9")
        assert code == 2 and "is not a song hash" in stderr, (args, stderr)


def test_only_answers_that_say_so_are_waited_out():
    assert transient(ApiError(409, "song is being deleted", retry_after=2))
    assert not transient(ApiError(409, "it has finished separating"))
    assert transient(ApiError(503, "the queue is full")) and not transient(ApiError(404, "no"))
