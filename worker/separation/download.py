"""Downloading one model file: resumable, checked, and only ever complete under its final name.

The bytes go to `<name>.part` beside the final file; a `.part` left by a broken download is
continued with an HTTP Range request. Once the whole file is there its SHA-256 is checked and
the `.part` is renamed, so the final name never holds a partial or unchecked file. No torch.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

BLOCK = 1 << 20
TIMEOUT_S = 60
Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes or None)


class DownloadError(Exception):
    """A download that failed; the message is one line saying what to do."""


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, read a block at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def check_hash(name: str, actual: str, sha256: str, prefix: str) -> None:
    """Raise DownloadError unless `actual` is the expected SHA-256 (or starts with `prefix`)."""
    if sha256 and actual != sha256:
        raise DownloadError(f"{name}: sha256 {actual} does not match the catalogue's {sha256}; "
                            "the download was removed")
    if prefix and not actual.startswith(prefix):
        raise DownloadError(f"{name}: sha256 {actual} does not start with {prefix}, as its "
                            "publisher's name for it says; the download was removed")


def _open(url: str, start: int):
    request = urllib.request.Request(url, headers={"User-Agent": "micro-demucs-fetch"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT_S)  # noqa: S310 (a catalogue URL)
    except urllib.error.HTTPError as error:
        if error.code == 416 and start:  # the .part holds the whole file already
            return None
        raise DownloadError(f"HTTP {error.code} {error.reason} from {url}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(f"cannot reach {url}: {reason}; run the same command again to "
                            "resume") from None


def _receive(response, part: Path, start: int, progress: Progress) -> None:
    """Write the response's body to `part` (appending from `start` on a 206)."""
    resumed = response.status == 206 and start > 0
    start = start if resumed else 0
    length = response.headers.get("Content-Length")
    total = start + int(length) if length is not None else None
    done = start
    with part.open("ab" if resumed else "wb") as out:
        try:
            while block := response.read(BLOCK):
                out.write(block)
                done += len(block)
                progress(done, total)
        except (OSError, ValueError, http.client.HTTPException) as error:  # reset, cut short
            raise DownloadError(f"{part.name}: the connection broke at {done} bytes ({error}); "
                                "run the same command again to resume") from None
        out.flush()
        os.fsync(out.fileno())
    if total is not None and done < total:
        raise DownloadError(f"{part.name}: the server sent {done} of {total} bytes; run the same "
                            "command again to resume")


def download(url: str, final: Path, *, sha256: str = "", prefix: str = "",
             progress: Progress = lambda done, total: None) -> None:
    """Fetch `url` into `final`, continuing a `.part` left before, checked before the rename."""
    part = final.with_name(final.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    response = _open(url, start)
    if response is not None:
        with response:
            _receive(response, part, start, progress)
    actual = sha256_of(part)
    try:
        check_hash(final.name, actual, sha256, prefix)
    except DownloadError:
        part.unlink()  # a wrong file, or a .part that did not belong to this URL: start over
        raise
    os.replace(part, final)


def write_text(text: str, final: Path) -> None:
    """Write a small text file through a temporary file and a rename."""
    temporary = final.with_name(final.name + ".part")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, final)
