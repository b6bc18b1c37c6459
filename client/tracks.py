"""Which tracks of a finished song the job options ask for, and the query that names them.

The client speaks the API's names only: tracks are `<stem>.<ext>` or `no_<stem>.<ext>`; a
non-default model is addressed with `?model=`, an mp3 bitrate with `?bitrate=`, wav/flac bits
with `?bits=`.
"""

from __future__ import annotations

from collections.abc import Callable

# The job options as the API names them; the command line spells them with dashes.
OPTIONS = ("model", "two_stems", "format", "bits", "bitrate")


def job_options(values: dict[str, object]) -> dict[str, str]:
    """The job options given on the command line, as API fields (absent ones left out)."""
    return {name: str(values[name]) for name in OPTIONS if values.get(name) is not None}


def status_params(options: dict[str, str]) -> dict[str, str]:
    """The query of a status request: the model asked for, if any."""
    return {"model": options["model"]} if "model" in options else {}


def download_params(options: dict[str, str]) -> dict[str, str]:
    """The query of a track download: model, bits and bitrate, as asked."""
    return {name: options[name] for name in ("model", "bits", "bitrate") if name in options}


def wanted_tracks(status: dict, options: dict[str, str],
                  model_stems: Callable[[], list[str]]) -> list[str]:
    """The tracks to save: every stem of the song, or the two-stem pair, in the asked format.

    Asked for by name even when the status lists them in another format: the server makes
    any rendition of a separated song on request. The stems are those the status lists (a
    removed track stays removed), or the model's when it lists a two-stem pair.
    """
    ext = options.get("format", "mp3")
    if "two_stems" in options:
        return [f"{options['two_stems']}.{ext}", f"no_{options['two_stems']}.{ext}"]
    stems = [name.rpartition(".")[0] for name in status.get("tracks") or []]
    if any(stem.startswith("no_") for stem in stems):
        stems = model_stems()
    # base.mp3 is bass.mp3 under its original name.
    return [f"{stem}.{ext}" for stem in dict.fromkeys(stems) if stem and stem != "base"]
