"""The options of a submission or a download: model, two_stems, format, bits and bitrate.

The same names are JSON fields beside `mp3`, multipart form fields and query parameters; every
bad value is a 400 that names the choices.
"""

from __future__ import annotations

from collections.abc import Mapping

from common import catalogue, ensemble_jobs, modelinfo, tracks
from common.jobs import JobStore
from common.settings import Settings
from common.tracks import Rendition, TrackError
from rest import context as ctx
from rest.errors import ApiError


def models(settings: Settings, jobs: JobStore) -> list[dict]:
    """The models this deployment serves, the default first: stems, family, readiness,
    published quality and measured speed (common/modelinfo.py)."""
    return modelinfo.describe(jobs.redis, settings.demucs_models, settings.default_model,
                              catalogue.shipped())


def _stems(model: str, registered: Mapping[str, list[str]]) -> list[str]:
    """A model's stems as its workers registered them, else those Demucs publishes for it."""
    return registered.get(model) or list(tracks.known_stems(model))


def model_param(value, settings: Settings, ensembles: bool = True) -> str:
    """The model a request names (the default when it names none), if this deployment serves
    it, or (with `ensembles`) an ensemble asked for by POST /apiv1/ensemble."""
    if value in (None, ""):
        return settings.default_model
    if ensembles and isinstance(value, str) and ensemble_jobs.exists(ctx.jobs().redis, value):
        return value  # read like a model: its stems are made from its members' stems
    if not isinstance(value, str) or value not in settings.demucs_models:
        raise ApiError(400, f"unknown model {value!r}; this service offers "
                            f"{', '.join(settings.demucs_models)}",
                       models=list(settings.demucs_models))
    return value


def stems_of(model: str, jobs: JobStore) -> list[str]:
    """A served model's stems (see _stems)."""
    return _stems(model, jobs.models())


def _whole(value, name: str) -> int | None:
    """A whole number sent as a JSON number or as text; None when absent."""
    if value in (None, ""):
        return None
    if isinstance(value, bool) or not (isinstance(value, int) or (
            isinstance(value, str) and value.isdigit() and len(value) < 7)):
        raise ApiError(400, f"{name} must be a whole number, not {value!r}")
    return int(value)


def rendition_of(fields: Mapping, settings: Settings, stems: list[str]) -> Rendition:
    """The rendition that `format`, `bits`, `bitrate` and `two_stems` ask for, checked."""
    fmt = fields.get("format") or "mp3"
    bits, bitrate = _whole(fields.get("bits"), "bits"), _whole(fields.get("bitrate"), "bitrate")
    two_stems = fields.get("two_stems") or ""
    if not isinstance(fmt, str) or not isinstance(two_stems, str):
        raise ApiError(400, "format and two_stems must be strings")
    if fmt == "mp3" and bits is not None:
        raise ApiError(400, "bits applies to wav and flac; for mp3 choose a bitrate")
    if fmt != "mp3" and bitrate is not None:
        raise ApiError(400, f"bitrate applies to mp3; for {fmt} choose bits (16 or 24)")
    try:
        rendition = tracks.rendition(fmt, bitrate if fmt == "mp3" else bits, two_stems,
                                     settings.mp3_bitrate)
        return rendition.check(stems)
    except TrackError as error:
        raise ApiError(400, str(error)) from None


def options_of(fields: Mapping, settings: Settings, jobs: JobStore) -> tuple[str, Rendition]:
    """(model, rendition) of a submission's or a download's option fields."""
    model = model_param(fields.get("model"), settings, ensembles=False)  # no worker runs one
    return model, rendition_of(fields, settings, stems_of(model, jobs))


def describe(model: str, rendition: Rendition) -> dict:
    """The options of a rendition, as a client would send them."""
    return {"model": model, "format": rendition.format,
            rendition.quality_param: rendition.quality,
            "two_stems": rendition.two_stems or None}
