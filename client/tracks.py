"""Which tracks of a finished song the job options ask for, and the query that names them.

The client speaks the API's names only: tracks are `<stem>.<ext>` or `no_<stem>.<ext>`; a
non-default model is addressed with `?model=`, an mp3 bitrate with `?bitrate=`, wav/flac bits
with `?bits=`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

# The job options as the API names them; the command line spells them with dashes.
OPTIONS = ("model", "two_stems", "format", "bits", "bitrate")
# What the server may name: a stem as Demucs names its sources, a song by its SHA-256. Names
# become file names, so anything else (a path, `..`) is refused, never cleaned up.
_STEM = re.compile(r"[a-z][a-z0-9_]{0,31}")
_HASH = re.compile(r"[0-9a-f]{64}")


class UnsafeName(ValueError):
    """A name from the server (or the command line) that cannot be a file name of ours."""


def stem_name(value: object) -> str:
    """A plain stem name (`vocals`, `no_vocals`), else UnsafeName."""
    if not isinstance(value, str) or not _STEM.fullmatch(value):
        raise UnsafeName(f"the server named a track {str(value)[:80]!r}, which is not a "
                         "plain stem name")
    return value


def song_hash(value: object) -> str:
    """A song hash (64 lowercase hex characters), else UnsafeName."""
    if not isinstance(value, str) or not _HASH.fullmatch(value):
        raise UnsafeName(f"{str(value)[:80]!r} is not a song hash (64 hex characters)")
    return value


def job_options(values: dict[str, object]) -> dict[str, str]:
    """The job options given on the command line, as API fields (absent ones left out)."""
    return {name: str(values[name]) for name in OPTIONS if values.get(name) is not None}


def status_params(options: dict[str, str]) -> dict[str, str]:
    """The query of a status request: the model asked for, if any."""
    return {"model": options["model"]} if "model" in options else {}


def download_params(options: dict[str, str]) -> dict[str, str]:
    """The query of a track download: model, bits and bitrate, as asked."""
    return {name: options[name] for name in ("model", "bits", "bitrate") if name in options}


def wanted_tracks(status: dict[str, Any], options: dict[str, str],
                  model_stems: Callable[[], list[str]]) -> list[str]:
    """The tracks to save: every stem of the song, or the two-stem pair, in the asked format.

    Asked for by name even when the status lists them in another format: the server makes
    any rendition of a separated song on request. The stems are those the status lists (a
    removed track stays removed), or the model's when it lists a two-stem pair.
    """
    ext = options.get("format", "mp3")
    if "two_stems" in options:
        stem = stem_name(options["two_stems"])
        return [f"{stem}.{ext}", f"no_{stem}.{ext}"]
    stems = [stem_name(str(name).rpartition(".")[0]) for name in status.get("tracks") or []]
    if any(stem.startswith("no_") for stem in stems):
        stems = [stem_name(stem) for stem in model_stems()]
    # base.mp3 is bass.mp3 under its original name.
    return [f"{stem}.{ext}" for stem in dict.fromkeys(stems) if stem != "base"]
