"""A mix request (gains, mutes, solos, region, format) and its canonical parameters.

The gateway turns a request into canonical parameters, which name the `mix-<hex>` render job
(common/operations.py); the render worker reads them back. Muted stems, and with any solo the
stems not soloed, get the gain None (silent); the others their gain in dB. No torch, no Flask.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from common import operations, tracks

MIN_DB, MAX_DB = -60.0, 12.0  # gains beyond these are a typing slip, not a mix


class MixError(ValueError):
    """A mix request that cannot be made; the message says what to fix."""


def _stem_list(value: Any, name: str, stems: list[str]) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [part for part in value.split(",") if part]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MixError(f"{name} must be a list of stem names such as [\"vocals\"]")
    named = [tracks.ALIASES.get(v) or v for v in value]
    unknown = [v for v in named if v not in stems]
    if unknown:
        raise MixError(f"{name}: no stem {', '.join(unknown)}; the stems are {', '.join(stems)}")
    return named


def _seconds(value: Any, name: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise MixError(f"{name} must be a number of seconds")
    try:
        seconds = float(value)
    except ValueError:
        raise MixError(f"{name} must be a number of seconds, not {value!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise MixError(f"{name} must be zero or more seconds")
    return round(seconds, 3)


def _gains(value: Any, stems: list[str]) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MixError("gains must be an object of stem: dB, such as {\"drums\": -3}")
    gains = {}
    for stem, db in value.items():
        stem = tracks.ALIASES.get(stem) or stem
        if stem not in stems:
            raise MixError(f"gains: no stem {stem}; the stems are {', '.join(stems)}")
        if isinstance(db, bool) or not isinstance(db, int | float) or not math.isfinite(db) \
                or not MIN_DB <= db <= MAX_DB:
            raise MixError(f"gains: {stem} must be a number of dB from {MIN_DB:g} to {MAX_DB:g}")
        gains[stem] = round(float(db), 2)
    return gains


def mix_params(request: Mapping[str, Any], stems: list[str],
               default_bitrate: int = 320) -> dict[str, Any]:
    """Canonical parameters of a mix request `{gains, mute, solo, start, end, format, bits,
    bitrate}` for a model with `stems`; MixError saying what to fix."""
    mute = _stem_list(request.get("mute"), "mute", stems)
    solo = _stem_list(request.get("solo"), "solo", stems)
    gains = _gains(request.get("gains"), stems)
    start, end = _seconds(request.get("start"), "start"), _seconds(request.get("end"), "end")
    if start is not None and end is not None and end <= start:
        raise MixError("end must come after start")
    fmt = request.get("format") or "wav"
    quality = request.get("bitrate" if fmt == "mp3" else "bits")
    try:
        rendition = tracks.rendition(str(fmt), None if quality in (None, "") else int(quality),
                                     default_bitrate=default_bitrate)
    except (tracks.TrackError, ValueError) as error:
        raise MixError(str(error)) from None
    audible = [s for s in stems if s not in mute and (not solo or s in solo)]
    if not audible:
        raise MixError("every stem is muted; unmute or solo one")
    return {"format": rendition.format, "quality": rendition.quality,
            "gains": {s: gains.get(s, 0.0) if s in audible else None for s in stems},
            "start": start or 0.0, "end": end}


def mix_id(params: Mapping[str, Any]) -> str:
    """The render operation id of canonical mix parameters: `mix-<16 hex>`."""
    return operations.operation_id(operations.MIX, dict(params))


def mix_name(params: Mapping[str, Any]) -> str:
    """The file a mix is stored and downloaded as: `mix.<ext>`."""
    return tracks.track_name("mix", tracks.audio_format(params["format"]).ext)


def linear_gains(params: Mapping[str, Any]) -> dict[str, float]:
    """{stem: linear gain} of the audible stems."""
    return {s: 10 ** (db / 20) for s, db in params["gains"].items() if db is not None}


def mime(params: Mapping[str, Any]) -> str:
    """The mime type of a mix's file."""
    return tracks.audio_format(params["format"]).mime
