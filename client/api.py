"""The HTTP API of a Micro Demucs server, as the client sees it: one session, timeouts, errors."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests

from client.upload import Upload

DEFAULT_URL = "http://localhost:5000"
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 60  # a large upload is checked (probed) before the server answers
CHUNK = 1 << 16

Progress = Callable[[int, int], None]  # (bytes so far, bytes in all)


class ApiError(Exception):
    """The server answered with an error; `message` is its own words."""

    def __init__(self, status: int, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after


class Unreachable(Exception):
    """No answer from the server at all (down, wrong address, timeout)."""


def transient(error: ApiError) -> bool:
    """An answer worth waiting out: rate limited, or the server's stores briefly away."""
    return error.status in (429, 502, 503, 504)


def error_line(error: ApiError | Unreachable) -> str:
    """What to print for an error: the server's own words and its status."""
    if isinstance(error, ApiError):
        return f"{error.message} (HTTP {error.status})"
    return str(error)


class Api:
    """A client of one server's /apiv1/ routes."""

    def __init__(self, base_url: str = DEFAULT_URL, api_key: str = ""):
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "micro-demucs-cli"
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    def close(self) -> None:
        self.session.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", (CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
        try:
            response = self.session.request(method, f"{self.base_url}{path}", **kwargs)
        except requests.ConnectionError as error:
            raise Unreachable(f"cannot reach the server at {self.base_url} ({_cause(error)}); "
                              "is it running? Set --server or MICRO_DEMUCS_URL") from None
        except requests.Timeout:
            raise Unreachable(f"the server at {self.base_url} did not answer in time") from None
        if response.status_code >= 400:
            raise _error(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> dict:
        return self._request(method, path, **kwargs).json()

    def submit(self, song: Path, options: dict[str, str], progress: Progress) -> dict:
        """Upload one song with its job options; the answer {"hash", "reason"}."""
        with Upload(song, options, progress) as body:
            return self._json("POST", "/apiv1/separate", data=body,
                              headers={"Content-Type": body.content_type})

    def status(self, song_hash: str, params: dict[str, str] | None = None) -> dict:
        """The song's status body; an error answer raises ApiError."""
        return self._json("GET", f"/apiv1/status/{song_hash}", params=params)

    def stems(self, model: str | None) -> list[str]:
        """The stems of a model the server offers (its default model when None)."""
        for offered in self._json("GET", "/apiv1/models")["models"]:
            if offered["name"] == model or (model is None and offered["default"]):
                return list(offered["stems"])
        raise ApiError(404, f"the server offers no model {model}")

    def queue(self, params: dict[str, str] | None = None) -> list[str]:
        """Hashes waiting in a model's queue (the default model's unless params name one)."""
        return self._json("GET", "/apiv1/queue", params=params)["queue"]

    def remove(self, song_hash: str, track: str, params: dict[str, str] | None = None) -> dict:
        """Remove one track of a song from the server."""
        return self._json("DELETE", f"/apiv1/remove/{song_hash}/{track}", params=params)

    def cancel(self, song_hash: str, params: dict[str, str] | None = None) -> dict:
        """Cancel a song's separation (it stops at its next segment when running)."""
        return self._json("POST", f"/apiv1/cancel/{song_hash}", params=params)

    def delete(self, song_hash: str) -> dict:
        """Remove everything the server keeps of a song."""
        return self._json("DELETE", f"/apiv1/song/{song_hash}")

    def download(self, song_hash: str, track: str, target: Path,
                 params: dict[str, str] | None, progress: Progress) -> Path:
        """Save one track; waits while the server prepares it (202 with Retry-After)."""
        while True:
            with self._request("GET", f"/apiv1/track/{song_hash}/{track}", params=params,
                               stream=True) as response:
                if response.status_code == 202:
                    time.sleep(min(float(response.headers.get("Retry-After") or 1), 5))
                    continue
                total = int(response.headers.get("Content-Length") or 0)
                try:
                    _save(response.iter_content(CHUNK), target, total, progress)
                except requests.RequestException as error:
                    raise Unreachable(f"the download of {track} from {self.base_url} broke "
                                      f"off ({type(error).__name__})") from None
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


def _error(response: requests.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("error"):
        message = str(body["error"])
    else:
        message = response.text.strip()[:200] or response.reason
    retry_after = response.headers.get("Retry-After", "")
    return ApiError(response.status_code, message,
                    float(retry_after) if retry_after.isdigit() else None)


def _cause(error: requests.ConnectionError) -> str:
    """The reason of a connection error in a few words ("Connection refused")."""
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(error))
    return found.group(1).strip() if found else "no connection"
