"""The HTTP API of a Micro Demucs server, as the client sees it: one session, timeouts, errors."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests
import urllib3

from client.upload import Upload

DEFAULT_URL = "http://localhost:5000"
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 60  # a large upload is checked (probed) before the server answers
CHUNK = 1 << 16
DEFAULT_TIMEOUT_S = 6 * 3600  # a whole command: a 3-hour song separated on a CPU, queued
MIN_WAIT_S = 0.5  # between two polls, whatever Retry-After says
MAX_WAIT_S = 30  # the longest Retry-After heeded
DEFAULT_MAX_TRACK_MB = 4096  # a 3-hour 24-bit 48 kHz stereo WAV is 3.1 GB
MAX_ANSWER_BYTES = 4 << 20  # a JSON answer: the longest queue listing is far below

Progress = Callable[[int, int], None]  # (bytes so far, bytes in all)


class ApiError(Exception):
    """The server answered with an error; `message` is its own words."""

    def __init__(self, status: int, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after


class Unreachable(Exception):
    """No answer from the server at all (down, wrong address, timeout)."""


class GaveUp(Unreachable):
    """The command's deadline (--timeout) passed, or the server sent more than it may."""


def transient(error: ApiError) -> bool:
    """An answer worth waiting out: rate limited, the server's stores briefly away, or a
    conflict that says when to ask again (a song being deleted)."""
    return error.status in (429, 502, 503, 504) or (error.status == 409
                                                    and error.retry_after is not None)


def error_line(error: ApiError | Unreachable) -> str:
    """What to print for an error: the server's own words and its status."""
    if isinstance(error, ApiError):
        return f"{error.message} (HTTP {error.status})"
    return str(error)


class Api:
    """A client of one server's /apiv1/ routes, which gives up on a server that misbehaves:
    every call ends by `timeout_s` after the start (0: never), answers are read within it and
    within a byte limit, and polls are at least MIN_WAIT_S apart."""

    def __init__(self, base_url: str = DEFAULT_URL, api_key: str = "",
                 timeout_s: float = DEFAULT_TIMEOUT_S,
                 max_track_bytes: int = DEFAULT_MAX_TRACK_MB << 20):
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "micro-demucs-cli"
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s if timeout_s > 0 else float("inf")
        self.max_track_bytes = max_track_bytes

    def close(self) -> None:
        self.session.close()

    def remaining(self) -> float:
        """Seconds left before the deadline; GaveUp once it has passed."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise GaveUp(f"gave up after {self.timeout_s:g} s (--timeout); the server at "
                         f"{self.base_url} keeps the songs")
        return left

    def wait(self, retry_after: float | None) -> None:
        """Sleep before asking again: Retry-After, kept within MIN_WAIT_S..MAX_WAIT_S and the
        deadline."""
        pause = min(max(retry_after or 0, MIN_WAIT_S), MAX_WAIT_S)
        time.sleep(min(pause, self.remaining()))
        self.remaining()

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """The response, its body not read yet (stream): read it with `_body`."""
        kwargs.setdefault("timeout", (CONNECT_TIMEOUT_S, min(READ_TIMEOUT_S, self.remaining())))
        try:
            try:
                response = self.session.request(method, f"{self.base_url}{path}", stream=True,
                                                **kwargs)
            except requests.ConnectionError as error:
                # A kept-alive connection that the server closed just as it was reused (a poll
                # as long after the last as its keep-alive): a read is asked again, once, on a
                # new connection. A write is not: the server may have received it.
                if method not in ("GET", "HEAD") or not _closed_while_reused(error):
                    raise
                response = self.session.request(method, f"{self.base_url}{path}", stream=True,
                                                **kwargs)
        except requests.ConnectionError as error:
            raise Unreachable(f"cannot reach the server at {self.base_url} ({_cause(error)}); "
                              "is it running? Set --server or MICRO_DEMUCS_URL") from None
        except requests.Timeout:
            raise Unreachable(f"the server at {self.base_url} did not answer in time") from None
        if response.status_code >= 400:
            with response:
                raise _error(response, self._body(response, MAX_ANSWER_BYTES, "answer"))
        return response

    def _chunks(self, response: requests.Response, limit: int, what: str) -> Iterator[bytes]:
        """The body as it arrives (a trickle too), within the deadline and `limit` bytes."""
        received = 0
        try:
            while chunk := response.raw.read1(CHUNK, decode_content=True):
                received += len(chunk)
                if received > limit:
                    raise GaveUp(f"the server sent more than {limit} bytes of {what}; "
                                 "nothing of it was kept")
                self.remaining()
                yield chunk
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as error:
            raise Unreachable(f"the {what} from {self.base_url} broke off "
                              f"({type(error).__name__})") from None

    def _body(self, response: requests.Response, limit: int, what: str) -> bytes:
        return b"".join(self._chunks(response, limit, what))

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        with self._request(method, path, **kwargs) as response:
            body = self._body(response, MAX_ANSWER_BYTES, "answer")
        try:
            answer = json.loads(body)
        except ValueError:
            raise ApiError(response.status_code, f"the server's answer to {path} is not "
                                                 "JSON") from None
        if not isinstance(answer, dict):
            raise ApiError(response.status_code, f"the server's answer to {path} is not "
                                                 "a JSON object")
        return answer

    def submit(self, song: Path, options: dict[str, str], progress: Progress) -> dict[str, Any]:
        """Upload one song with its job options; the answer {"hash", "reason"}."""
        with Upload(song, options, progress) as body:
            return self._json("POST", "/apiv1/separate", data=body,
                              headers={"Content-Type": body.content_type})

    def status(self, song_hash: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """The song's status body; an error answer raises ApiError."""
        return self._json("GET", f"/apiv1/status/{song_hash}", params=params)

    def stems(self, model: str | None) -> list[str]:
        """The stems of a model the server offers (its default model when None)."""
        for offered in self._json("GET", "/apiv1/models").get("models") or []:
            if offered.get("name") == model or (model is None and offered.get("default")):
                return [str(stem) for stem in offered.get("stems") or []]
        raise ApiError(404, f"the server offers no model {model}")

    def models(self) -> list[dict[str, Any]]:
        """The models the server offers (GET /apiv1/models), the default first."""
        return [dict(model) for model in self._json("GET", "/apiv1/models").get("models") or []]

    def ensemble(self, song_hash: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Ask for an ensemble of a song's stems by several models (POST /apiv1/ensemble)."""
        return self._json("POST", f"/apiv1/ensemble/{song_hash}", json=spec)

    def queue(self, params: dict[str, str] | None = None) -> dict[str, Any]:
        """A model's queue (the default model's unless params name one): `queue`, the hashes
        waiting that this caller may see, `length` and `in_flight`, counts of every job."""
        return self._json("GET", "/apiv1/queue", params=params)

    def remove(self, song_hash: str, track: str,
               params: dict[str, str] | None = None) -> dict[str, Any]:
        """Remove one track of a song from the server."""
        return self._json("DELETE", f"/apiv1/remove/{song_hash}/{track}", params=params)

    def cancel(self, song_hash: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """Cancel a song's separation (it stops at its next segment when running)."""
        return self._json("POST", f"/apiv1/cancel/{song_hash}", params=params)

    def delete(self, song_hash: str) -> dict[str, Any]:
        """Remove everything the server keeps of a song."""
        return self._json("DELETE", f"/apiv1/song/{song_hash}")

    def download(self, song_hash: str, track: str, target: Path,
                 params: dict[str, str] | None, progress: Progress) -> Path:
        """Save one track; waits while the server prepares it (202 with Retry-After)."""
        while True:
            with self._request("GET", f"/apiv1/track/{song_hash}/{track}",
                               params=params) as response:
                if response.status_code == 202:
                    self._body(response, MAX_ANSWER_BYTES, "answer")
                    self.wait(_seconds(response.headers.get("Retry-After", "")))
                    continue
                total = int(response.headers.get("Content-Length") or 0)
                if total > self.max_track_bytes:
                    raise GaveUp(f"the server offers {total} bytes for {track}, more than "
                                 f"--max-track-mb allows; nothing was saved")
                _save(self._chunks(response, self.max_track_bytes, f"download of {track}"),
                      target, total, progress)
                return target


def _save(chunks: Iterator[bytes], target: Path, total: int, progress: Progress) -> None:
    """Write to a partial file renamed into place at the end, so no half track is left."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    done = 0
    try:
        with open(partial, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                done += len(chunk)
                progress(done, max(total, done))
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


def _seconds(retry_after: str) -> float | None:
    """Retry-After in seconds (its date form is not used by the server): None if absent."""
    return float(retry_after) if retry_after.isdigit() else None


def _error(response: requests.Response, raw: bytes) -> ApiError:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("error"):
        message = str(body["error"])[:1000]
    else:
        message = raw.decode(errors="replace").strip()[:200] or response.reason
    return ApiError(response.status_code, message,
                    _seconds(response.headers.get("Retry-After", "")))


def _closed_while_reused(error: requests.ConnectionError) -> bool:
    """Whether the connection broke before any answer (the server closed it), rather than
    could not be opened."""
    cause = error.args[0] if error.args else None
    return isinstance(cause, urllib3.exceptions.ProtocolError)


def _cause(error: requests.ConnectionError) -> str:
    """The reason of a connection error in a few words ("Connection refused")."""
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(error))
    return found.group(1).strip() if found else "no connection"
